"""Semantic ID strings and their integer encodings (numpy only).

An ID is L codes, one per residual level, written "c1-c2-c3" in decimal.  For tries and
inverted indexes a prefix of length l is also encoded as one base-C integer
c1*C^(l-1) + ... + cl, so that membership is a vectorised `np.searchsorted`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SEPARATOR = "-"


def format_id(codes: Sequence[int] | np.ndarray) -> str:
    """[12, 201, 7] -> "12-201-7"."""
    return SEPARATOR.join(str(int(c)) for c in codes)


def parse_id(s: str) -> list[int]:
    """"12-201-7" -> [12, 201, 7]; raises ValueError on anything else."""
    parts = s.strip().split(SEPARATOR)
    if not parts or any(not p.isdigit() for p in parts):
        raise ValueError(f"not a semantic ID: {s!r}")
    return [int(p) for p in parts]


def parse_ids(ids: Sequence[str], levels: int) -> np.ndarray:
    """["1-2-3", ...] -> int64 [M, L] (vectorised: one split over the joined string)."""
    if not ids:
        return np.zeros((0, levels), dtype=np.int64)
    flat = np.array(" ".join(ids).replace(SEPARATOR, " ").split(), dtype=np.int64)
    if flat.size != len(ids) * levels:
        raise ValueError(f"semantic IDs: some do not have {levels} levels")
    return flat.reshape(len(ids), levels)


def id_prefix(sid: str, n: int) -> str:
    """The first n codes of an ID: ("12-201-7", 2) -> "12-201"."""
    return SEPARATOR.join(sid.split(SEPARATOR)[:n])


def proper_prefixes(sid: str) -> list[str]:
    """"12-201-7" -> ["12", "12-201"]: the shorter prefixes a pool can be widened by."""
    parts = sid.split(SEPARATOR)
    return [SEPARATOR.join(parts[:n]) for n in range(1, len(parts))]


def children_pattern(prefix: str) -> str:
    """What every ID under `prefix` starts with ("12" -> "12-"), for trie key searches."""
    return prefix + SEPARATOR


def format_rows(codes: np.ndarray) -> list[str]:
    """codes int [M, L] -> its M ID (or prefix) strings: one query's beams.  One %-format of every code at once,
    split on the spaces between IDs: a search formats thousands of prefixes, and joining each row's str()s
    costs 3.5x as much."""
    codes = np.asarray(codes)
    if not codes.size:
        return [""] * len(codes)  # M IDs of no codes (or none)
    rows, levels = codes.shape
    one = SEPARATOR.join(["%d"] * levels)
    return ((one + " ") * rows % tuple(codes.ravel().tolist())).split(" ")[:rows]


def format_ids(codes: np.ndarray) -> list[list[str]]:
    """codes int [N, K, L] -> per video (or query), its K ID strings (format_rows of all N x K at once)."""
    codes = np.asarray(codes)
    n, k = codes.shape[:2]
    flat = format_rows(codes.reshape(n * k, -1)) if n * k else []
    return [flat[i * k: (i + 1) * k] for i in range(n)]


def encode_prefix(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """Encode [..., l] codes as base-C integers [...]; l = 0 gives zeros."""
    codes = np.asarray(codes, dtype=np.int64)
    out = np.zeros(codes.shape[:-1], dtype=np.int64)
    for j in range(codes.shape[-1]):
        out = out * codebook_size + codes[..., j]
    return out
