"""Feature shaping and per-row validation for the video encoder."""
import numpy as np

from ingest.features import row_problems, to_model_inputs, uniform_indices


def test_uniform_indices_are_centred_and_repeat_when_short():
    assert uniform_indices(100, 4).tolist() == [12, 37, 62, 87]
    assert uniform_indices(2, 4).tolist() == [0, 0, 1, 1]
    assert uniform_indices(1, 3).tolist() == [0, 0, 0]


def test_frames_are_resampled_and_pooled_is_the_normalised_mean():
    frames = np.random.default_rng(0).standard_normal((3, 8, 5)).astype(np.float32)
    f, p = to_model_inputs(None, frames, 4)
    assert f.shape == (3, 4, 5) and np.array_equal(f, frames[:, [1, 3, 5, 7]])
    mean = frames.mean(axis=1)
    np.testing.assert_allclose(p, mean / np.linalg.norm(mean, axis=1, keepdims=True), rtol=1e-5)


def test_pooled_only_becomes_a_still_video():
    pooled = np.arange(10, dtype=np.float16).reshape(2, 5)
    f, p = to_model_inputs(pooled, None, 3)
    assert f.dtype == np.float32 and f.shape == (2, 3, 5)
    assert np.array_equal(f[:, 2], pooled.astype(np.float32)) and np.array_equal(p, pooled.astype(np.float32))


def test_row_problems_name_each_bad_row():
    pooled = np.ones((4, 6), np.float32)
    frames = np.ones((4, 2, 6), np.float32)
    pooled[1, 2] = np.nan
    frames[2, 1, 0] = np.inf
    pooled[3] = 0
    assert row_problems(pooled, frames, 6) == [None, "features[2]: NaN", "frames[1][0]: Inf", "features: all zeros"]
    assert row_problems(pooled, frames, 8) == ["wrong feature dimension: got 6, the model expects 8"] * 4
