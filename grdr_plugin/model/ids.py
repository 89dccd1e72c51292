"""Semantic ID strings and their integer encodings (numpy only).

An ID is L codes, one per residual level, written "c1-c2-c3" in decimal.  For tries and
inverted indexes a prefix of length l is also encoded as one base-C integer
c1*C^(l-1) + ... + cl, so that membership is a vectorised `np.searchsorted`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def format_id(codes: Sequence[int] | np.ndarray) -> str:
    """[12, 201, 7] -> "12-201-7"."""
    return "-".join(str(int(c)) for c in codes)


def parse_id(s: str) -> list[int]:
    """"12-201-7" -> [12, 201, 7]; raises ValueError on anything else."""
    parts = s.strip().split("-")
    if not parts or any(not p.isdigit() for p in parts):
        raise ValueError(f"not a semantic ID: {s!r}")
    return [int(p) for p in parts]


def format_ids(codes: np.ndarray) -> list[list[str]]:
    """codes int [N, K, L] -> per video, its K ID strings."""
    return [[format_id(view) for view in video] for video in np.asarray(codes)]


def encode_prefix(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """Encode [..., l] codes as base-C integers [...]; l = 0 gives zeros."""
    codes = np.asarray(codes, dtype=np.int64)
    out = np.zeros(codes.shape[:-1], dtype=np.int64)
    for j in range(codes.shape[-1]):
        out = out * codebook_size + codes[..., j]
    return out
