"""Shard-correct recall and rerank on a real 3-node cluster (its own ports and Redis, started by the test):
the same catalog ingested by a real Celery worker into a 1-shard and a 3-shard index returns identical hits for
every msrvtt and msvd test query, and those hits give in-process eval's recall; the base trie read from either
index is the same.  Hybrid on many shards is run and its change measured (BM25's statistics are per shard)."""
import json

import numpy as np
import pytest

from grdr_plugin.data import load_dataset
from grdr_plugin.evaluation import evaluate
from grdr_plugin.metrics import rank_of, recall_at
from grdr_plugin.runtime import ModelRuntime
from query.results import Hit
from query.searcher import Searcher
from query.trie_store import id_counts
from tests.conftest import shared_dataset
from tests.support.multinode import LocalCluster, ok

NODES = 3
DATASETS = ("msrvtt", "msvd")
# A small beam and budget, so that the budget cuts most queries' decoded IDs (the pool is then not
# simply every decoded ID's videos).
BEAM, POOL, K = 8, 40, 10
BATCH = 200  # queries per search_many: one _msearch each
FLOAT32_ULPS = 4 * 2.0 ** -23  # a few units in the last place of a float32
HYBRID_SAMPLE = 300  # queries per hybrid mode: what BM25's per-shard statistics change is measured, not asserted


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster(http=9260, transport=9360, redis=6391)
    c.start(NODES)
    yield c
    c.remove()


@pytest.fixture(scope="module")
def catalogs(cluster, tiny_model_dir, tmp_path_factory):
    """Per dataset, its catalog ingested into a 1-shard and a 3-shard index (one replica each): alias by shards."""
    aliases = {}
    with cluster.worker(tmp_path_factory.mktemp("worker") / "worker.log", concurrency=2) as queue:
        for name in DATASETS:
            for shards in (1, 3):
                alias = f"{name}-{shards}shard"
                out = ok(cluster.grdr("ingest", "--dataset", shared_dataset(name), "--model", tiny_model_dir,
                                      "--index", alias, "--shards", shards, "--replicas", 1, "--wait", "--json",
                                      env_extra={"GRDR_INGEST_QUEUE": queue}))
                summary = json.loads(out.stdout.strip().splitlines()[-1])
                assert summary["failed"] == 0, summary
                aliases[name, shards] = alias
    client = cluster.client()
    assert client.cluster.health(wait_for_status="green")["status"] == "green"
    for (_, shards), alias in aliases.items():
        (index,) = client.indices.get_alias(name=alias)
        assert int(client.indices.get_settings(index=index)[index]["settings"]["index"]["number_of_shards"]) == shards
    return aliases


def searcher(cluster, model, alias) -> Searcher:
    return Searcher(model, alias, client=cluster.client(), beam_size=BEAM, max_pool=POOL, threads=1).connect()


def listing(hits: list[Hit]) -> list[tuple]:
    """What must be identical whatever the shard count: the videos, in order, each with the ID that recalled it."""
    return [(h.video_id, h.matched_id, h.title) for h in hits]


def hits(s: Searcher, texts, **kwargs) -> list[list[Hit]]:
    return [r.hits for i in range(0, len(texts), BATCH) for r in s.search_many(texts[i:i + BATCH], k=K, **kwargs)]


@pytest.mark.parametrize("name", DATASETS)
def test_one_and_three_shards_return_identical_hits_equal_to_in_process_eval(cluster, catalogs, tiny_model_dir, name):
    ds = load_dataset(shared_dataset(name))
    rows = ds.test_queries()
    texts = [ds.query_text[r] for r in rows]
    one, three = (searcher(cluster, tiny_model_dir, catalogs[name, s]) for s in (1, 3))
    assert one.search(texts[0]).pool_size == three.search(texts[0]).pool_size > 0
    by_one, by_three = hits(one, texts), hits(three, texts)
    differ = [i for i, (a, b) in enumerate(zip(by_one, by_three)) if listing(a) != listing(b)]
    assert not differ, (f"{len(differ)} of {len(rows)} queries differ, e.g. {texts[differ[0]]!r}: "
                        f"{by_one[differ[0]]} vs {by_three[differ[0]]}")
    # the same cosine, to float32 precision: knn_score on every shard
    scores = [(h.score, g.score) for a, b in zip(by_one, by_three) for h, g in zip(a, b)]
    np.testing.assert_allclose(*np.array(scores).T, rtol=FLOAT32_ULPS)

    truth = [ds.video_ids[ds.query_video[r]] for r in rows]
    # the pools' hits alone, as in process (no widening)
    ranks = np.array([rank_of([h.video_id for h in got], t) for got, t in zip(hits(three, texts, widen=False), truth)])
    inproc = evaluate(ds, ModelRuntime(tiny_model_dir, threads=1), ("grdr",), beam=BEAM, max_pool=POOL,
                      query_rows=rows)
    through = recall_at(ranks)
    for key in ("R@1", "R@5", "R@10"):
        assert through[key] == inproc["grdr"][key], key


def test_the_base_trie_of_three_shards_is_the_one_shards(cluster, catalogs, tiny_model_dir):
    client = cluster.client()
    for name in DATASETS:
        one, three = (dict(id_counts(client, catalogs[name, s])) for s in (1, 3))
        assert one == three and len(one) > 1
        for sid in sorted(one)[:5]:  # each count is the videos holding the ID
            holding = {"query": {"term": {"grdr_ids": sid}}}
            assert client.count(index=catalogs[name, 3], body=holding)["count"] == one[sid]
        tries = [searcher(cluster, tiny_model_dir, catalogs[name, s]).store.snapshot for s in (1, 3)]
        assert sorted(tries[0].base.keys()) == sorted(tries[1].base.keys())
        assert all(tries[0].video_count(sid) == tries[1].video_count(sid) == n for sid, n in one.items())


@pytest.mark.parametrize("hybrid", ["union", "rrf"])
def test_hybrid_and_filters_run_on_three_shards_and_their_change_is_measured(cluster, catalogs, tiny_model_dir,
                                                                              hybrid):
    ds = load_dataset(shared_dataset("msrvtt"))
    texts = [ds.query_text[r] for r in ds.test_queries()[:HYBRID_SAMPLE]]
    one, three = (searcher(cluster, tiny_model_dir, catalogs["msrvtt", s]) for s in (1, 3))
    by_one, by_three = hits(one, texts, hybrid=hybrid), hits(three, texts, hybrid=hybrid)
    assert all(len(h) == K for h in by_three)
    same = np.mean([len({h.video_id for h in a} & {h.video_id for h in b}) / K for a, b in zip(by_one, by_three)])
    identical = np.mean([a == b for a, b in zip(by_one, by_three)])
    print(f"\n[shards] hybrid={hybrid}: 3-shard vs 1-shard top-{K} overlap {same:.4f}, identical lists "
          f"{identical:.4f} over {len(texts)} msrvtt test queries")
    filtered = [three.search(t, k=K, hybrid=hybrid, filters={"fields": {"split": ["seen"]}}) for t in texts[:20]]
    assert all(len(r.hits) == K for r in filtered)
    docs = three.client.mget(index=catalogs["msrvtt", 3], body={"ids": [h.video_id for r in filtered for h in r.hits]},
                             _source=["split"])["docs"]
    assert {d["_source"]["split"] for d in docs} == {"seen"}
