"""The benchmark report's verdict line (the fastest GRDR setting that reaches 95 % of dense R@10) and the sweep it needs."""
import pytest

from query.bench_report import _fastest_line

DENSE = {"R@10": 40.0, "p50_ms": 50.0}
HNSW = {"R@10": 41.0, "p50_ms": 8.0, "ef_search": 100}


def setting(beam, pool, r10, p50):
    return {"beam": beam, "max_pool": pool, "R@10": r10, "p50_ms": p50}


def test_fastest_setting_reaching_95_percent_of_dense_is_named_with_both_ratios():
    line = _fastest_line([setting(20, 300, 30.0, 10.0), setting(50, 3000, 38.5, 16.0), setting(300, 3000, 39.0, 25.0)],
                         DENSE, HNSW)
    assert "beam 50, pool 3000" in line and "R@10 38.5 (96.2 %)" in line
    assert "3.1× faster than exact dense" in line and "2.00× HNSW's latency" in line


def test_no_setting_reaching_95_percent_reports_the_best_recall():
    line = _fastest_line([setting(20, 300, 30.0, 10.0), setting(300, 300, 33.0, 15.0)], DENSE, HNSW)
    assert line.startswith("No GRDR setting") and "beam 300, pool 300: R@10 33.0" in line


def test_a_dense_baseline_that_recalls_nothing_gets_no_ratio():
    line = _fastest_line([setting(20, 300, 0.0, 10.0)], {"R@10": 0.0, "p50_ms": 50.0}, HNSW)
    assert "recalls no test query" in line


def test_bench_refuses_a_sweep_without_the_headline_settings(tmp_path):
    from typer.testing import CliRunner

    from grdr_plugin.cli import app
    from query.bench import BenchConfig

    with pytest.raises(ValueError, match=r"beams \(--beams\): must include the default beam"):
        BenchConfig(dataset=tmp_path, model=tmp_path, beams=[20])
    with pytest.raises(ValueError, match=r"ef_search \(--ef-search\): must include the default"):
        BenchConfig(dataset=tmp_path, model=tmp_path, ef_search=[10])
    out = CliRunner().invoke(app, ["bench", "--dataset", str(tmp_path), "--model", str(tmp_path), "--beams", "20"])
    assert out.exit_code == 1 and "beams (--beams): must include the default beam 300" in out.output
    assert "input_value" not in out.output  # one line per field, not pydantic's dump
