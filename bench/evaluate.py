"""Test-query recall measured through OpenSearch (the path users run), beside per-stage timings.

For the same model and index, GRDR's R@1/5/10 here must equal the in-process `grdr eval`
numbers: same IDs, same vectors, same pool rule (grdr_plugin.pool).

With k = the recall budget (full_pool_k; `grdr eval --index`), a video the pool holds gets its exact rank. A video
outside the hits counts for no R@k, and for MdR/MnR ranks len(hits) + 1: a lower bound of the in-process
rank, which goes on to order every other video by dense score (a full scan OpenSearch is not asked for).
Searches do not widen (`widen=False`): a pool of fewer than k videos stays as it is, as in process, since a
widened request's top k could push the pool's own videos out.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from grdr_plugin.data import Dataset
from grdr_plugin.metrics import latency_summary, percent, rank_metrics, rank_of, recall_at
from query.hybrid import bm25_request
from query.searcher import MAX_K, Searcher

# evaluation modes besides "bm25" (keyword only) -> the Searcher's hybrid setting
HYBRID_OF_MODE = {"grdr": "off", "hybrid-union": "union", "hybrid-rrf": "rrf"}
MODES = ("grdr", *[m for m in HYBRID_OF_MODE if m != "grdr"], "bm25")


def full_pool_k(searcher: Searcher) -> int:
    """The k that returns a query's whole pool (so its video's rank is exact), within one request's size."""
    return min(searcher.recall_budget(), MAX_K)


def _metrics(ranks: np.ndarray, bounds: np.ndarray) -> dict[str, float]:
    """R@k counts only videos the hits hold (ranks, 0 = absent); MdR/MnR read the lower bounds."""
    return rank_metrics(bounds) | recall_at(ranks)


def evaluate_through_opensearch(ds: Dataset, searcher: Searcher, *, modes: tuple[str, ...] = ("grdr",),
                                k: int = 10, limit: Optional[int] = None,
                                progress: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
    """One query at a time, as users send them, so latencies are end to end per query.
    k: hits per query (full_pool_k for MdR/MnR over the whole pool); the keys are in-process eval's plus
    `stages_ms`."""
    rows = ds.test_queries()[:limit] if limit else ds.test_queries()
    truth = [ds.video_ids[ds.query_video[r]] for r in rows]
    level = searcher.recall_level()
    seen = ds.video_split[ds.query_video[rows]]
    splits = {"seen": seen, "unseen": ~seen}
    out: dict[str, Any] = {"dataset": ds.name, "queries": int(len(rows)), "videos": int(ds.n_videos)}
    by_split: dict[str, Any] = {name: {"queries": int(sel.sum())} for name, sel in splits.items()}
    for mode in modes:
        ranks = np.zeros(len(rows), dtype=np.int64)
        bounds = np.zeros(len(rows), dtype=np.int64)
        found = np.zeros(len(rows), dtype=bool)
        pools = np.zeros(len(rows), dtype=np.int64)
        stages: dict[str, list[float]] = {"encode": [], "decode": [], "opensearch": [], "total": []}
        for i, r in enumerate(rows):
            text = ds.query_text[r]
            if mode == "bm25":
                hits = searcher.client.search(index=searcher.index, body=bm25_request(text, size=k, filters=[]))
                ids = [h["_id"] for h in hits["hits"]["hits"]]
            else:
                res = searcher.search(text, k=k, hybrid=HYBRID_OF_MODE[mode], widen=False)
                ids = [h.video_id for h in res.hits]
                pools[i] = res.pool_size
                for stage, ms in res.timings_ms.items():
                    stages[stage].append(ms)
            ranks[i] = rank_of(ids, truth[i])
            found[i] = ranks[i] > 0
            bounds[i] = ranks[i] or len(ids) + 1  # absent: the lower bound of the module's note
            if progress:
                progress(1)
        out[mode] = _metrics(ranks, bounds)
        if mode != "bm25":
            pool_mean = round(float(pools.mean()), 1) if len(rows) else 0.0
            out[mode] |= {"candidate_recall": percent(found), "pool_mean": pool_mean,
                          "beam": searcher.beam_size(), "max_pool": searcher.recall_budget(), "recall_level": level,
                          "k": k}
        for name, sel in splits.items():
            by_split[name][mode] = _metrics(ranks[sel], bounds[sel]) | {"candidate_recall": percent(found[sel])}
        if stages["total"]:
            out[mode]["stages_ms"] = {s: latency_summary(v) for s, v in stages.items()}
    out["by_split"] = by_split
    if "grdr" in modes:  # in-process eval's shortcuts
        out["grdr_seen"], out["grdr_unseen"] = by_split["seen"]["grdr"], by_split["unseen"]["grdr"]
    return out
