"""Which decoded IDs make up the recalled pool: one rule for in-process eval and OpenSearch.

IDs are taken whole, best beam first, while the running total of their video counts stays within
`max_pool` (at least one ID). Counting with multiplicity (a video reachable by two chosen IDs
counts twice) makes the rule computable from per-ID counts alone, which is what the query
layer knows before it sends the request; so both paths recall exactly the same videos.
"""
from __future__ import annotations

import numpy as np

# Defaults shared by `grdr eval`, the query layer and the benchmark: beam 200 keeps GRDR within
# 95 % of dense recall on both proxies (docs/MODEL.md); the pool cap bounds rerank work per query.
DEFAULT_BEAM = 200
DEFAULT_MAX_POOL = 300


def ids_to_keep(counts_in_beam_order: np.ndarray, max_pool: int) -> int:
    """How many leading IDs to keep, given each ID's number of videos."""
    counts = np.asarray(counts_in_beam_order, dtype=np.int64)
    if counts.size == 0:
        return 0
    return max(1, int(np.searchsorted(np.cumsum(counts), max_pool, side="right")))
