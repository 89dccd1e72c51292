"""Query-layer pieces that need no server: text cleaning, filters, request bodies, planning, fusion,
results, the trie snapshot, the Searcher's config, ID parsing."""
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from grdr_plugin.model.ids import parse_ids
from query.filters import SearchFilters, field_kinds_of, filter_clauses
from query.hybrid import check_hybrid_mode, keyword_candidates_request, rrf
from query.request import POOL_COSINE, grdr_request, recalled_by_cosine_query
from query.results import recalled_total, reranked_pool, searched_shards_of, sourceless_hits, with_sources
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
    scored = body["query"]["script_score"]
    assert scored["query"]["bool"]["filter"] == [{"terms": {"grdr_ids": [evil, "1-2-3"]}}]
    script = scored["script"]
    assert script["source"] == "knn_score" and script["lang"] == "knn"
    assert script["params"]["query_value"] == [1.0] * 4


def test_the_pool_is_a_filter_with_prefixes_user_filters_and_nothing_decoded():
    body = grdr_request(["1-2-3"], np.ones(4), prefixes=["1-2"], extra_filters=[{"term": {"tags": "x"}}])
    recall, tags = body["query"]["script_score"]["query"]["bool"]["filter"]
    assert recall == {"bool": {"should": [{"terms": {"grdr_ids": ["1-2-3"]}}, {"terms": {"grdr_prefixes": ["1-2"]}}],
                               "minimum_should_match": 1}} and tags == {"term": {"tags": "x"}}
    assert grdr_request([], np.ones(4))["query"]["script_score"]["query"]["bool"]["filter"] == [{"match_none": {}}]


def test_nan_query_vector_is_refused():
    with pytest.raises(ValueError, match="query_vec"):
        grdr_request(["1-2-3"], np.array([1.0, np.nan]))


def test_filters_become_clauses_and_unknown_fields_are_named():
    f = SearchFilters(tags=["cooking"], duration_min=1, duration_max=30, fields={"source": ["msrvtt"]})
    clauses = filter_clauses(f, {"source": "keyword", "tags": "keyword", "duration_s": "numeric"})
    assert {"terms": {"tags": ["cooking"]}} in clauses
    assert {"range": {"duration_s": {"gte": 1, "lte": 30}}} in clauses
    assert {"terms": {"source": ["msrvtt"]}} in clauses
    with pytest.raises(ValueError, match="filters.fields.secret"):
        filter_clauses(SearchFilters(fields={"secret": ["x"]}), {"source": "keyword"})


@pytest.mark.parametrize("payload", [{"duration_min": "long"}, {"tags": "notalist"}, {"unknown": 1},
                                     {"duration_min": 5, "duration_max": 1}, {"duration_min": -1}])
def test_filters_with_wrong_types_are_refused(payload):
    with pytest.raises(ValidationError):
        SearchFilters(**payload)


def test_keyword_fields_exclude_internal_ones():
    props = {"grdr_ids": {"type": "keyword"}, "tags": {"type": "keyword"}, "title": {"type": "text"}}
    assert field_kinds_of(props) == {"tags": "keyword", "title": "text"}


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
    assert script == grdr_request(["1-2-3"], np.ones(4))["query"]["script_score"]["script"]


@pytest.mark.parametrize("mode", ["off", "rrf", "union"])
def test_hybrid_modes(mode):
    assert check_hybrid_mode(mode) == mode


@pytest.mark.parametrize("given", [True, False, None, 1, "both"])
def test_a_hybrid_value_that_is_not_a_mode_is_refused_with_the_choices(given):
    """No aliases: true/false are refused like any other non-mode, naming the field and the modes."""
    with pytest.raises(ValueError, match=rf"hybrid: {given!r} is not one of off, rrf, union"):
        check_hybrid_mode(given)


