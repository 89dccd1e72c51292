"""The foundation against the real OpenSearch + k-NN node: plugins, index, bulk, terms + knn_score."""
import numpy as np
from opensearchpy import helpers

from bench.baselines import exact_dense_request, hnsw_index_body
from grdr_plugin import index as gi
from query.request import grdr_request

DIM = 32


def make_docs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    vocab = [f"{a}-{b}-{c}" for a in range(3) for b in range(4) for c in range(5)]
    ids = [list(rng.choice(vocab, size=4, replace=False)) for _ in range(n)]
    return vecs, ids, vocab


def bulk_load(client, alias, vecs, ids):
    actions = ({"_index": alias, "_id": f"v{i}", "_source": {"video_id": f"v{i}", "grdr_ids": ids[i],
                                                              "grdr_vec": vecs[i].tolist(), "title": f"video {i}"}}
               for i in range(len(vecs)))
    ok, errors = helpers.bulk(client, actions, chunk_size=100, refresh="wait_for")
    assert ok == len(vecs) and not errors


def cosine(a, b):
    return (b @ a) / (np.linalg.norm(b, axis=1) * np.linalg.norm(a))


def test_knn_plugin_is_installed(client):
    names = {row["component"] for row in client.cat.plugins(format="json")}
    assert "opensearch-knn" in names


def test_terms_filter_then_knn_score_returns_exactly_the_filtered_docs_in_cosine_order(client, alias):
    spec = gi.IndexSpec(rerank_dim=DIM, fingerprint="test-fingerprint-0001")
    gi.create_index(client, alias, spec)
    vecs, ids, vocab = make_docs()
    bulk_load(client, alias, vecs, ids)

    wanted = vocab[:7]
    expected = [i for i in range(len(vecs)) if set(ids[i]) & set(wanted)]
    assert 0 < len(expected) < len(vecs)
    q = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    cos = cosine(q, vecs[expected])
    expected_order = [f"v{expected[j]}" for j in np.argsort(-cos, kind="stable")]

    resp = client.search(index=alias, body=grdr_request(wanted, q, k=len(expected) + 50))
    hits = resp["hits"]["hits"]
    assert resp["hits"]["total"]["value"] == len(expected)
    assert [h["_id"] for h in hits] == expected_order
    # knn_score with cosinesimil scores (1 + cosine) / 2 on OpenSearch 3.x
    np.testing.assert_allclose([h["_score"] for h in hits], (1 + np.sort(cos)[::-1]) / 2, atol=1e-4)
    for h in hits:
        assert set(h["fields"]["grdr_ids"]) & set(wanted)
        assert "grdr_vec" not in h["_source"]


def test_a_catalog_keeps_its_videos_in_the_order_of_their_smallest_id(client, alias):
    target = gi.create_index(client, alias, gi.IndexSpec(rerank_dim=DIM, fingerprint="test-fingerprint-0006"))
    vecs, ids, _ = make_docs(n=200, seed=6)
    bulk_load(client, alias, vecs, ids)
    client.indices.forcemerge(index=target, max_num_segments=1)
    client.indices.refresh(index=target)
    hits = client.search(index=alias, body={"size": 200, "sort": ["_doc"], "_source": False,
                                            "docvalue_fields": ["grdr_ids"]})["hits"]["hits"]
    smallest = [min(h["fields"]["grdr_ids"]) for h in hits]
    assert len(hits) == 200 and smallest == sorted(smallest)
    assert smallest != [min(ids[int(h["_id"][1:])]) for h in sorted(hits, key=lambda h: int(h["_id"][1:]))]


def test_exact_dense_scores_every_document(client, alias):
    gi.create_index(client, alias, gi.IndexSpec(rerank_dim=DIM, fingerprint="test-fingerprint-0002"))
    vecs, ids, _ = make_docs(n=120, seed=3)
    bulk_load(client, alias, vecs, ids)
    q = np.random.default_rng(4).standard_normal(DIM).astype(np.float32)
    hits = client.search(index=alias, body=exact_dense_request(q, k=10))["hits"]["hits"]
    assert [h["_id"] for h in hits] == [f"v{i}" for i in np.argsort(-cosine(q, vecs))[:10]]


def test_reingesting_a_video_overwrites_it(client, alias):
    gi.create_index(client, alias, gi.IndexSpec(rerank_dim=DIM, fingerprint="test-fingerprint-0003"))
    vecs, ids, _ = make_docs(n=50, seed=5)
    bulk_load(client, alias, vecs, ids)
    bulk_load(client, alias, vecs, ids)
    assert client.count(index=alias)["count"] == 50


def test_alias_swap_and_info(client, alias):
    spec = gi.IndexSpec(rerank_dim=DIM, fingerprint="test-fingerprint-0004")
    first = gi.create_index(client, alias, spec)
    second = gi.create_index(client, alias, gi.IndexSpec(rerank_dim=DIM, fingerprint="test-fingerprint-0005"))
    assert gi.alias_target(client, alias) == first  # a new version does not steal the alias
    assert gi.swap_alias(client, alias, second) == first
    info = gi.index_info(client, alias)
    assert info["index"] == second and info["versions"] == [first, second]
    assert info["fingerprint"] == "test-fingerprint-0005"
    assert info["fields"]["grdr_vec"] == f"knn_vector[{DIM}]"
    assert gi.drop_index(client, alias) == [first, second]
    assert gi.alias_target(client, alias) is None


def test_hnsw_baseline_index_answers_knn_queries(client, alias):
    name = f"{alias}-hnsw"
    client.indices.create(index=name, body=hnsw_index_body(DIM, m=8, ef_construction=32))
    try:
        vecs, _, _ = make_docs(n=100, seed=6)
        ok, _ = helpers.bulk(client, ({"_index": name, "_id": f"v{i}", "_source": {"grdr_vec": v.tolist()}}
                                      for i, v in enumerate(vecs)), refresh="wait_for")
        q = vecs[17]
        knn = {"knn": {"grdr_vec": {"vector": q.tolist(), "k": 5}}}
        resp = client.search(index=name, body={"size": 5, "query": knn})
        assert resp["hits"]["hits"][0]["_id"] == "v17"
    finally:
        client.indices.delete(index=name)
