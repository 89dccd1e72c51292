import json

import numpy as np

from bench.scale import grow_dataset
from grdr_plugin.data import load_dataset


def make_src(tmp_path, n=5, f=3, d=8):
    rng = np.random.default_rng(0)
    fr = rng.standard_normal((n, f, d)).astype(np.float32)
    fr /= np.linalg.norm(fr, axis=-1, keepdims=True)
    pooled = fr.mean(1) / np.linalg.norm(fr.mean(1), axis=-1, keepdims=True)
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "frames.npy", fr.astype(np.float16))
    np.save(src / "features.npy", pooled.astype(np.float16))
    catalog = "".join(json.dumps({"video_id": f"v{i}", "split": "seen"}) + "\n" for i in range(n))
    (src / "catalog.jsonl").write_text(catalog)
    query = {"query_id": "q", "text": "x", "video_id": "v1", "split": "test"}
    (src / "queries.jsonl").write_text(json.dumps(query) + "\n")
    return src


def test_grown_dataset_keeps_originals_and_adds_unit_norm_noisy_copies(tmp_path):
    src = make_src(tmp_path)
    out = grow_dataset(src, 23, tmp_path / "big", noise=0.3, seed=1)
    ds = load_dataset(out)
    assert ds.n_videos == 23
    assert ds.video_ids[:5] == [f"v{i}" for i in range(5)] and ds.video_ids[7] == "v2~7"
    assert len(set(ds.video_ids)) == 23
    orig = np.load(src / "features.npy")
    np.testing.assert_array_equal(np.load(out / "features.npy")[:5], orig)
    np.testing.assert_allclose(np.linalg.norm(ds.frames[5:], axis=-1), 1.0, atol=2e-3)
    cos = (ds.features[7] * ds.features[2]).sum()
    assert 0.8 < cos < 0.999  # a near neighbour of its source, not a duplicate
    assert ds.query_video[0] == 1  # ground truth still points at the original


def test_grow_is_repeatable(tmp_path):
    src = make_src(tmp_path)
    a = np.load(grow_dataset(src, 12, tmp_path / "a", seed=3) / "frames.npy")
    b = np.load(grow_dataset(src, 12, tmp_path / "b", seed=3) / "frames.npy")
    np.testing.assert_array_equal(a, b)
