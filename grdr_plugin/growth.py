"""Grow a dataset to N videos: the catalog a benchmark serves, or a `grdr tune --scale` chooses defaults for.

Rows 0..N0-1 are the source videos unchanged (their queries keep their ground truth); every
further row copies a source video's frames plus Gaussian noise of expected norm `noise` per frame
(re-normalised) under a fresh video_id "<source id>~<row>". The default noise 1.5 puts a copy as
far from its source as a real video's nearest other video is on the msrvtt proxy (median cosine
0.74 vs 0.75): each copy is a plausible distinct video about similar content, so grown corpora
add realistic distractors instead of near-duplicates (with 0.35, the proxy's own noise, copies
sit at cosine 0.98 and outrank the original). Scaled corpora also report overlap@10 with exact dense.

`with_grown_catalog` puts a split's queries (a validation split, whose ground truth are original videos) over
such a catalog, so recall can be measured at the size a catalog will be served at.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from grdr_plugin.data import Dataset, load_dataset

DEFAULT_NOISE = 1.5  # a copy as far from its source as a real video's nearest neighbour (see above)
# Rows grown per step: bounds the working copy (50k videos of 4 frames x 512-d float32 are ~400 MB).
CHUNK_ROWS = 50_000


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9, None)


def grow_dataset(src: Path | str, n: int, out: Path | str, *, noise: float = DEFAULT_NOISE, seed: int = 0,
                 keep_originals: bool = True, chunk: int = CHUNK_ROWS) -> Path:
    """Write a dataset folder of n videos (catalog.jsonl, features.npy, frames.npy?, queries.jsonl)."""
    src, out = Path(src), Path(out)
    lines = [json.loads(line) for line in (src / "catalog.jsonl").read_text().splitlines() if line.strip()]
    n0 = len(lines)
    if n < 1:
        raise ValueError("--scale: must be at least 1")
    rng = np.random.default_rng(seed)
    rows = np.arange(n) % n0
    perturb = np.arange(n) >= (n0 if keep_originals else 0)
    out.mkdir(parents=True, exist_ok=True)
    feats = np.load(src / "features.npy").astype(np.float32)
    has_frames = (src / "frames.npy").is_file()
    frames = np.load(src / "frames.npy").astype(np.float32) if has_frames else feats[:, None, :]
    d = frames.shape[-1]
    out_frames = np.lib.format.open_memmap(out / "frames.npy", mode="w+", dtype=np.float16,
                                           shape=(n, frames.shape[1], d)) if has_frames else None
    out_feats = np.lib.format.open_memmap(out / "features.npy", mode="w+", dtype=np.float16, shape=(n, d))
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        fr = frames[rows[sl]].copy()
        p = perturb[sl]
        fr[p] = _normalise(fr[p] + noise / np.sqrt(d) * rng.standard_normal(fr[p].shape).astype(np.float32))
        pooled = np.where(p[:, None], _normalise(fr.mean(axis=1)), feats[rows[sl]])
        out_feats[sl] = pooled.astype(np.float16)
        if out_frames is not None:
            out_frames[sl] = fr.astype(np.float16)
    out_feats.flush()
    if out_frames is not None:
        out_frames.flush()
    with (out / "catalog.jsonl").open("w") as fh:
        for i, r in enumerate(rows):
            row = dict(lines[r])
            if perturb[i]:
                row["video_id"] = f"{row['video_id']}~{i}"
            fh.write(json.dumps(row) + "\n")
    if (src / "queries.jsonl").is_file():
        (out / "queries.jsonl").write_text((src / "queries.jsonl").read_text())
    return out


def with_grown_catalog(ds: Dataset, n: int, work: Path | str, *, noise: float = DEFAULT_NOISE,
                       seed: int = 0) -> Dataset:
    """`ds` (its queries and splits untouched: e.g. a validation split of its folder's dataset) over its folder's
    catalog grown to n videos in `work`; the added videos are unseen (no query is theirs)."""
    if n <= ds.n_videos:
        return ds
    if ds.blank_lines:  # grow_dataset reads one video per feature row
        raise ValueError(f"{ds.root}/catalog.jsonl: blank lines {ds.blank_lines[:5]} hold no video; remove them and "
                         "their feature rows to grow the catalog")
    grown = load_dataset(grow_dataset(ds.root, n, Path(work) / f"{ds.name}-{n}", noise=noise, seed=seed))
    if grown.video_ids[:ds.n_videos] != ds.video_ids:
        raise ValueError(f"{ds.root}: its catalog is not the one these queries were split from")
    # the originals exactly as loaded (the grown files are float16)
    grown.features[:ds.n_videos] = ds.features
    grown.frames[:ds.n_videos] = ds.frames
    added = np.zeros(n - ds.n_videos, dtype=bool)
    return replace(ds, video_ids=grown.video_ids, video_split=np.concatenate([ds.video_split, added]),
                   features=grown.features, frames=grown.frames, catalog=grown.catalog, _index=grown._index)
