import json

import numpy as np
import pytest

from grdr_plugin.data import load_dataset
from grdr_plugin.growth import grow_dataset, with_grown_catalog
from grdr_plugin.validation import HoldoutSpec, holdout_split
from tests.unit.test_data import make_dataset


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


def test_a_validation_split_over_a_grown_catalog_keeps_its_queries_and_ground_truth(tmp_path):
    src = load_dataset(make_dataset(tmp_path / "d", n_videos=12, unseen=3))
    val = holdout_split(src, HoldoutSpec(fraction=0.25))
    grown = with_grown_catalog(val, 40, tmp_path / "work", seed=2)
    assert grown.n_videos == 40 and grown.video_ids[:12] == src.video_ids
    assert grown.query_text == val.query_text and (grown.query_video == val.query_video).all()
    assert (grown.query_train == val.query_train).all()
    # the split's own videos exactly as loaded (held-out ones stay unseen); the copies are unseen: no query is theirs
    assert (grown.video_split[:12] == val.video_split).all() and not grown.video_split[12:].any()
    np.testing.assert_array_equal(grown.features[:12], src.features)
    np.testing.assert_array_equal(grown.frames[:12], src.frames)
    assert grown.video_index("v3~15") == 15 and grown.frames.shape == (40, 3, 16)
    assert with_grown_catalog(val, 12, tmp_path / "none") is val  # nothing to grow


def test_growing_a_catalog_with_blank_lines_is_refused_naming_them(tmp_path):
    root = make_dataset(tmp_path / "d", n_videos=6, unseen=1)
    lines = (root / "catalog.jsonl").read_text().splitlines(keepends=True)
    (root / "catalog.jsonl").write_text("".join(lines[:5]) + "\n" + lines[5])
    frames = np.load(root / "frames.npy")
    np.save(root / "frames.npy", np.concatenate([frames[:5], frames[:1], frames[5:]]))
    feats = np.load(root / "features.npy")
    np.save(root / "features.npy", np.concatenate([feats[:5], feats[:1], feats[5:]]))
    ds = load_dataset(root)
    with pytest.raises(ValueError, match=r"blank lines \[6\] hold no video"):
        with_grown_catalog(ds, 20, tmp_path / "work")
