"""Which recalled videos make up the pool: one rule for in-process eval and OpenSearch.

Every video holding a decoded ID is a candidate, at its best-ranked ID.  Candidates are ordered
by that rank (best beam first), then by the dense score, and the first `max_pool` are the pool,
which the dense reranker then orders.  OpenSearch applies the rule inside the one search request
(`query.request.grdr_request`: a first phase scores `pool_order_key` with native queries and
the k-NN scorer, a rescore of the first `max_pool` hits by knn_score ranks the pool); in-process
evaluation applies it with `pool_members`.  Both therefore recall the same videos.  Ordering the
last, partly fitting ID's videos by dense score (rather than dropping that ID) keeps the pool full
without knowing in advance how many distinct videos each ID holds, which is what lets one request
do it.
"""
from __future__ import annotations

import numpy as np

# Defaults shared by `grdr eval`, the query layer and the benchmark: beam 300 fills the
# 300-video pool on msrvtt (docs/MODEL.md); the cap bounds rerank work per query.
DEFAULT_BEAM = 300
DEFAULT_MAX_POOL = 300


def pool_order_key(best_rank: np.ndarray, n_ids: int, cosine: np.ndarray) -> np.ndarray:
    """float32, higher = earlier: `(n_ids - best_rank) + (1 + cosine) / 2`, as OpenSearch scores it
    (function_score sums the dis_max rank score and the knn_score script, both float32, in float32;
    so ties fall where OpenSearch's fall)."""
    rank_score = (n_ids - np.asarray(best_rank, dtype=np.int64)).astype(np.float32)
    return rank_score + (0.5 * (1.0 + np.asarray(cosine, dtype=np.float64))).astype(np.float32)


def pool_members(best_rank: np.ndarray, n_ids: int, cosine: np.ndarray, max_pool: int) -> np.ndarray:
    """Indices of the candidates in the pool, in pool order (best rank, then dense score)."""
    key = pool_order_key(best_rank, n_ids, cosine)
    return np.argsort(-key, kind="stable")[:max_pool]
