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

    with pytest.raises(ValueError, match=r"ef_search \(--ef-search\): must include the default"):
        BenchConfig(dataset=tmp_path, model=tmp_path, ef_search=[10])
    out = CliRunner().invoke(app, ["bench", "--dataset", str(tmp_path), "--model", str(tmp_path), "--ef-search", "10"])
    assert out.exit_code == 1 and "ef_search (--ef-search): must include the default 100" in out.output
    assert "input_value" not in out.output  # one line per field, not pydantic's dump
    BenchConfig(dataset=tmp_path, model=tmp_path, beams=[20])  # GRDR's headline is the model's defaults, not a beam


def _measured(r10, p50, encode, opensearch, decode=None, **extra):
    stages = {"encode": {"p50_ms": encode}, "opensearch": {"p50_ms": opensearch}, "total": {"p50_ms": p50}}
    if decode is not None:
        stages["decode"] = {"p50_ms": decode}
    return {"R@10": r10, "p50_ms": p50, "stages_ms": stages, **extra}


def _grdr(beam, pool, r10, p50, **extra):
    return {**setting(beam, pool, r10, p50), **_measured(r10, p50, 1.5, p50 - 2.5, decode=1.0), **extra}


def test_targets_at_100k_judge_the_defaults_and_the_fastest_setting_at_97_percent():
    """At 100k: R@10 >= 97 % of dense at p50 <= 1.1x HNSW's, at the defaults and at the fastest setting that
    reaches the share; the encoder's p50; what 1.1x leaves GRDR beyond HNSW's search."""
    from bench.report import _target_lines

    defaults = _grdr(300, 18581, 39.6, 6.0, recall_level=2)
    settings = [defaults, _grdr(20, 1000, 30.0, 4.0), _grdr(50, 3000, 39.0, 5.0)]
    dense = _measured(40.0, 8.0, 1.4, 6.5)
    hnsw = _measured(41.0, 2.5, 1.4, 1.0, ef_search=100, recall_ram_bytes=100e6)
    text = "\n".join(_target_lines(100_000, settings, {**defaults, "recall_ram_bytes": 1e6}, dense, hnsw))
    assert ("| R@10 ≥ 97 % of exact dense at p50 ≤ 1.1× HNSW's, at the defaults | level 2, beam 300, budget 18581: "
            "99.0 % of dense at 2.40× HNSW's (6.0 ms against 2.5) | **missed** |") in text
    assert ("| R@10 ≥ 97 % of exact dense at p50 ≤ 1.1× HNSW's, at any setting measured | fastest at 97 %: beam 50, "
            "budget 3000: 97.5 % of dense at 2.00× HNSW's (5.0 ms against 2.5) | **missed** |") in text
    assert "| query encoder p50 ≤ 2 ms | 1.5 ms (GRDR's encode stage) | met |" in text
    assert "faster than exact dense" not in text.split("Where the time goes")[0]  # no speed-up target at 100k
    assert "| GRDR defaults, level 2, beam 300, budget 18581 | 1.5 | 1.0 | 3.5 | 6.0 |" in text
    assert "| GRDR beam 50, budget 3000 | 1.5 | 1.0 | 2.5 | 5.0 |" in text
    assert ("1.1× HNSW's p50 leaves GRDR 0.25 ms beyond HNSW's whole search for the work HNSW does not do; at the "
            "defaults GRDR's decode alone takes 1.0 ms, and its OpenSearch request 3.5 ms against HNSW's 1.0.") in text
    assert text.startswith("Targets in this run:") and "issue" not in text.lower()


def test_targets_at_1m_add_the_speed_up_over_dense_and_the_ram_and_a_met_target_says_so():
    from bench.report import _target_lines

    defaults = _grdr(300, 37732, 28.0, 2.6, recall_level=3, recall_ram_bytes=2e6)
    dense = _measured(28.0, 300.0, 1.4, 298.0)
    hnsw = _measured(31.0, 2.5, 1.4, 1.0, ef_search=100, recall_ram_bytes=1000e6)
    text = "\n".join(_target_lines(1_000_000, [defaults], defaults, dense, hnsw))
    assert ("| R@10 ≥ 95 % of exact dense at p50 ≤ 1.2× HNSW's, at the defaults | level 3, beam 300, budget 37732: "
            "100.0 % of dense at 1.04× HNSW's (2.6 ms against 2.5) | met |") in text
    assert "| ≥ 100× faster than exact dense | 115.4× at level 3, beam 300, budget 37732 | met |" in text
    assert "| recall-structure RAM ≤ 1/100 of HNSW's | 1/500 | met |" in text
    assert text.count("| GRDR") == 1  # the defaults are the fastest setting: one stage row


def test_a_size_without_scale_targets_reports_the_encoder_alone():
    from bench.report import _target_lines

    defaults = _grdr(300, 1000, 30.0, 4.0)
    text = "\n".join(_target_lines(10_000, [defaults], {**defaults, "recall_ram_bytes": 1e6},
                                   _measured(31.0, 3.0, 1.4, 1.5), _measured(31.0, 2.5, 1.4, 1.0, ef_search=100)))
    assert text.startswith("Targets in this run (no scale target is set at 10,000 videos):")
    assert "| query encoder p50 ≤ 2 ms | 1.5 ms (GRDR's encode stage) | met |" in text
    assert "HNSW's p50 leaves GRDR" not in text and "of exact dense at p50" not in text


def test_bench_writes_its_report_outside_the_repository_docs_by_default():
    from typer.testing import CliRunner

    from cli.main import app

    out = CliRunner().invoke(app, ["bench", "--help"], terminal_width=200)
    assert out.exit_code == 0 and "[default: bench-report]" in out.output
