"""bench.profile_request reads OpenSearch's profile of either scorer's request the same way."""
import pytest

from bench.profile_request import query_split, table


def _response(top: dict) -> dict:
    return {"profile": {"shards": [{"searches": [{"query": [top], "rewrite_time": 20_000}],
                                    "fetch": [{"time_in_nanos": 500_000}]}]}}


def test_a_knn_querys_filter_and_exact_search_are_its_own_breakdown_not_its_overlapping_children():
    top = {"type": "KNNQuery", "time_in_nanos": 2_700_000,
           "breakdown": {"bitset_creation": 570_000, "exact_search": 1_990_000, "cardinality": 5592,
                         "create_weight": 40_000},
           "children": [{"type": "BoostQuery", "time_in_nanos": 2_900_000}]}
    split = query_split(_response(top))
    assert split == pytest.approx({"query": 2.7, "match": 0.57, "score": 1.99, "weight": 0.04, "rewrite": 0.02,
                                   "fetch": 0.5, "cardinality": 5592})


def test_the_scripts_matching_is_its_children_and_its_scoring_the_score_breakdown():
    top = {"type": "FunctionScoreQuery", "time_in_nanos": 5_200_000,
           "breakdown": {"score": 4_260_000, "create_weight": 10_000},
           "children": [{"type": "BooleanQuery", "time_in_nanos": 690_000}]}
    split = query_split(_response(top))
    assert (split["match"], split["score"], split["cardinality"]) == pytest.approx((0.69, 4.26, 0))


def test_the_unfiltered_scan_matches_nothing_and_scores_in_its_exact_search():
    top = {"type": "KNNQuery", "time_in_nanos": 4_900_000,
           "breakdown": {"exact_search": 4_880_000, "create_weight": 9_000, "bitset_creation": 0}}
    split = query_split(_response(top))
    assert (split["match"], split["score"]) == pytest.approx((0.0, 4.88))


def test_the_table_sets_exact_dense_between_grdr_and_hnsw():
    part = {"took_ms": 4.0, "query_ms": 3.8, "match_ms": 0.78, "score_ms": 2.9, "weight_ms": 0.01,
            "rewrite_ms": 0.01, "fetch_ms": 0.45}
    result = {"grdr": {"knn_exact": {**part, "pool": 14_765}},
              "dense": {**part, "took_ms": 5.0, "score_ms": 4.88, "pool": 100_000},
              "hnsw": {**part, "took_ms": 0.0, "weight_ms": 0.25},
              "recall_bytes": {"grdr": 5_390_000, "hnsw": 109_100_000}}
    lines = table(result).splitlines()
    assert lines[0] == "| p50 per query | GRDR, knn_exact | exact dense | HNSW |"
    assert "| videos scored (GRDR: the pool) | 14,765 | 100,000 | |" in lines
    assert "| · exact score of every video scored | 2.9 ms | 4.88 ms | |" in lines
    assert "| · k-NN weight (HNSW: the graph search) | | | 0.25 ms |" in lines
    assert lines[-1].endswith("| 5.39 MB | none | 109.10 MB |")
