"""The benchmark report's verdict line (the fastest GRDR setting that reaches 95 % of dense R@10), its targets
table, and the sweep it needs."""
import pytest

from bench.report import _fastest_line

DENSE = {"R@10": 40.0, "p50_ms": 50.0}
HNSW = {"R@10": 41.0, "p50_ms": 8.0, "ef_search": 100}


def setting(beam, pool, r10, p50):
    return {"beam": beam, "max_pool": pool, "R@10": r10, "p50_ms": p50}


def test_fastest_setting_reaching_95_percent_of_dense_is_named_with_both_ratios():
    line = _fastest_line([setting(20, 300, 30.0, 10.0), setting(50, 3000, 38.5, 16.0), setting(300, 3000, 39.0, 25.0)],
                         DENSE, HNSW)
    assert "beam 50, budget 3000" in line and "R@10 38.5 (96.2 %)" in line
    assert "3.1× faster than exact dense" in line and "2.00× HNSW's latency" in line


def test_no_setting_reaching_95_percent_reports_the_best_recall():
    line = _fastest_line([setting(20, 300, 30.0, 10.0), setting(300, 300, 33.0, 15.0)], DENSE, HNSW)
    assert line.startswith("No GRDR setting") and "beam 300, budget 300: R@10 33.0" in line


def test_a_dense_baseline_that_recalls_nothing_gets_no_ratio():
    line = _fastest_line([setting(20, 300, 0.0, 10.0)], {"R@10": 0.0, "p50_ms": 50.0}, HNSW)
    assert "recalls no test query" in line


def test_bench_refuses_a_sweep_without_the_headline_settings(tmp_path):
    from typer.testing import CliRunner

    from bench.suite import BenchConfig
    from cli.main import app

    with pytest.raises(ValueError, match=r"beams \(--beams\): must include the default beam"):
        BenchConfig(dataset=tmp_path, model=tmp_path, beams=[20])
    with pytest.raises(ValueError, match=r"ef_search \(--ef-search\): must include the default"):
        BenchConfig(dataset=tmp_path, model=tmp_path, ef_search=[10])
    out = CliRunner().invoke(app, ["bench", "--dataset", str(tmp_path), "--model", str(tmp_path), "--beams", "20"])
    assert out.exit_code == 1 and "beams (--beams): must include the default beam 300" in out.output
    assert "input_value" not in out.output  # one line per field, not pydantic's dump


def _measured(r10, p50, encode, **extra):
    return {"R@10": r10, "p50_ms": p50, "stages_ms": {"encode": {"p50_ms": encode}, "total": {"p50_ms": p50}}, **extra}


def test_targets_table_marks_each_target_from_the_run():
    """At 100k: the speed-up is judged at the fastest setting within 95 % of dense, HNSW's latency at
    the fastest setting with HNSW's recall, and the encoder's share bounds the speed-up."""
    from bench.report import _target_lines

    settings = [setting(20, 300, 30.0, 10.0), setting(50, 3000, 38.5, 16.0), setting(300, 3000, 41.0, 25.0)]
    for a in settings:
        a["stages_ms"] = {"encode": {"p50_ms": 5.0}, "decode": {"p50_ms": 1.0}, "total": {"p50_ms": a["p50_ms"]}}
    dense = _measured(40.0, 50.0, 5.0)
    hnsw = _measured(41.0, 8.0, 5.0, ef_search=100, recall_ram_bytes=100e6)
    text = "\n".join(_target_lines(100_000, settings, {**settings[2], "recall_ram_bytes": 1e6}, dense, hnsw))
    assert "| ≥ 50× faster than exact dense, R@10 ≥ 95 % of dense | 3.1× at beam 50, budget 3000" in text
    assert "| R@10 ≥ 95 % of dense at the fast setting | 75.0 % at the fastest setting (beam 20, budget 300" in text
    assert "3.12× at beam 300, budget 3000 (R@10 41.0 vs 41.0) | **missed** |" in text
    assert "| recall-structure RAM ≤ 1/10 of HNSW's | 1/100 | met |" in text
    assert "| GRDR p50 ≤ 20 ms | 10.0 ms fastest setting, 25.0 ms headline (beam 300) | met |" in text
    assert "| GRDR beam 50, budget 3000 | 5.0 | 1.0 | — | 16.0 |" in text
    assert "at most 10.0× faster than exact dense" in text
    assert text.startswith("Targets in this run:") and "issue" not in text.lower()


def test_bench_writes_its_report_outside_the_repository_docs_by_default():
    from typer.testing import CliRunner

    from cli.main import app

    out = CliRunner().invoke(app, ["bench", "--help"], terminal_width=200)
    assert out.exit_code == 0 and "[default: bench-report]" in out.output
