"""Which decoded IDs make up the recalled pool: one rule for in-process eval and OpenSearch.

IDs are taken whole, best beam first, while the running total of their video counts stays within
`max_pool` (at least one ID). Counting with multiplicity (a video reachable by two chosen IDs
counts twice) makes the rule computable from per-ID counts alone, which is what the query
layer knows before it sends the request; so both paths recall exactly the same videos.
"""
from __future__ import annotations

import numpy as np


def ids_to_keep(counts_in_beam_order: np.ndarray, max_pool: int) -> int:
    """How many leading IDs to keep, given each ID's number of videos."""
    counts = np.asarray(counts_in_beam_order, dtype=np.int64)
    if counts.size == 0:
        return 0
    return max(1, int(np.searchsorted(np.cumsum(counts), max_pool, side="right")))