def test_one_request_scores_the_whole_pool_exactly_on_any_number_of_shards():
    """The pool is a filter, not a window of a ranking: no rescore, no pool fetch, k hits back."""
    filters = [{"term": {"split": "seen"}}]
    body = grdr_request(["4-5-6", "1-2-3"], np.ones(4), k=10, prefixes=["7"], extra_filters=filters)
    assert body["query"] == recalled_by_cosine_query(["4-5-6", "1-2-3"], np.ones(4), ["7"], filters)
    assert body["size"] == 10 and body["docvalue_fields"] == ["grdr_ids"]
    assert "rescore" not in body and "script_fields" not in body
    with pytest.raises(ValueError, match="k"):
        grdr_request(["1-2-3"], np.ones(4), k=0)


def test_a_flat_catalog_scores_the_same_pool_with_a_filtered_exact_knn_query():
    """knn_exact: the pool filter (recalled IDs, widening prefixes, user filters) inside a knn query for the
    top k, the query vector as a value; the rest of the request as under knn_score."""
    filters = [{"term": {"split": "seen"}}]
    exact = grdr_request(["4-5-6", "1-2-3"], np.ones(4), k=7, prefixes=["7"], extra_filters=filters,
                         scorer="knn_exact")
    script = grdr_request(["4-5-6", "1-2-3"], np.ones(4), k=7, prefixes=["7"], extra_filters=filters)
    assert exact["query"] == {"knn": {"grdr_vec": {"vector": [1.0] * 4, "k": 7,
                                                   "filter": script["query"]["script_score"]["query"]}}}
    assert {**exact, "query": None} == {**script, "query": None}
    nothing = grdr_request([], np.ones(4), scorer="knn_exact")["query"]["knn"]["grdr_vec"]["filter"]
    assert nothing == {"bool": {"filter": [{"match_none": {}}]}}


def test_union_keyword_candidates_on_several_shards_are_fetched_with_their_cosines():
    """A rescore window is per shard: on S shards BM25's candidates come back as the global top with
    each hit's cosine, for the caller to rerank."""
    keyword = keyword_candidates_request("dog", np.ones(4), size=50, filters=[], shards=2)
    assert keyword["size"] == 50 and "rescore" not in keyword and POOL_COSINE in keyword["script_fields"]
    assert keyword["_source"] is False and keyword["stored_fields"] == "_none_"
    script = keyword["script_fields"][POOL_COSINE]["script"]
    assert "cosineSimilarity" in script["source"] and script["params"]["query_value"] == [1.0] * 4
    with pytest.raises(ValueError, match="shards"):
        keyword_candidates_request("dog", np.ones(4), size=50, filters=[], shards=0)


def _pool_fetch(cosines):
    hits = [{"_index": "v-1", "_score": 300.0 - i,
             "fields": {"grdr_ids": ["1-2-3"], "_id": [f"v{i}"], POOL_COSINE: [c]}} for i, c in enumerate(cosines)]
    return {"_shards": {"total": 3}, "hits": {"total": {"value": 900}, "hits": hits}}


def test_a_fetched_pool_is_reranked_by_cosine_scored_as_knn_score_ties_in_pool_order():
    response = _pool_fetch([0.1, 0.9, -0.2, 0.9, 0.5])
    out = reranked_pool(response, 4)
    assert [h["_id"] for h in out["hits"]["hits"]] == ["v1", "v3", "v4", "v0"]
    assert [h["_score"] for h in out["hits"]["hits"]] == [0.95, 0.95, 0.75, 0.55]  # float32's, written shortest
    assert out["hits"]["total"] == {"value": 900} and recalled_total(out) == 900  # what widening reads is kept
    assert "_id" not in response["hits"]["hits"][0]  # the response itself is not changed
    assert searched_shards_of(out) == 3
    rescored = {"_shards": {"total": 1}, "hits": {"total": {"value": 9}, "hits": [{"_id": "a", "_score": 0.7}]}}
    assert reranked_pool(rescored, 4) is rescored  # a rescored (or BM25) response is already in order
    empty = {"_shards": {"total": 3}, "hits": {"total": {"value": 0}, "hits": []}}
    assert reranked_pool(empty, 4) is empty


def test_the_top_of_a_fetched_pool_gets_its_sources_and_a_gone_document_an_empty_one():
    pool = reranked_pool(_pool_fetch([0.1, 0.9, 0.5]), 2)
    assert sourceless_hits(pool) == [("v-1", "v1"), ("v-1", "v2")]
    filled = with_sources(pool, {("v-1", "v1"): {"title": "a cat"}})
    assert [h["_source"] for h in filled["hits"]["hits"]] == [{"title": "a cat"}, {}]
    assert sourceless_hits(filled) == [] and with_sources(filled, {}) is filled
    assert sourceless_hits(None) == [] and with_sources(None, {}) is None  # no keyword side


