"""bench.profile_request reads OpenSearch's profile of either scorer's request the same way."""
import pytest

from bench.profile_request import query_split


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
