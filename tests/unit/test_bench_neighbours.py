"""`grdr bench`'s corpus profile: exact nearest-neighbour cosines in blocks, their percentiles, the rerank
vectors as ingest computes them, and the report's table of corpora."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from bench.neighbours import corpus_neighbours, nearest_cosines, neighbour_profile, video_vectors
from bench.report import corpora_lines


def _brute_force(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = unit[rows] @ unit.T
    cos[np.arange(len(rows)), rows] = -np.inf
    return cos.max(axis=1)


def test_nearest_cosines_are_exact_across_blocks_and_skip_only_the_video_itself(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((103, 6)).astype(np.float32)
    vectors[50] = 3 * vectors[7]  # same direction as video 7: each is the other's neighbour at cosine 1
    rows = np.array([99, 7, 0, 50, 64])
    for chunk in (1, 10, 64, 1000):  # block edges everywhere, and one block for all
        np.testing.assert_allclose(nearest_cosines(vectors, rows, chunk), _brute_force(vectors, rows), atol=1e-6)
    assert nearest_cosines(vectors, np.array([7, 50]), 16) == pytest.approx([1.0, 1.0], abs=1e-6)
    np.save(tmp_path / "v.npy", vectors.astype(np.float16))  # a grown corpus's memory-mapped float16
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    np.testing.assert_allclose(nearest_cosines(mapped, rows, 10), _brute_force(vectors, rows), atol=2e-3)
    with pytest.raises(ValueError, match="at least 2 videos"):
        nearest_cosines(vectors[:1], np.array([0]))


def test_the_profile_reads_every_video_of_a_small_corpus_and_a_sample_of_a_large_one():
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((300, 4)).astype(np.float32)
    small = neighbour_profile(vectors, sample=500, chunk=64)
    exact = _brute_force(vectors, np.arange(300))
    assert small == {"videos_sampled": 300, **{f"p{q}": round(float(np.percentile(exact, q)), 4) for q in (5, 50, 95)}}
    sampled = neighbour_profile(vectors, sample=120, chunk=64)
    assert sampled["videos_sampled"] == 120 and sampled["p5"] <= sampled["p50"] <= sampled["p95"]
    assert neighbour_profile(vectors, sample=120, chunk=64) == sampled  # the same sample every run


def test_rerank_vectors_come_from_ingest_inputs_block_by_block():
    """Without frames each frame is the pooled feature (ingest.features.to_model_inputs); blocks of any
    size give the encoder's vectors of the whole corpus."""
    def encode_videos(frames, pooled):
        return None, (pooled + frames.sum(axis=1))[:, :2]

    runtime = SimpleNamespace(cfg=SimpleNamespace(frames=3, rerank_dim=2), encode_videos=encode_videos)
    pooled = np.arange(21, dtype=np.float32).reshape(7, 3)
    np.testing.assert_array_equal(video_vectors(runtime, pooled, None, chunk=3), 4 * pooled[:, :2])
    frames = np.ones((7, 5, 3), dtype=np.float32)  # resampled to the model's 3 frames
    np.testing.assert_array_equal(video_vectors(runtime, pooled, frames, chunk=2), pooled[:, :2] + 3)
    both = corpus_neighbours(runtime, pooled, None, sample=10)
    assert set(both) == {"features", "rerank"} and both["features"]["videos_sampled"] == 7


def _profile(p50: float) -> dict:
    return {"videos_sampled": 1000, "p5": p50 - 0.1, "p50": p50, "p95": p50 + 0.1}


def test_the_report_sets_each_corpus_beside_the_real_one():
    def scale(videos, p50, r10):
        return {"videos": videos, "nn_cosine": {"features": _profile(p50), "rerank": _profile(p50 + 0.05)},
                "systems": {"dense_exact": {"R@10": r10}}}

    result = {"growth_noise": 1.5,
              "real_corpus": {"videos": 1000, "queries": 300, "dense_exact": {"R@10": 75.44},
                              "nn_cosine": {"features": _profile(0.75), "rerank": _profile(0.8)}},
              "scales": {"100000": scale(100000, 0.78, 41.0), "1000": scale(1000, 0.75, 75.33)}}
    text = "\n".join(corpora_lines(result))
    assert "noise 1.5" in text and "same 300 test queries" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "corpus" not in line]
    real_nn = "0.650 / 0.750 / 0.850 | 0.700 / 0.800 / 0.900"
    assert rows == [f"| real | 1,000 | 1,000 | {real_nn} | 75.44 |",
                    f"| real, through OpenSearch | 1,000 | 1,000 | {real_nn} | 75.33 |",
                    "| grown | 100,000 | 1,000 | 0.680 / 0.780 / 0.880 | 0.730 / 0.830 / 0.930 | 41.0 |"]