def test_parse_ids():
    np.testing.assert_array_equal(parse_ids(["1-2-3", "10-0-7"], 3), [[1, 2, 3], [10, 0, 7]])
    assert parse_ids([], 3).shape == (0, 3)
    with pytest.raises(ValueError, match="levels"):
        parse_ids(["1-2"], 3)


def test_format_rows_writes_one_querys_beams_as_format_ids_writes_a_batch():
    from grdr_plugin.model.ids import format_ids, format_rows

    beams = np.array([[1, 2], [30, 4]])
    assert format_rows(beams) == format_ids(beams[None])[0] == ["1-2", "30-4"]
    assert format_rows(np.zeros((0, 2), dtype=np.int64)) == []
    np.testing.assert_array_equal(parse_ids(format_rows(beams), 2), beams)
    # thousands of IDs of every length at once read back as the codes they were written from
    rng = np.random.default_rng(0)
    for levels in (1, 2, 3, 4):
        codes = rng.integers(0, 4096, size=(3, 700, levels))
        written = format_ids(codes)
        assert [len(ids) for ids in written] == [700] * 3
        np.testing.assert_array_equal(parse_ids([s for ids in written for s in ids], levels), codes.reshape(-1, levels))


def test_searcher_refuses_a_budget_past_the_bound():
    from query.searcher import Searcher

    with pytest.raises(ValueError, match="max_pool: must be between 1 and 100000"):
        Searcher("unused-model-dir", index="unused", max_pool=100_001)  # refused before any IO


# ---- the Searcher's configuration: one validated object, no network before connect() ----

@pytest.mark.parametrize("overrides,field", [({"beam_size": 0}, "beam_size"), ({"beam_size": 3001}, "beam_size"),
                                             ({"max_pool": 0}, "max_pool"), ({"threads": 0}, "threads"),
                                             ({"poll_interval_s": -1}, "poll_interval_s"),
                                             ({"hybrid_weights": (-1.0, 1.0)}, "hybrid_weights"),
                                             ({"hybrid_weights": (0.0, 0.0)}, "hybrid_weights"),
                                             ({"rrf_rank_constant": 0}, "rrf_rank_constant"),
                                             ({"beam_size": True}, "beam_size"), ({"beam": 5}, "beam")])
def test_searcher_config_names_the_bad_field(overrides, field):
    from query.searcher import SearcherConfig

    with pytest.raises(ValidationError) as err:
        SearcherConfig(**overrides)
    assert [e["loc"][0] for e in err.value.errors()] == [field]


def test_searcher_config_defaults_are_the_models():
    from query.searcher import SearcherConfig

    cfg = SearcherConfig()  # beam_size and max_pool None: the model's serving defaults (config.json serving)
    assert (cfg.beam_size, cfg.max_pool, cfg.hybrid_weights, cfg.native_hybrid) == (None, None, (1.0, 1.0), None)


