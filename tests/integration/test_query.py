"""The query layer against the real node, with a catalog ingested by a real Celery worker.

Searcher: decode -> terms filter -> knn_score rerank in one request; parity with in-process eval;
widening; new IDs picked up; fingerprint guard; filters; hybrid; the HTTP API.
"""
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bench.evaluate import evaluate_through_opensearch
from grdr_plugin import index as gi
from grdr_plugin.data import load_dataset
from grdr_plugin.evaluation import evaluate
from grdr_plugin.growth import grow_dataset
from grdr_plugin.runtime import ModelRuntime
from ingest.submit import enqueue, make_plan, wait
from ingest.target import prepare_target
from ingest.worker_process import celery_worker
from query.api import MAX_BODY_BYTES, create_app
from query.searcher import Searcher
from query.trie_store import TrieSnapshot
from tests.conftest import shared_dataset

BEAM, POOL = 8, 40


@pytest.fixture(scope="module")
def catalog(client, tiny_model_dir, tmp_path_factory):
    """msrvtt (1,000 videos) ingested through a worker; yields (alias, dataset, worker queue)."""
    from grdr_plugin.id_registry import REGISTRY_INDEX

    ds_dir = shared_dataset("msrvtt")
    alias = f"test-query-{int(time.time() * 1000) % 10**9}"
    with celery_worker(log_path=tmp_path_factory.mktemp("worker") / "worker.log") as queue:
        target = prepare_target(client, alias, tiny_model_dir)
        summary, _ = wait(enqueue(make_plan(dataset=ds_dir, batch_size=500), target, queue=queue))
        assert summary.indexed == 1000 and summary.failed == 0
        yield alias, ds_dir, queue
    gi.drop_index(client, alias)
    client.delete_by_query(index=REGISTRY_INDEX, body={"query": {"term": {"alias": alias}}}, ignore=[404], refresh=True)


@pytest.fixture(scope="module")
def searcher(catalog, tiny_model_dir, client):
    searcher = Searcher(tiny_model_dir, catalog[0], client=client, beam_size=BEAM, max_pool=POOL, poll_interval_s=0.1)
    return searcher.connect()


def recorded_msearch(searcher, monkeypatch) -> list[list[dict]]:
    """Every `_msearch` the Searcher sends from now on, as its body lines (header, request, header, ...)."""
    calls: list[list[dict]] = []
    real = searcher.client.msearch

    def recording(body, **kw):
        calls.append(list(body))
        return real(body=body, **kw)

    monkeypatch.setattr(searcher.client, "msearch", recording)
    return calls


def test_search_reranks_the_recalled_pool_in_one_request(searcher):
    res = searcher.search("a man is cooking in a kitchen", k=10)
    assert len(res.hits) == 10
    scores = [h.score for h in res.hits]
    assert scores == sorted(scores, reverse=True)
    assert all(h.matched_id for h in res.hits)
    assert set(res.timings_ms) == {"encode", "decode", "opensearch", "total"}
    assert 0 < res.recalled_ids <= BEAM


def test_a_catalogs_hits_read_from_doc_values_are_those_read_from_source(searcher, client, catalog, monkeypatch):
    calls = recorded_msearch(searcher, monkeypatch)
    text = "a man is cooking in a kitchen"
    plain = searcher.search(text, k=10)
    asked = searcher.search(text, k=10, source=["title"])  # a field asked for: `_source`, as any index
    sent = [line for body in calls for line in body[1::2]]  # the request lines (each follows its header)
    assert sent[0]["_source"] is False and sent[0]["stored_fields"] == "_none_" and sent[1]["_source"] == {
        "includes": ["title"]}
    assert [h.model_dump(exclude={"source"}) for h in plain.hits] == [h.model_dump(exclude={"source"})
                                                                      for h in asked.hits]
    docs = client.mget(index=catalog[0], body={"ids": [h.video_id for h in plain.hits]}, _source=["title"])["docs"]
    assert [h.title for h in plain.hits] == [d["_source"]["title"] for d in docs] and all(h.title for h in plain.hits)


