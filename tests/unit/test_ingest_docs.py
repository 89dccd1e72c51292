"""Index documents: IDs, prefixes, vector serialisation."""
import json

import numpy as np

from ingest.docs import build_sources, prefixes, semantic_ids


def test_ids_keep_view_order_and_drop_collisions():
    codes = np.array([[[1, 2, 3], [4, 5, 6], [1, 2, 3], [1, 2, 7]]])
    assert semantic_ids(codes) == [["1-2-3", "4-5-6", "1-2-7"]]
    assert prefixes(["1-2-3", "4-5-6", "1-2-7"]) == ["1", "1-2", "4", "4-5"]


def test_sources_are_valid_json_with_all_fields_and_close_vectors():
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((3, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    codes = rng.integers(0, 8, size=(3, 2, 3))
    metas = [{"video_id": f"v{i}", "title": "ünïcode \"quoted\""} for i in range(3)]
    sources, ids = build_sources(metas, codes, vecs)
    for i, s in enumerate(sources):
        doc = json.loads(s)
        assert doc["video_id"] == f"v{i}" and doc["title"] == metas[i]["title"]
        assert doc["grdr_ids"] == ids[i] and set(doc["grdr_prefixes"]) == set(prefixes(ids[i]))
        assert doc["ingested_at"].endswith("+00:00")
        np.testing.assert_allclose(doc["grdr_vec"], vecs[i], rtol=1e-6, atol=1e-7)