def test_a_searcher_serves_with_the_models_beam_and_budget_share_unless_told_otherwise(tiny_model_dir, tmp_path):
    import shutil

    from grdr_plugin.model.artifacts import read_config, write_config
    from grdr_plugin.model.config import ServingRecord
    from grdr_plugin.pool import DEFAULT_BEAM, POOL_SHARE, default_max_pool
    from query.searcher import Searcher

    trie = SimpleNamespace(postings=100_000)
    plain = Searcher(tiny_model_dir, "unused", client=_NoNetwork())
    untuned = (DEFAULT_BEAM, default_max_pool(100_000, POOL_SHARE))
    assert (plain.beam_size(trie), plain.recall_budget(trie=trie)) == untuned
    tuned_dir = shutil.copytree(tiny_model_dir, tmp_path / "tuned")
    write_config(tuned_dir, read_config(tuned_dir).model_copy(
        update={"serving": ServingRecord(beam_size=700, pool_share=0.1)}))
    tuned = Searcher(tuned_dir, "unused", client=_NoNetwork())
    assert (tuned.beam_size(trie), tuned.recall_budget(trie=trie)) == (700, 10_000)
    told = Searcher(tuned_dir, "unused", client=_NoNetwork(), beam_size=50, max_pool=800)
    assert (told.beam_size(trie), told.recall_budget(trie=trie), told.recall_budget(300, trie)) == (50, 800, 300)
    levels = read_config(tiny_model_dir).levels
    assert plain.recall_level(trie) == tuned.recall_level(trie) == levels  # whole IDs unless tuned or told
    write_config(tuned_dir, read_config(tuned_dir).model_copy(
        update={"serving": ServingRecord(beam_size=700, pool_share=0.1, recall_level=levels - 1)}))
    assert Searcher(tuned_dir, "unused", client=_NoNetwork()).recall_level(trie) == levels - 1
    assert Searcher(tuned_dir, "unused", client=_NoNetwork(), recall_level=levels).recall_level(trie) == levels
    with pytest.raises(ValueError, match="recall_level: 9 is more than"):
        Searcher(tuned_dir, "unused", client=_NoNetwork(), recall_level=9)


def test_a_searcher_serves_each_catalog_with_the_defaults_tuned_nearest_its_size(tiny_model_dir, tmp_path):
    import shutil

    from grdr_plugin.model.artifacts import read_config, write_config
    from grdr_plugin.model.config import ServingRecord, TunedOn
    from query.searcher import Searcher

    def tuned(videos: int, postings: int, **record) -> ServingRecord:
        return ServingRecord(**record, tuned_on=TunedOn(
            model="0" * 64, queries=10, videos=videos, postings=postings, target=0.98, target_candidate_recall=95.0,
            met=True, of_dense={"R@1": 99.0, "R@5": 99.0, "R@10": 99.0}, candidate_recall=96.0))

    model = shutil.copytree(tiny_model_dir, tmp_path / "scaled")
    levels = read_config(model).levels
    write_config(model, read_config(model).model_copy(update={
        "serving": tuned(1_000, 4_000, beam_size=300, pool_share=0.025),
        "serving_at_scale": [tuned(1_000_000, 4_000_000, beam_size=50, pool_share=0.015, recall_level=levels - 1)]}))
    searcher = Searcher(model, "unused", client=_NoNetwork())
    small, grown, between = (SimpleNamespace(postings=p) for p in (4_000, 6_000_000, 100_000))
    assert (searcher.beam_size(small), searcher.recall_level(small), searcher.recall_budget(trie=small)) == \
        (300, levels, 1_000)
    assert (searcher.beam_size(grown), searcher.recall_level(grown), searcher.recall_budget(trie=grown)) == \
        (50, levels - 1, 90_000)
    assert searcher.beam_size(between) == 300 and 1_000 < searcher.recall_budget(trie=between) < 60_000
    told = Searcher(model, "unused", client=_NoNetwork(), beam_size=7, recall_level=levels, max_pool=500)
    assert (told.beam_size(grown), told.recall_level(grown), told.recall_budget(trie=grown)) == (7, levels, 500)


class _NoNetwork:
    """A client that fails any use: construction must not touch it."""

    def __getattr__(self, name):
        raise ConnectionError(f"network call: {name}")


def test_construction_reads_the_model_config_only_and_connect_makes_the_calls(tiny_model_dir):
    from query.searcher import Searcher, SearcherConfig

    searcher = Searcher(tiny_model_dir, "catalog", client=_NoNetwork(), config=SearcherConfig(beam_size=20),
                        max_pool=50)
    assert (searcher.config.beam_size, searcher.config.max_pool) == (20, 50)  # keyword overrides over the config
    with pytest.raises(RuntimeError, match="connect"):
        searcher.store  # noqa: B018  # an attribute read makes no network call: it asks for connect()
    with pytest.raises(ConnectionError, match="network call"):
        searcher.connect()
    with pytest.raises(ConnectionError, match="network call"):
        searcher.search("a dog")  # the first search connects
    with pytest.raises(ValueError, match="hybrid: True"):
        searcher.search("a dog", hybrid=True)  # argument errors come before any network call
    with pytest.raises(ValueError, match="max_pool"):
        searcher.search("a dog", max_pool=0)
    with pytest.raises(ValidationError, match="unknown"):
        Searcher(tiny_model_dir, "catalog", client=_NoNetwork(), unknown=1)


