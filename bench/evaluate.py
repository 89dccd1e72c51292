"""Test-query recall measured through OpenSearch (the path users run), beside per-stage timings.

For the same model and index, GRDR's R@1/5/10 here must equal the in-process `grdr eval`
numbers: same IDs, same vectors, same pool rule (grdr_plugin.pool).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from grdr_plugin.data import Dataset
from grdr_plugin.metrics import latency_summary, rank_of, recall_at
from query.hybrid import bm25_request
from query.searcher import Searcher

# evaluation modes besides "bm25" (keyword only) -> the Searcher's hybrid setting
HYBRID_OF_MODE = {"grdr": "off", "hybrid-union": "union", "hybrid-rrf": "rrf"}


def evaluate_through_opensearch(ds: Dataset, searcher: Searcher, *, modes: tuple[str, ...] = ("grdr",),
                                k: int = 10, limit: Optional[int] = None,
                                progress: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
    """One query at a time, as users send them, so latencies are end to end per query."""
    rows = ds.test_queries()[:limit] if limit else ds.test_queries()
    truth = [ds.video_ids[ds.query_video[r]] for r in rows]
    out: dict[str, Any] = {"dataset": ds.name, "queries": int(len(rows)), "videos": int(ds.n_videos)}
    for mode in modes:
        ranks = np.zeros(len(rows), dtype=np.int64)
        stages: dict[str, list[float]] = {"encode": [], "decode": [], "opensearch": [], "total": []}
        for i, r in enumerate(rows):
            text = ds.query_text[r]
            if mode == "bm25":
                hits = searcher.client.search(index=searcher.index, body=bm25_request(text, size=k, filters=[]))
                ids = [h["_id"] for h in hits["hits"]["hits"]]
            else:
                res = searcher.search(text, k=k, hybrid=HYBRID_OF_MODE[mode])
                ids = [h.video_id for h in res.hits]
                for stage, ms in res.timings_ms.items():
                    stages[stage].append(ms)
            ranks[i] = rank_of(ids, truth[i])
            if progress:
                progress(1)
        out[mode] = recall_at(ranks)
        if stages["total"]:
            out[mode]["stages_ms"] = {s: latency_summary(v) for s, v in stages.items()}
    return out
