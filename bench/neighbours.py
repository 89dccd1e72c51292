"""How close each video's nearest other video is in a corpus: the profile `grdr bench` reports beside
every corpus, so a reader can judge how far a grown one (grdr_plugin.growth) looks like the real one.

Exact: every sampled video is compared with every video of the corpus, one matmul per block of
corpus rows, so memory stays at one block however large the corpus.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ingest.features import to_model_inputs

# Videos whose nearest neighbour a grown corpus reports: the percentiles' sampling error is about
# ±0.005 cosine, and at 1M videos the search is one 2,000 x 1M matmul (seconds).
NN_SAMPLE = 2000
NN_PERCENTILES = (5, 50, 95)
# Corpus rows per matmul block: the sample's cosines to one block are 2,000 x 8,192 float32 (64 MB).
NN_CHUNK = 8192
# Videos per video-encoder call when computing a corpus's rerank vectors (ingest's batch order of size).
VECTOR_CHUNK = 4096


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-9, None)


def nearest_cosines(vectors: np.ndarray, rows: np.ndarray, chunk: int = NN_CHUNK) -> np.ndarray:
    """The highest cosine of each of `vectors[rows]` to any OTHER row of `vectors` [N, D] (an array or
    a memory map, any float dtype), float32 [len(rows)]. A duplicate row counts as a neighbour; the
    row itself does not."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(vectors) < 2:
        raise ValueError(f"a nearest neighbour needs at least 2 videos; the corpus has {len(vectors)}")
    queries = _unit(vectors[rows])
    best = np.full(rows.size, -np.inf, dtype=np.float32)
    for start in range(0, len(vectors), chunk):
        block = _unit(vectors[start: start + chunk])
        cos = queries @ block.T
        own = np.flatnonzero((rows >= start) & (rows < start + len(block)))
        cos[own, rows[own] - start] = -np.inf
        np.maximum(best, cos.max(axis=1), out=best)
    return best


def neighbour_profile(vectors: np.ndarray, sample: int = NN_SAMPLE, seed: int = 0,
                      chunk: int = NN_CHUNK) -> dict[str, Any]:
    """{"videos_sampled": m, "p5", "p50", "p95"}: percentiles of the nearest-neighbour cosine of `sample`
    videos drawn without replacement (every video when the corpus has no more)."""
    n = len(vectors)
    rows = np.arange(n) if n <= sample else np.random.default_rng(seed).choice(n, size=sample, replace=False)
    best = nearest_cosines(vectors, rows, chunk)
    return {"videos_sampled": int(rows.size),
            **{f"p{q}": round(float(np.percentile(best, q)), 4) for q in NN_PERCENTILES}}


def video_vectors(runtime, pooled: np.ndarray, frames: Optional[np.ndarray],
                  chunk: int = VECTOR_CHUNK) -> np.ndarray:
    """Every video's rerank vector as ingest computes it (`ingest.features.to_model_inputs`, then the
    video encoder), `chunk` videos at a time from arrays or memory maps: float16 [N, D], half the RAM
    of float32 at a million videos and ample for cosines reported to 3 decimals."""
    out = np.empty((len(pooled), runtime.cfg.rerank_dim), dtype=np.float16)
    for start in range(0, len(pooled), chunk):
        part = slice(start, start + chunk)
        f, p = to_model_inputs(pooled[part], None if frames is None else frames[part], runtime.cfg.frames)
        out[part] = runtime.encode_videos(f, p)[1]
    return out


def corpus_neighbours(runtime, pooled: np.ndarray, frames: Optional[np.ndarray],
                      sample: int = NN_SAMPLE) -> dict[str, dict[str, Any]]:
    """The nearest-neighbour profile of a corpus in the dataset's feature space (where grdr_plugin.growth adds
    its noise) and in the rerank space (the vectors exact dense and GRDR's rerank compare)."""
    return {"features": neighbour_profile(pooled, sample),
            "rerank": neighbour_profile(video_vectors(runtime, pooled, frames), sample)}