# ---- planning: decoded IDs + trie counts -> plan -> request bodies ----

class _Counts:
    """Trie counts from dicts (query.planner.TrieCounts)."""

    def __init__(self, videos: dict[str, int], prefixes: dict[str, int] | None = None):
        self.videos, self.prefixes = videos, prefixes or {}

    def video_count(self, sid):
        return self.videos.get(sid, 0)

    def prefix_count(self, prefix):
        return self.prefixes.get(prefix, 0)

    def prefix_counts(self, codes):
        return np.array([self.prefix_count("-".join(map(str, c))) for c in codes.tolist()], dtype=np.int64)


def test_decoded_ids_drop_padding_beams():
    from query.planner import decoded_ids

    codes = np.array([[[1, 2, 3], [4, 5, 6], [-1, -1, -1]], [[-1, -1, -1]] * 3])
    scores = np.array([[-0.1, -0.5, -np.inf], [-np.inf] * 3], dtype=np.float32)
    assert decoded_ids(codes, scores) == [["1-2-3", "4-5-6"], []]


def test_widening_takes_longest_prefixes_first_until_the_trie_says_k():
    from query.planner import widening_prefixes

    trie = _Counts({}, {"1-2": 3, "5-6": 4, "1": 10, "5": 1})
    beams = ["1-2-3", "1-2-4", "5-6-7"]
    assert widening_prefixes(beams, 10, 2, levels=3, trie=trie) == ["1-2", "5-6", "1"]
    assert widening_prefixes(beams, 6, 2, levels=3, trie=trie) == ["1-2", "5-6"]
    assert widening_prefixes(beams, 2, 2, levels=3, trie=trie) == []  # the pool already holds k


def _plan(hybrid="off", k=10, max_pool=40, filters=(), videos=None):
    from query.planner import plan_search

    codes = np.array([[[1, 2, 3], [4, 5, 6]], [[1, 2, 4], [-1, -1, -1]]])
    # far enough apart that the IDs' counts leave them in the decoder's order (grdr_plugin.pool.pool_ids)
    scores = np.array([[-0.1, -2.0], [-0.3, -np.inf]], dtype=np.float32)
    trie = _Counts(videos or {"1-2-3": 3, "4-5-6": 2, "1-2-4": 1}, {"1-2": 4, "4-5": 2, "1": 20, "4": 2})
    return plan_search(["a man cooks", "a cat"], np.ones((2, 4), dtype=np.float32), codes, scores, trie, k=k,
                       max_pool=max_pool, hybrid=hybrid, filters=list(filters), levels=3), trie


def test_a_plan_holds_each_querys_pool_ids_within_the_budget_and_sizes_the_requests():
    plan, _ = _plan()
    assert [q.ids for q in plan.queries] == [["1-2-3", "4-5-6"], ["1-2-4"]]
    assert [q.recalled_videos for q in plan.queries] == [5, 1] and plan.size == 10
    # 3 + 2 videos: under MIN_POOL_VIDEOS, so both IDs whatever the budget
    assert [q.ids for q in _plan(max_pool=1)[0].queries] == [["1-2-3", "4-5-6"], ["1-2-4"]]
    crowded = {"1-2-3": 12, "4-5-6": 20, "1-2-4": 1}
    assert [q.ids for q in _plan(max_pool=30, videos=crowded)[0].queries] == [["1-2-3"], ["1-2-4"]]  # 12 + 20 > 30
    filtered, _ = _plan(max_pool=30, videos=crowded, filters=[{"term": {"split": "seen"}}])
    assert [q.ids for q in filtered.queries] == [["1-2-3"], ["1-2-4"]]  # the same rule under user filters
    assert _plan("rrf")[0].size == 50  # rrf fuses KEYWORD_CANDIDATES of each side