def test_one_search_request_per_query(searcher, monkeypatch):
    """Recall, pool cut and rerank travel in one request: one _msearch line pair per query."""
    calls = recorded_msearch(searcher, monkeypatch)
    texts = ["a man is cooking in a kitchen", "a cat plays with a ball"]
    # a budget that takes all 8 decoded IDs, whose videos fill k: no widening round
    results = searcher.search_many(texts, k=10, max_pool=1000)
    assert [len(body) for body in calls] == [4] and all(len(r.hits) == 10 for r in results)
    for text, r in zip(texts, results):
        _, ids, counts = window(searcher, text, 1000)
        assert r.recalled_ids == len(ids) == BEAM and 10 <= r.pool_size <= counts.sum()  # every video of the IDs


def test_recall_through_opensearch_equals_in_process_eval(searcher, catalog, tiny_model_dir):
    ds = load_dataset(catalog[1])
    rows = ds.test_queries()[:60]
    inproc = evaluate(ds, ModelRuntime(tiny_model_dir, threads=1), ("grdr",), beam=BEAM, max_pool=POOL,
                      query_rows=rows)["grdr"]
    through = evaluate_through_opensearch(ds, searcher, limit=60)["grdr"]
    assert {k: through[k] for k in ("R@1", "R@5", "R@10")} == {k: inproc[k] for k in ("R@1", "R@5", "R@10")}


def test_a_pool_recalled_at_prefixes_through_opensearch_equals_in_process_eval(catalog, tiny_model_dir, client):
    """The same pool rule over the IDs' prefixes one level up (ServingRecord.recall_level): every video under the
    leading decoded prefixes within the budget, matched on the prefixes field, hits naming the prefix."""
    ds = load_dataset(catalog[1])
    rows = ds.test_queries()[:60]
    runtime = ModelRuntime(tiny_model_dir, threads=1)
    level = runtime.cfg.levels - 1
    short = Searcher(tiny_model_dir, catalog[0], client=client, beam_size=BEAM, max_pool=POOL,
                     recall_level=level).connect()
    inproc = evaluate(ds, runtime, ("grdr",), beam=BEAM, max_pool=POOL, query_rows=rows, recall_level=level)["grdr"]
    through = evaluate_through_opensearch(ds, short, limit=60)["grdr"]
    assert {k: through[k] for k in ("R@1", "R@5", "R@10")} == {k: inproc[k] for k in ("R@1", "R@5", "R@10")}
    res = short.search("a man is cooking in a kitchen", k=10)
    assert len(res.hits) == 10 and 0 < res.recalled_ids <= BEAM
    assert all(h.matched_id and h.matched_id.count("-") == level - 1 for h in res.hits)  # a prefix of `level` codes


def window(searcher, text, max_pool):
    """The query's encoding, pool IDs and their trie counts, as the Searcher plans them (query.planner)."""
    from grdr_plugin.pool import pool_ids
    from query.planner import decoded_ids

    q = searcher.runtime.encode_queries([text])
    trie = searcher.store.snapshot
    codes, scores = searcher.decode(q, trie=trie)
    beams = decoded_ids(codes, scores)[0]
    counts = np.array([trie.video_count(b) for b in beams], dtype=np.int64)
    taken = pool_ids(scores[0][np.isfinite(scores[0])], counts, max_pool)
    return q, [beams[i] for i in taken], counts[taken]


def test_stale_trie_counts_widen_the_pool_and_lose_nothing(searcher, tiny_model_dir, catalog, client, monkeypatch):
    """Counts lower than the index's (videos ingested under known IDs since the trie was built) let the
    budget take more IDs: the pool grows, the request stays one and exact.  At counts of 0 every
    decoded ID is taken, which is what an unbounded budget takes."""
    texts = ["a man is cooking in a kitchen", "a cat plays with a ball"]
    unbounded = Searcher(tiny_model_dir, catalog[0], client=client, beam_size=BEAM, max_pool=100_000)
    expected = unbounded.search_many(texts, k=10)
    calls = recorded_msearch(searcher, monkeypatch)
    monkeypatch.setattr(TrieSnapshot, "video_count", lambda self, sid: 0)
    stale = searcher.search_many(texts, k=10)
    assert [len(body) for body in calls] == [4]
    assert [r.hits for r in stale] == [r.hits for r in expected]
    assert [r.recalled_ids for r in stale] == [r.recalled_ids for r in expected]  # every decoded ID taken


