"""Query-layer pieces that need no server: text cleaning, filters, request bodies, RRF, ID parsing."""
import json
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from grdr_plugin.model.ids import parse_ids
from query.filters import SearchFilters, filter_clauses, keyword_fields_of
from query.hybrid import hybrid_mode, keyword_candidates_request, rrf
from query.request import CLAUSE_MIN_VIDEOS_PER_ID, RANK_SCRIPT, grdr_request, recalled_by_cosine_query
from query.searcher import MAX_QUERY_CHARS, clean_query


def test_query_path_does_not_import_torch():
    code = ("import sys, query.searcher, query.api, query.trie_store, grdr_plugin.runtime, cli.main;"
            "print(json.dumps(sorted(m for m in ('torch','transformers') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json;" + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("bad", ["", "   ", "\x00\x01\t\n", "x" * (MAX_QUERY_CHARS + 1)])
def test_bad_queries_name_the_field(bad):
    with pytest.raises(ValueError, match="text"):
        clean_query(bad)


def test_control_characters_become_spaces():
    assert clean_query("a\x00man\tis\x1b cooking\n") == "a man is cooking"


def test_query_text_and_vector_travel_only_as_values():
    evil = '"}}, "script": {"source": "System.exit(0)"'
    body = grdr_request([evil, "1-2-3"], np.ones(4), k=5)
    first = body["query"]["function_score"]
    assert first["query"]["dis_max"]["queries"] == [
        {"constant_score": {"filter": {"term": {"grdr_ids": evil}}, "boost": 2}},
        {"constant_score": {"filter": {"term": {"grdr_ids": "1-2-3"}}, "boost": 1}}]
    for script in (first["functions"][0]["script_score"]["script"],
                   body["rescore"]["query"]["rescore_query"]["script_score"]["script"]):
        assert script["source"] == "knn_score" and script["lang"] == "knn"
        assert script["params"]["query_value"] == [1.0] * 4


def test_pool_order_with_prefixes_filters_and_nothing_decoded():
    body = grdr_request(["1-2-3"], np.ones(4), prefixes=["1-2"], extra_filters=[{"term": {"tags": "x"}}])
    recalled = body["query"]["function_score"]["query"]["bool"]
    assert recalled["filter"] == [{"term": {"tags": "x"}}]
    assert recalled["must"][0]["dis_max"]["queries"][-1] == {"constant_score": {"filter": {"terms": {"grdr_prefixes": ["1-2"]}}, "boost": 0}}
    assert grdr_request([], np.ones(4))["query"] == {"match_none": {}}


def test_sparse_ids_rank_by_script_instead_of_one_clause_per_id():
    """Below CLAUSE_MIN_VIDEOS_PER_ID videos per ID the rank comes from RANK_SCRIPT over one terms
    filter; the score is the same sum: (n - best rank) + knn_score."""
    evil = '"}}, "script": {"source": "System.exit(0)"'
    body = grdr_request([evil, "1-2-3"], np.ones(4), prefixes=["1-2"], extra_filters=[{"term": {"tags": "x"}}],
                        videos_per_id=CLAUSE_MIN_VIDEOS_PER_ID - 1)
    first = body["query"]["function_score"]
    assert (first["score_mode"], first["boost_mode"]) == ("sum", "replace")
    recall, tags = first["query"]["bool"]["filter"]
    assert recall == {"bool": {"should": [{"terms": {"grdr_ids": [evil, "1-2-3"]}}, {"terms": {"grdr_prefixes": ["1-2"]}}],
                               "minimum_should_match": 1}} and tags == {"term": {"tags": "x"}}
    rank, knn = (f["script_score"]["script"] for f in first["functions"])
    assert rank["source"] == RANK_SCRIPT and rank["params"] == {"field": "grdr_ids", "n": 2, "rank": {evil: 0, "1-2-3": 1}}
    assert knn["source"] == "knn_score" and knn["params"]["query_value"] == [1.0] * 4


def test_nan_query_vector_is_refused():
    with pytest.raises(ValueError, match="query_vec"):
        grdr_request(["1-2-3"], np.array([1.0, np.nan]))


def test_filters_become_clauses_and_unknown_fields_are_named():
    f = SearchFilters(tags=["cooking"], duration_min=1, duration_max=30, fields={"source": ["msrvtt"]})
    clauses = filter_clauses(f, {"source", "tags"})
    assert {"terms": {"tags": ["cooking"]}} in clauses
    assert {"range": {"duration_s": {"gte": 1, "lte": 30}}} in clauses
    assert {"terms": {"source": ["msrvtt"]}} in clauses
    with pytest.raises(ValueError, match="filters.fields.secret"):
        filter_clauses(SearchFilters(fields={"secret": ["x"]}), {"source"})


@pytest.mark.parametrize("payload", [{"duration_min": "long"}, {"tags": "notalist"}, {"unknown": 1},
                                     {"duration_min": 5, "duration_max": 1}, {"duration_min": -1}])
def test_filters_with_wrong_types_are_refused(payload):
    with pytest.raises(ValidationError):
        SearchFilters(**payload)


def test_keyword_fields_exclude_internal_ones():
    props = {"grdr_ids": {"type": "keyword"}, "tags": {"type": "keyword"}, "title": {"type": "text"}}
    assert keyword_fields_of(props) == {"tags"}


def test_rrf_rewards_agreement():
    fused = rrf([["a", "b", "c"], ["b", "d"]], [1.0, 1.0], rank_constant=60)
    assert fused[0][0] == "b"
    assert {d for d, _ in fused} == {"a", "b", "c", "d"}
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


def test_keyword_candidates_are_rescored_by_the_same_knn_score_with_the_text_as_a_value():
    evil = '"}}, "script": {"source": "ctx._source.x = 1"'
    body = keyword_candidates_request(evil, np.ones(4), size=50, filters=[{"term": {"split": "seen"}}])
    assert body["size"] == 50 and body["query"]["bool"]["must"][0]["multi_match"]["query"] == evil
    rescore = body["rescore"]
    assert rescore["window_size"] == 50  # every keyword hit gets a dense score
    assert rescore["query"]["query_weight"] == 0.0 and rescore["query"]["rescore_query_weight"] == 1.0
    script = rescore["query"]["rescore_query"]["script_score"]["script"]
    assert script == grdr_request(["1-2-3"], np.ones(4))["rescore"]["query"]["rescore_query"]["script_score"]["script"]


@pytest.mark.parametrize("given,mode", [(True, "union"), (False, "off"), (None, "off"), ("rrf", "rrf"), ("union", "union")])
def test_hybrid_modes(given, mode):
    assert hybrid_mode(given) == mode


def test_unknown_hybrid_mode_is_named():
    with pytest.raises(ValueError, match="hybrid: 'both'"):
        hybrid_mode("both")


def test_one_request_reranks_exactly_the_pool():
    body = grdr_request(["4-5-6", "1-2-3"], np.ones(4), k=10, max_pool=300, extra_filters=[{"term": {"split": "seen"}}])
    assert body["query"]["function_score"]["query"]["bool"]["filter"] == [{"term": {"split": "seen"}}]
    rescore = body["rescore"]
    assert rescore["window_size"] == 300  # the pool: the first max_pool hits in pool order
    assert rescore["query"]["query_weight"] == 0.0 and rescore["query"]["rescore_query_weight"] == 1.0
    assert body["query"]["function_score"]["boost_mode"] == "sum"  # best rank + (1 + cos) / 2
    assert grdr_request(["1-2-3"], np.ones(4), k=500, max_pool=300)["rescore"]["window_size"] == 500  # k > cap: all reranked
    for bad in (0, 10_001):
        with pytest.raises(ValueError, match="max_pool"):
            grdr_request(["1-2-3"], np.ones(4), max_pool=bad)


@pytest.mark.parametrize("recalled,k,fits", [(300, 10, True), (0, 10, True), (301, 10, False), (450, 500, True),
                                             (None, 10, False)])
def test_a_recall_that_fits_the_pool_is_one_knn_query(recalled, k, fits):
    """Trie count <= pool (or k): every recalled video is in the pool, pool order is moot."""
    filters = [{"term": {"split": "seen"}}]
    body = grdr_request(["4-5-6", "1-2-3"], np.ones(4), k=k, max_pool=300, prefixes=["7"], extra_filters=filters,
                        recalled_videos=recalled)
    assert ("rescore" not in body) is fits and ("script_score" in body["query"]) is fits
    if fits:
        assert body["query"] == recalled_by_cosine_query(["4-5-6", "1-2-3"], np.ones(4), ["7"], filters)
        assert body["size"] == k and body["docvalue_fields"] == ["grdr_ids"]


def test_parse_ids():
    np.testing.assert_array_equal(parse_ids(["1-2-3", "10-0-7"], 3), [[1, 2, 3], [10, 0, 7]])
    assert parse_ids([], 3).shape == (0, 3)
    with pytest.raises(ValueError, match="levels"):
        parse_ids(["1-2"], 3)


def test_searcher_refuses_a_pool_larger_than_the_rescore_window():
    from query.searcher import Searcher

    with pytest.raises(ValueError, match="max_pool: must be between 1 and 10000"):
        Searcher("unused-model-dir", index="unused", max_pool=20_000)  # refused before any IO