def test_a_plan_takes_a_crowded_id_after_a_smaller_one_of_a_close_score():
    from query.planner import plan_search

    codes = np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    # after the best, turns: -0.2 - 0.75 ln 40 = -2.97 < -0.3 - 0.75 ln 10 = -2.03
    scores = np.array([[-0.1, -0.2, -0.3]], dtype=np.float32)
    trie = _Counts({"1-2-3": 5, "4-5-6": 40, "7-8-9": 10}, {})
    plan = plan_search(["a man cooks"], np.ones((1, 4), dtype=np.float32), codes, scores, trie, k=10, max_pool=45,
                       hybrid="off", filters=[], levels=3)
    assert plan.queries[0].ids == ["1-2-3", "7-8-9"] and plan.queries[0].counts.tolist() == [5, 10]  # 40 more: 55
    assert plan.queries[0].decoded == ["1-2-3", "4-5-6", "7-8-9"]  # widening still reads the decoder's order


@pytest.mark.parametrize("hybrid,per_query", [("off", 1), ("union", 2), ("rrf", 2)])
def test_the_first_round_is_each_querys_grdr_request_then_its_keyword_one(hybrid, per_query):
    from query.planner import first_round

    plan, _ = _plan(hybrid)
    bodies = first_round(plan)
    assert len(bodies) == per_query * 2
    grdr = bodies[::per_query]
    assert all("docvalue_fields" in b for b in grdr)  # the GRDR requests read the matched IDs
    assert all("rescore" not in b for b in grdr)  # the pool is a filter: scored whole
    if hybrid != "off":
        keyword = bodies[1::2]
        assert all(b["query"]["bool"]["must"][0]["multi_match"]["query"] in ("a man cooks", "a cat") for b in keyword)
        assert all(("rescore" in b) is (hybrid == "union") for b in keyword)  # union: one dense score scale


def test_ask_again_widens_only_pools_smaller_than_k():
    from dataclasses import replace

    from query.planner import ask_again, grdr_body

    plan, trie = _plan()
    prefixes, again = ask_again(plan, pool_sizes=[3, 40], trie=trie)  # query 0: a pool of 3 < k
    assert prefixes == [["1-2", "4-5", "1"], []] and again == [0]
    assert ask_again(plan, pool_sizes=[10, 10], trie=trie) == ([[], []], [])
    assert ask_again(replace(plan, widen=False), pool_sizes=[3, 40], trie=trie) == ([[], []], [])  # as evaluated
    body = grdr_body(plan, plan.queries[0], prefixes[0])
    assert {"terms": {"grdr_prefixes": ["1-2", "4-5", "1"]}} in body["query"]["script_score"]["query"]["bool"][
        "filter"][0]["bool"]["should"]


def test_a_search_recalled_at_a_shorter_level_takes_whole_prefixes_within_the_budget():
    from query.planner import ask_again, grdr_body, plan_search

    codes = np.array([[[1, 2], [4, 5], [6, 6]]])  # prefixes of 3-level IDs, best first
    scores = np.array([[-0.1, -2.0, -4.0]], dtype=np.float32)  # apart enough to keep this order
    trie = _Counts({}, {"1-2": 12, "4-5": 20, "6-6": 3, "1": 30})
    plan = plan_search(["a man cooks"], np.ones((1, 4), dtype=np.float32), codes, scores, trie, k=10, max_pool=35,
                       hybrid="off", filters=[], levels=3)
    q = plan.queries[0]
    # 12 + 20 fit 35, 6-6's 3 more would too: every video under the three prefixes; no whole ID is asked for
    assert (q.ids, q.prefixes, q.recalled_videos, plan.levels) == ([], ["1-2", "4-5", "6-6"], 35, 2)
    pool = grdr_body(plan, q)["query"]["script_score"]["query"]["bool"]["filter"][0]
    assert pool == {"terms": {"grdr_prefixes": ["1-2", "4-5", "6-6"]}}
    # a pool under k is widened by the prefixes one level shorter, the pool's own kept
    assert ask_again(plan, pool_sizes=[4], trie=trie) == ([["1-2", "4-5", "6-6", "1"]], [0])
    assert ask_again(plan, pool_sizes=[35], trie=trie) == ([["1-2", "4-5", "6-6"]], [])


