"""Dataset loading and validation errors that name the bad line/field."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from grdr_plugin.data import DatasetError, load_annotation_json, load_dataset

WORDS = ["dog", "cat", "car", "man", "woman", "ball", "kitchen", "beach", "guitar", "horse", "rain", "snow"]


def make_dataset(root: Path, n_videos: int = 12, frames: int = 3, dim: int = 16, caps_per_video: int = 5,
                 unseen: int = 3, seed: int = 0) -> Path:
    """A tiny synthetic dataset in the DESIGN.md layout."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    feats = rng.standard_normal((n_videos, frames, dim)).astype(np.float32)
    np.save(root / "frames.npy", feats.astype(np.float16))
    pooled = feats.mean(1)
    np.save(root / "features.npy", (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float16))
    with (root / "catalog.jsonl").open("w") as fh:
        for i in range(n_videos):
            split = "unseen" if i >= n_videos - unseen else "seen"
            fh.write(json.dumps({"video_id": f"v{i}", "split": split, "title": WORDS[i % 12]}) + "\n")
    with (root / "queries.jsonl").open("w") as fh:
        for i in range(n_videos):
            for j in range(caps_per_video):
                split = "test" if (i >= n_videos - unseen or j == 0) else "train"
                text = f"a {WORDS[i % 12]} with a {WORDS[(i + j) % 12]} number {j}"
                text += " heldout" if split == "test" else ""
                row = {"query_id": f"q{i}_{j}", "text": text, "video_id": f"v{i}", "split": split}
                fh.write(json.dumps(row) + "\n")
    return root


def test_loads_valid_dataset(tmp_path):
    ds = load_dataset(make_dataset(tmp_path / "d"))
    assert ds.n_videos == 12 and ds.frames.shape == (12, 3, 16) and ds.features.dtype == np.float32
    assert ds.video_split.sum() == 9
    tr, te = ds.train_queries(), ds.test_queries()
    assert len(tr) + len(te) == len(ds.query_ids)
    assert ds.video_split[ds.query_video[tr]].all()  # training never sees unseen videos
    assert not set(tr) & set(te)


def test_frames_optional(tmp_path):
    d = make_dataset(tmp_path / "d")
    (d / "frames.npy").unlink()
    ds = load_dataset(d)
    assert ds.frames.shape == (12, 1, 16) and not ds.has_frames


def _rewrite_line(path: Path, lineno: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "fname,lineno,text,expect",
    [
        ("catalog.jsonl", 3, "{not json", "catalog.jsonl line 3: invalid JSON"),
        ("catalog.jsonl", 2, json.dumps({"split": "seen"}), "catalog.jsonl line 2: missing field 'video_id'"),
        ("catalog.jsonl", 4, json.dumps({"video_id": "v0"}), "catalog.jsonl line 4: duplicate video_id 'v0'"),
        ("catalog.jsonl", 5, json.dumps({"video_id": "v4", "split": "train"}), "catalog.jsonl line 5: field 'split'"),
        ("queries.jsonl", 7, json.dumps({"query_id": "x", "text": "hi", "video_id": "nope", "split": "test"}),
         "queries.jsonl line 7: field 'video_id' 'nope' is not in catalog.jsonl"),
        ("queries.jsonl", 2, json.dumps({"query_id": "x", "text": "", "video_id": "v0", "split": "test"}),
         "queries.jsonl line 2: field 'text' must be a non-empty string"),
        ("queries.jsonl", 9, json.dumps({"query_id": "x", "text": "t", "video_id": "v0", "split": "dev"}),
         "queries.jsonl line 9: field 'split' must be one of"),
        ("queries.jsonl", 60, json.dumps({"query_id": "x", "text": "t", "video_id": "v11", "split": "train"}),
         "queries.jsonl line 60: a 'train' query for unseen video 'v11'"),
        ("queries.jsonl", 3, "[1, 2]", "queries.jsonl line 3: expected a JSON object"),
    ],
)
def test_validation_names_line_and_field(tmp_path, fname, lineno, text, expect):
    d = make_dataset(tmp_path / "d")
    _rewrite_line(d / fname, lineno, text)
    with pytest.raises(DatasetError, match=expect.replace("(", r"\(").replace("[", r"\[")):
        load_dataset(d)


def test_array_errors(tmp_path):
    d = make_dataset(tmp_path / "d")
    np.save(d / "features.npy", np.zeros((5, 16), np.float32))
    with pytest.raises(DatasetError, match=r"features.npy has 5 rows but catalog.jsonl has 12 lines \(0 of them blank"):
        load_dataset(d)
    bad = np.zeros((12, 16), np.float32)
    bad[7, 3] = np.nan
    np.save(d / "features.npy", bad)
    with pytest.raises(DatasetError, match="features.npy: row 7 contains NaN"):
        load_dataset(d)
    np.save(d / "features.npy", np.zeros((12, 16), np.float32))
    np.save(d / "frames.npy", np.zeros((12, 3, 8), np.float32))
    with pytest.raises(DatasetError, match="frames.npy: feature dim 8"):
        load_dataset(d)
    (d / "features.npy").unlink()
    with pytest.raises(DatasetError, match="features.npy: file not found"):
        load_dataset(d)


def test_annotation_json(tmp_path):
    p = tmp_path / "ann.json"
    p.write_text(json.dumps([{"video": "a", "caption": "one"}, {"video": "b", "caption": ["x", "y "]},
                             {"video": "a", "caption": ["two"]}]))
    assert load_annotation_json(p) == {"a": ["one", "two"], "b": ["x", "y"]}
    p.write_text(json.dumps([{"video": "a", "caption": 3}]))
    with pytest.raises(DatasetError, match="item 0: field 'caption'"):
        load_annotation_json(p)
    p.write_text(json.dumps([{"caption": "x"}]))
    with pytest.raises(DatasetError, match="item 0: field 'video'"):
        load_annotation_json(p)
