"""Which decoded IDs make up the recalled pool: one rule for in-process eval and OpenSearch.

IDs are taken whole, best beam first, while the number of distinct videos they hold stays within
`max_pool` (at least one ID). The input is, per ID in beam order, how many videos it adds: those
no better-ranked ID already holds.  In-process evaluation counts them with its inverted index;
the query layer asks OpenSearch (query.request.first_rank_request, one aggregation per query).
Both paths therefore recall exactly the same videos.
"""
from __future__ import annotations

import numpy as np

# Defaults shared by `grdr eval`, the query layer and the benchmark. With the distinct-video cap,
# beam 300 fills the 300-video pool on msrvtt (mean 287; beam 400 adds nothing, beam 200 leaves it
# at 208 and candidate recall 2.8 points lower: docs/MODEL.md); the cap bounds rerank work per query.
DEFAULT_BEAM = 300
DEFAULT_MAX_POOL = 300


def ids_to_keep(counts_in_beam_order: np.ndarray, max_pool: int) -> int:
    """How many leading IDs to keep, given the videos each adds (or any upper bound of them)."""
    counts = np.asarray(counts_in_beam_order, dtype=np.int64)
    if counts.size == 0:
        return 0
    return max(1, int(np.searchsorted(np.cumsum(counts), max_pool, side="right")))