def test_the_scored_pool_is_the_total_under_the_script_and_at_least_the_trie_count_under_exact_knn():
    from dataclasses import replace

    from query.planner import grdr_body, scored_pool

    plan, _ = _plan()
    q = plan.queries[0]  # 5 videos under its IDs
    assert [scored_pool(plan, q, total) for total in (3, 9)] == [3, 9]  # knn_score: every pool video counted
    exact = replace(plan, scorer="knn_exact")
    # knn_exact answers only the top k: the trie's count, unless widening matched more
    assert [scored_pool(exact, q, total) for total in (3, 9)] == [5, 9]
    assert grdr_body(exact, q)["query"]["knn"]["grdr_vec"]["k"] == exact.size


def test_native_hybrid_bodies_plan_the_widening_from_the_trie_counts():
    from query.hybrid import rrf_pipeline
    from query.planner import native_hybrid_bodies

    plan, trie = _plan("rrf")
    bodies, prefixes = native_hybrid_bodies(plan, trie, rrf_pipeline((1.0, 1.0), 60))
    assert prefixes == [["1-2", "4-5"], ["1-2", "1"]]  # from the trie counts 5 and 1 (not a response), to k=10
    assert [len(b["query"]["hybrid"]["queries"]) for b in bodies] == [2, 2] and bodies[0]["size"] == 50


# ---- fusion and results: hit lists in, hit list out ----

def _hit(vid, score, matched=None):
    from query.results import Hit

    return Hit(video_id=vid, score=score, matched_id=matched)


def test_union_ranks_both_sides_by_one_score_and_keeps_the_matched_id():
    from query.hybrid import fuse

    grdr = [_hit("a", 0.9, "1-2-3"), _hit("b", 0.7, "1-2-4")]
    keyword = [_hit("b", 0.7), _hit("c", 0.8), _hit("d", 0.7)]
    fused = fuse("union", grdr, keyword, 3, weights=(1.0, 1.0), rank_constant=60)
    assert [(h.video_id, h.score, h.matched_id) for h in fused] == [("a", 0.9, "1-2-3"), ("c", 0.8, None),
                                                                   ("b", 0.7, "1-2-4")]  # ties by video_id


def test_rrf_fusion_scores_by_rank_and_off_keeps_grdrs_top_k():
    from query.hybrid import fuse

    grdr = [_hit("a", 0.9, "1-2-3"), _hit("b", 0.7, "1-2-4")]
    keyword = [_hit("b", 12.0), _hit("c", 9.0)]
    fused = fuse("rrf", grdr, keyword, 2, weights=(1.0, 1.0), rank_constant=60)
    assert [h.video_id for h in fused] == ["b", "a"] and fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert fused[0].matched_id == "1-2-4"  # the GRDR side's hit, rescored
    assert fuse("off", grdr, [], 1, weights=(1.0, 1.0), rank_constant=60) == grdr[:1]


def test_a_hit_names_the_best_decoded_id_it_holds_else_its_widening_prefix():
    from query.results import hit_of, recalled_total

    raw = {"_id": "v1", "_score": 0.5, "_source": {"title": "t"}, "fields": {"grdr_ids": ["4-5-6", "1-2-3"]}}
    assert hit_of(raw, ["9-9-9", "1-2-3", "4-5-6"], []).matched_id == "1-2-3"
    assert hit_of(raw, ["9-9-9"], ["7", "4-5"]).matched_id == "4-5"
    assert hit_of(raw, [], []).model_dump() == {"video_id": "v1", "score": 0.5, "matched_id": None, "title": "t"}
    response = {"hits": {"total": {"value": 70, "relation": "eq"}, "hits": []}}
    assert recalled_total(response) == 70  # the pool: every recalled video


