"""A model whose ID space is too large for dense validity masks (C=256, L=4: 2**32 IDs) served end to end
against the real node, Redis and a Celery worker: ingest writes its 4-code IDs, the trie store reads
them back from OpenSearch, the Searcher decodes by walking the trie's prefix tables (no masks built), and
recall through OpenSearch equals the in-process evaluation."""

import pytest

from bench.evaluate import evaluate_through_opensearch, full_pool_k
from grdr_plugin.data import load_dataset
from grdr_plugin.evaluation import evaluate
from grdr_plugin.model.ids import parse_id
from query.searcher import Searcher
from tests.conftest import TINY_SERVING, shared_dataset
from tests.support.catalogs import ingested

MSRVTT = shared_dataset("msrvtt")
BEAM, POOL, QUERIES = 20, 40, 40


@pytest.fixture(scope="module")
def large_model(tmp_path_factory):
    from tests.support.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("c256-l4")
    build_tiny_model(out, **{**TINY_SERVING, "codebook_size": 256, "levels": 4})
    return out


@pytest.fixture(scope="module")
def catalog(client, large_model, queue):
    """msrvtt (1,000 videos) ingested by the module's worker; its alias."""
    with ingested(client, MSRVTT, large_model, queue, "test-c256l4") as alias:
        yield alias


def test_a_c256_l4_model_serves_through_opensearch_by_walking_the_trie(client, catalog, large_model):
    searcher = Searcher(large_model, catalog, client=client, beam_size=BEAM, max_pool=POOL).connect()
    assert searcher.runtime.search_session is None  # no mask graph for this ID space
    store = searcher.store
    assert 0 < len(store) <= 4000 and all(len(parse_id(sid)) == 4 for sid in store.snapshot.base.keys())
    res = searcher.search("a man is cooking in a kitchen", k=10)
    decoded = [h.matched_id for h in res.hits if h.matched_id in store]  # else a widening prefix
    assert len(res.hits) == 10 and decoded and all(len(parse_id(sid)) == 4 for sid in decoded)
    assert 0 < res.recalled_ids <= BEAM
    assert "masks" not in vars(store.snapshot)
    ds = load_dataset(MSRVTT)
    rows = ds.test_queries()[:QUERIES]
    through = evaluate_through_opensearch(ds, searcher, k=full_pool_k(searcher), limit=QUERIES)["grdr"]
    inproc = evaluate(ds, searcher.runtime, ("grdr",), beam=BEAM, max_pool=POOL, query_rows=rows)["grdr"]
    for key in ("R@1", "R@5", "R@10", "candidate_recall"):
        assert through[key] == inproc[key], key
