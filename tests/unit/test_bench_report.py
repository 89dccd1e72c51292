"""The benchmark report's verdict line: the fastest GRDR setting that reaches 95 % of dense R@10."""
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