def test_a_small_pool_is_widened_by_prefixes_to_fill_k(tiny_model_dir, catalog, client):
    narrow = Searcher(tiny_model_dir, catalog[0], client=client, beam_size=1, max_pool=1)
    res = narrow.search("two dogs run on the beach", k=50)
    assert len(res.hits) == 50


def test_new_ids_reach_a_running_searcher_within_2s(searcher, catalog, client, tiny_model_dir, tmp_path):
    alias, ds_dir, queue = catalog
    grown = grow_dataset(ds_dir, 1300, tmp_path / "grown", noise=1.5, seed=7)  # 300 new, strongly perturbed videos
    known_before = len(searcher.store)
    target = prepare_target(client, alias, tiny_model_dir)
    plan = make_plan(dataset=grown, batch_size=1300)
    summary, _ = wait(enqueue(plan, target, queue=queue))
    done = time.perf_counter()
    new_docs = client.search(index=alias, body={"size": 300, "query": {"wildcard": {"video_id": "*~*"}},
                                                "_source": ["grdr_ids"]})["hits"]["hits"]
    new_ids = {s for d in new_docs for s in d["_source"]["grdr_ids"]}
    while not all(s in searcher.store for s in new_ids):
        assert time.perf_counter() - done < 2.0, "published IDs must reach the query process within 2 s"
        searcher.store.refresh()
        time.sleep(0.02)
    assert len(searcher.store) >= known_before
    assert summary.updated == 1000 and summary.indexed == 300


def test_an_index_of_another_model_is_refused(client, alias, tiny_model_dir):
    gi.create_index(client, alias, gi.IndexSpec(rerank_dim=32, fingerprint="another-models-fingerprint"))
    searcher = Searcher(tiny_model_dir, alias, client=client)  # construction reads the model folder only
    with pytest.raises(gi.FingerprintMismatch, match="--reindex"):
        searcher.connect()


def test_filters_restrict_hits(searcher, client, catalog):
    res = searcher.search("people talking", k=10, filters={"fields": {"split": ["unseen"]}})
    assert res.hits
    splits = {client.get(index=catalog[0], id=h.video_id)["_source"]["split"] for h in res.hits}
    assert splits == {"unseen"}
    with pytest.raises(ValueError, match="filters.fields.nope"):
        searcher.search("people talking", filters={"fields": {"nope": ["x"]}})


def test_hybrid_union_ranks_recalled_and_keyword_candidates_by_one_dense_score(searcher):
    text = "a man is cooking"
    grdr, union = searcher.search(text, k=10), searcher.search(text, k=10, hybrid="union")
    with pytest.raises(ValueError, match="hybrid: True is not one of off, rrf, union"):
        searcher.search(text, k=10, hybrid=True)  # no boolean aliases: the mode is named
    assert len(union.hits) == 10
    scores = [h.score for h in union.hits]
    assert scores == sorted(scores, reverse=True)
    # the same knn_score over a superset of candidates: position by position never below GRDR alone
    assert all(u >= g - 1e-6 for u, g in zip(scores, (h.score for h in grdr.hits)))
    keyword_only = [h for h in union.hits if h.matched_id is None]
    assert all(0.0 <= h.score <= 1.0 for h in keyword_only)  # rescored to (1 + cos) / 2, not a BM25 score


def test_hybrid_rrf_fuses_the_two_rankings(searcher):
    res = searcher.search("a man is cooking", k=10, hybrid="rrf")
    assert len(res.hits) == 10
    assert [h.score for h in res.hits] == sorted((h.score for h in res.hits), reverse=True)
    with pytest.raises(ValueError, match="hybrid"):
        searcher.search("a man is cooking", hybrid="both")