def test_a_catalog_hit_is_read_from_doc_values_alone_unless_fields_are_asked_for():
    from dataclasses import replace

    from query.planner import grdr_body
    from query.request import HIT_SOURCE, hit_payload
    from query.results import hit_of

    plan, _ = _plan()
    assert grdr_body(plan, plan.queries[0])["_source"] == HIT_SOURCE  # an index that predates it: `_source`
    body = grdr_body(replace(plan, hit_doc_values=True), plan.queries[0])
    # no stored field read: no `_source` and no `_id`, the ID, video ID and title from doc values
    assert {k: body[k] for k in ("_source", "stored_fields", "docvalue_fields")} == hit_payload(None) == {
        "_source": False, "stored_fields": "_none_", "docvalue_fields": ["grdr_ids", "video_id", "title.raw"]}
    raw = {"_index": "c-v000001", "_score": 0.5,
           "fields": {"grdr_ids": ["1-2-3"], "video_id": ["v1"], "title.raw": ["a man cooks"]}}
    from_source = {"_id": "v1", "_score": 0.5, "_source": {"title": "a man cooks"}, "fields": {"grdr_ids": ["1-2-3"]}}
    assert hit_of(raw, ["1-2-3"], []) == hit_of(from_source, ["1-2-3"], [])
    untitled = {**raw, "fields": {"grdr_ids": ["1-2-3"], "video_id": ["v2"]}}
    assert hit_of(untitled, ["1-2-3"], []).model_dump() == {"video_id": "v2", "score": 0.5, "matched_id": "1-2-3",
                                                             "title": None}


# ---- the trie snapshot: one immutable view of the valid IDs ----

def _snapshot(delta=None):
    import marisa_trie

    from query.trie_store import TrieSnapshot

    base = marisa_trie.Trie(["1-2-3", "4-5-6", "1-2-5"])
    counts = np.zeros(len(base), dtype=np.int64)
    for sid, n in {"1-2-3": 2, "4-5-6": 1, "1-2-5": 4}.items():
        counts[base.key_id(sid)] = n
    return TrieSnapshot.of(base, counts, delta or {}, levels=3, codebook_size=8)


def test_a_snapshot_counts_base_and_delta():
    snap = _snapshot({"1-3-0": 1, "4-5-6": 1})
    assert len(snap) == 5 and "1-3-0" in snap and "7-7-7" not in snap
    assert snap.video_count("1-2-5") == 4 and snap.video_count("1-3-0") == 1 and snap.video_count("7-7-7") == 0
    assert snap.prefix_count("1") == 7 and snap.prefix_count("1-2") == 6
    # many prefixes of one length at once, as a search recalled at a shorter level counts them
    np.testing.assert_array_equal(snap.prefix_counts(np.array([[1, 2], [4, 5], [1, 3], [7, 7]])), [6, 2, 1, 0])
    np.testing.assert_array_equal(snap.prefix_counts(np.array([[1], [4], [2]])), [7, 2, 0])
    assert snap.prefix_counts(np.zeros((0, 2), dtype=np.int64)).shape == (0,)
    with pytest.raises(ValueError, match="not shorter than an ID"):
        snap.prefix_counts(np.array([[1, 2, 5]]))
    fresh = _snapshot({"1-3-0": 1, "4-5-6": 1})
    before = fresh.memory_bytes()
    fresh.prefix_counts(np.array([[1]]))
    assert fresh.memory_bytes() > before  # the prefix counts, once built, are part of the recall structure
    np.testing.assert_array_equal(snap.tables[0], [1, 4])
    assert snap.masks[2][1 * 8 + 3, 0] and snap.memory_bytes() > 0


def test_a_snapshot_cannot_be_changed():
    import dataclasses

    snap = _snapshot({"1-3-0": 1})
    with pytest.raises(TypeError):
        snap.delta["2-2-2"] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.tables = []  # type: ignore[misc]


def test_hits_from_an_index_the_alias_did_not_point_at_on_connect_mean_it_moved():
    from query.executor import Answers
    from query.searcher import _moved

    def answers(*indices):
        hits = [{"_index": i, "_id": "v"} for i in indices]
        return Answers(grdr=[{"hits": {"hits": hits}}, {"hits": {"hits": []}}], keyword=[None, None], prefixes=[[], []])

    assert not _moved(answers("videos-v000001"), ("videos-v000001",))
    assert not _moved(answers(), ("videos-v000001",))  # no hit: nothing to tell
    assert _moved(answers("videos-v000001", "videos-v000002"), ("videos-v000001",))  # a reindex swapped the alias
