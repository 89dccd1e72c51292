"""Feature arrays in the shape the video encoder wants, and per-row validation (numpy only).

The model takes frames [N, F, D] plus pooled [N, D]. Inputs come as a dataset's
features.npy (+ optional frames.npy), a per-video .npy file, or frames embedded from a video
file; every path ends in `to_model_inputs`, so F and D are reconciled in one place.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np


def uniform_indices(total: int, n: int) -> np.ndarray:
    """n indices spread evenly over range(total), each at the centre of its segment (repeats if total < n)."""
    if total < 1:
        raise ValueError("no frames to sample from")
    return np.minimum(((np.arange(n) + 0.5) * total / n).astype(np.int64), total - 1)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def row_problems(pooled: Optional[np.ndarray], frames: Optional[np.ndarray], feature_dim: int) -> list[Optional[str]]:
    """Per row of the inputs as given (before resampling), why it cannot be encoded (None = fine):
    wrong dimension, NaN/Inf (named by position, e.g. 'features[3]: NaN'), all zeros."""
    given = [(name, arr) for name, arr in (("frames", frames), ("features", pooled)) if arr is not None]
    if not given:
        raise ValueError("need pooled features or frames")
    n = given[0][1].shape[0]
    for _, arr in given:
        if arr.shape[-1] != feature_dim:
            return [f"wrong feature dimension: got {arr.shape[-1]}, the model expects {feature_dim}"] * n
    finite = np.ones(n, dtype=bool)
    for _, arr in given:
        finite &= np.isfinite(arr.reshape(n, -1)).all(axis=1)
    name, ref = given[-1]  # the pooled feature when given, else the frames
    zero = ~np.any(ref.reshape(n, -1) != 0, axis=1)
    out: list[Optional[str]] = [None] * n
    for i in np.flatnonzero(~finite | zero):
        out[i] = _first_non_finite([(nm, arr[i]) for nm, arr in given]) or f"{name}: all zeros"
    return out


def _first_non_finite(rows: list[tuple[str, np.ndarray]]) -> Optional[str]:
    """'frames[f][j]: NaN' or 'features[j]: Inf' for the first bad value of one row, or None."""
    for name, arr in rows:
        bad = np.argwhere(~np.isfinite(arr))
        if len(bad):
            first = tuple(int(i) for i in bad[0])
            return f"{name}{''.join(f'[{i}]' for i in first)}: {'NaN' if np.isnan(arr[first]) else 'Inf'}"
    return None


def to_model_inputs(pooled: Optional[np.ndarray], frames: Optional[np.ndarray],
                    n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (frames [N, n_frames, D], pooled [N, D]) float32.

    Frames are resampled uniformly to the model's F; without frames each frame is the pooled
    feature (a still video); without pooled it is the normalised frame mean (as the runtime does).
    """
    if frames is None and pooled is None:
        raise ValueError("need pooled features or frames")
    if frames is None:
        pooled = np.asarray(pooled, dtype=np.float32)
        frames = np.repeat(pooled[:, None, :], n_frames, axis=1)
    else:
        frames = np.asarray(frames, dtype=np.float32)
        if pooled is None:  # from every frame given, before resampling drops some
            pooled = l2_normalise(frames.mean(axis=1))
        if frames.shape[1] != n_frames:
            frames = frames[:, uniform_indices(frames.shape[1], n_frames)]
    return np.ascontiguousarray(frames), np.asarray(pooled, dtype=np.float32)


def dataset_rows(root: Path, rows: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """pooled [n, D] and frames [n, F, D] (or None) for the given rows, read through a memory map.

    Memory-mapping means a task touches only its own rows, however large the dataset.
    """
    feats = np.load(root / "features.npy", mmap_mode="r", allow_pickle=False)
    pooled = np.asarray(feats[rows], dtype=np.float32)
    frames = None
    if (root / "frames.npy").is_file():
        fr = np.load(root / "frames.npy", mmap_mode="r", allow_pickle=False)
        frames = np.asarray(fr[rows], dtype=np.float32)
    return pooled, frames


NPY_MAGIC = b"\x93NUMPY"


def feature_file(path: Path) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """A per-video .npy: [D] is a pooled feature, [F, D] are frame features -> (pooled [1,D], frames [1,F,D])."""
    with open(path, "rb") as fh:
        magic = fh.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:  # else np.load takes it for a pickle and suggests loading it unsafely
        what = "an empty file" if not magic else "an .npz archive" if magic.startswith(b"PK") else "not a .npy file"
        raise ValueError(f"{what}; save one array with numpy.save")
    return feature_array(np.load(path, allow_pickle=False))  # never unpickle user files


def inline_features(values: list) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """A catalog line's "features" (JSON numbers), shaped and checked as a per-video .npy is."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError):
        raise ValueError("expected numbers shaped [D] or [F, D] (every frame of the same length)") from None
    return feature_array(arr)


def feature_array(arr: np.ndarray) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """One video's features: [D] is a pooled feature, [F, D] are frame features -> (pooled [1,D], frames [1,F,D])."""
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected a float array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"expected at least one frame and one dimension, got shape {arr.shape}")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes Inf, which row_problems reports
        arr = arr.astype(np.float32)
    if arr.ndim == 1:
        return arr[None], None
    if arr.ndim == 2:
        return None, arr[None]
    raise ValueError(f"expected shape [D] or [F, D], got {arr.shape}")