def test_without_neural_search_rrf_fuses_client_side(searcher, tiny_model_dir, catalog, client, caplog):
    """The node has no neural-search: detected as absent; forced on, OpenSearch refuses the
    `hybrid` query and the batch is fused client side instead (same hits), once and for all."""
    assert searcher.native_hybrid is False
    forced = Searcher(tiny_model_dir, catalog[0], client=client, beam_size=BEAM, max_pool=POOL, native_hybrid=True)
    texts = ["a man is cooking", "a cat plays with a ball"]
    with caplog.at_level("WARNING", logger="query.executor"):
        fused = forced.search_many(texts, k=10, hybrid="rrf")
    assert forced.native_hybrid is False and "refused the hybrid query" in caplog.text
    # a Searcher connected now (the module's has a trie of older counts, so its pools may differ)
    client_side = Searcher(tiny_model_dir, catalog[0], client=client, beam_size=BEAM, max_pool=POOL,
                           native_hybrid=False)
    assert [r.hits for r in fused] == [r.hits for r in client_side.search_many(texts, k=10, hybrid="rrf")]


def test_a_temporary_pipeline_travels_in_an_msearch_body_line(searcher):
    """What the native rrf request relies on, checked on this OpenSearch with a core processor: a
    pipeline in one _msearch body applies to that search only (the score-ranker processor itself
    needs neural-search: refused here by name, in that response only)."""
    only_unseen = {"request_processors": [{"filter_query": {"query": {"term": {"split": "unseen"}}}}]}
    ranker = {"phase_results_processors": [{"score-ranker-processor": {"combination": {"technique": "rrf"}}}]}
    lines = [{"index": searcher.index}, {"size": 0, "query": {"match_all": {}}, "search_pipeline": only_unseen},
             {"index": searcher.index}, {"size": 0, "query": {"match_all": {}}},
             {"index": searcher.index}, {"size": 0, "query": {"match_all": {}}, "search_pipeline": ranker}]
    filtered, everything, refused = searcher.client.msearch(body=lines)["responses"]
    count = searcher.client.count
    unseen = count(index=searcher.index, body={"query": {"term": {"split": "unseen"}}})["count"]
    everything_count = count(index=searcher.index)["count"]
    assert filtered["hits"]["total"]["value"] == unseen < everything["hits"]["total"]["value"] == everything_count
    assert "score-ranker-processor" in refused["error"]["reason"]


def test_http_api(searcher):
    api = TestClient(create_app(searcher))
    health = api.get("/health").json()
    assert health["fingerprint"] == searcher.runtime.fingerprint and health["rrf_fusion"] == "client"
    ok = api.post("/search", json={"text": "a cat plays with a ball", "k": 3})
    assert ok.status_code == 200 and len(ok.json()["hits"]) == 3
    bad_k = api.post("/search", json={"text": "x", "k": 0})
    assert bad_k.status_code == 422 and bad_k.json()["details"][0]["field"] == "k"
    assert api.post("/search", json={"text": "   "}).status_code == 400
    assert api.post("/search", json={"text": "x", "beam_size": 10_000}).status_code == 422
    assert api.post("/search", json={"text": "x", "beam_size": 5, "k": 2}).status_code == 200
    bool_hybrid = api.post("/search", json={"text": "a man is cooking", "hybrid": True})
    assert bool_hybrid.status_code == 422 and bool_hybrid.json()["details"][0]["field"] == "hybrid"
    union = api.post("/search", json={"text": "a man is cooking", "hybrid": "union"})
    assert union.status_code == 200 and len(union.json()["hits"]) == 10
    assert api.post("/search", json={"text": "x" * (MAX_BODY_BYTES + 10)}).status_code == 413
    assert api.post("/search", json={"text": "x", "filters": {"fields": {"nope": ["y"]}}}).status_code == 400
    assert "/search" in api.get("/openapi.json").json()["paths"]
