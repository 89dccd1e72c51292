"""The one definition of each retrieval and speed metric (grdr_plugin.metrics)."""
import numpy as np
import pytest

from grdr_plugin.metrics import (
    TAIL_PERCENTILES,
    latency_summary,
    overlap_at,
    per_second,
    percent,
    rank_metrics,
    rank_of,
    recall_at,
    share_of,
)


def test_recall_counts_a_missing_truth_as_a_miss():
    assert recall_at(np.array([1, 0, 6, 11])) == {"R@1": 25.0, "R@5": 25.0, "R@10": 50.0}
    assert recall_at([3, 3, 3], cutoffs=(2, 3)) == {"R@2": 0.0, "R@3": 100.0}


def test_rank_metrics_over_full_rankings():
    assert rank_metrics(np.array([1, 2, 6, 11])) == {"R@1": 25.0, "R@5": 50.0, "R@10": 75.0, "MdR": 4.0, "MnR": 5.0}
    assert rank_metrics([1, 1, 2]) == {"R@1": 66.67, "R@5": 100.0, "R@10": 100.0, "MdR": 1.0, "MnR": 1.33}


def test_no_queries_give_zeros_not_nan():
    assert rank_metrics(np.array([], dtype=np.int64)) == {"R@1": 0.0, "R@5": 0.0, "R@10": 0.0, "MdR": 0.0, "MnR": 0.0}
    assert recall_at([]) == {"R@1": 0.0, "R@5": 0.0, "R@10": 0.0}
    assert percent(np.zeros(0, dtype=bool)) == 0.0
    assert overlap_at([], []) == 0.0
    assert latency_summary([]) == {}


def test_rank_of_is_one_based_and_zero_when_absent():
    assert rank_of(["a", "b", "c"], "b") == 2
    assert rank_of(("a",), "a") == 1
    assert rank_of(["a", "b"], "z") == 0


def test_percent_of_flags():
    assert percent([True, False, False]) == 33.33
    assert percent(np.array([True, True])) == 100.0


def test_overlap_with_a_reference_top_k():
    results = [["a", "b"], ["x", "y"]]
    reference = [["b", "a"], ["x", "q"]]
    assert overlap_at(results, reference, k=1) == 50.0  # a vs b: 0; x vs x: 1
    assert overlap_at(results, reference, k=2) == 75.0  # {a, b}: 2 of 2; {x}: 1 of 2


def test_latency_summary_keys_and_rounding():
    ms = [float(x) for x in range(1, 101)]
    assert latency_summary(ms) == {"p50_ms": 50.5, "p99_ms": 99.01, "mean_ms": 50.5}
    tail = latency_summary(ms, TAIL_PERCENTILES, with_max=True)
    assert tail == {"p50_ms": 50.5, "p95_ms": 95.05, "p99_ms": 99.01, "mean_ms": 50.5, "max_ms": 100.0}


def test_per_second_rounds_to_a_tenth():
    assert per_second(1000, 3.0) == 333.3
    with pytest.raises(ZeroDivisionError):
        per_second(1, 0.0)


def test_share_of_a_reference_in_percent_and_zero_for_no_reference():
    assert share_of(39.0, 40.0) == 97.5
    assert share_of(5.0, 0.0) == 0.0
