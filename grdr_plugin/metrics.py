"""Retrieval and speed metrics, one definition each: every command that reports them computes them here.

Pure: ranks, flags and milliseconds in, rounded numbers out. Recalls and shares are in percent.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The cutoffs of the fixed metric keys R@1, R@5, R@10 (the paper's and `grdr eval --json`'s).
RECALL_AT = (1, 5, 10)
# Percentiles reported per stage of a query (keys p50_ms, p99_ms).
STAGE_PERCENTILES = (50, 99)
# Percentiles reported for end-to-end latency, where the p95 tail is a target of its own.
TAIL_PERCENTILES = (50, 95, 99)


def percent(flags: Sequence[bool] | np.ndarray) -> float:
    """Share of true flags in percent (2 decimals); 0.0 for no flags."""
    a = np.asarray(flags, dtype=bool)
    return round(100 * float(a.mean()), 2) if a.size else 0.0


def share_of(value: float, reference: float) -> float:
    """`value` as a percentage of `reference` (e.g. a system's R@10 of exact dense's); 0 for a zero reference."""
    return 100 * value / reference if reference else 0.0


def _found_within(ranks: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    """Per query, whether its ground truth ranks within k (ranks 1-based, 0 = not retrieved)."""
    r = np.asarray(ranks, dtype=np.int64)
    return (r > 0) & (r <= k)


def recall_at(ranks: Sequence[int] | np.ndarray, cutoffs: Sequence[int] = RECALL_AT) -> dict[str, float]:
    """{"R@k": percent of queries whose ground truth ranks within k}; ranks 1-based, 0 = not retrieved."""
    return {f"R@{k}": percent(_found_within(ranks, k)) for k in cutoffs}


def paired_share_se(ranks: Sequence[int] | np.ndarray, reference_ranks: Sequence[int] | np.ndarray,
                    cutoffs: Sequence[int] = RECALL_AT) -> dict[str, float]:
    """{"R@k": the standard error, in percentage points, of R@k as a share of the reference's R@k}, both ranked on
    the same queries (paired: what share_of(R@k, reference R@k) estimates).  The ratio estimator's:
    sqrt(sum((g - s * d)^2)) / sum(d), with g and d each query's hit within k and s = sum(g) / sum(d); a query
    both find, or both miss, adds (almost) nothing.  0 where the reference finds none."""
    out = {}
    for k in cutoffs:
        g = _found_within(ranks, k).astype(np.float64)
        d = _found_within(reference_ranks, k).astype(np.float64)
        hits = float(d.sum())
        se = float(np.sqrt(((g - g.sum() / hits * d) ** 2).sum())) / hits if hits else 0.0
        out[f"R@{k}"] = round(100 * se, 2)
    return out


def rank_metrics(ranks: Sequence[int] | np.ndarray) -> dict[str, float]:
    """R@1/5/10, median rank (MdR) and mean rank (MnR) over full rankings (every rank 1-based, none missing)."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0:
        return {**recall_at(r), "MdR": 0.0, "MnR": 0.0}
    return {**recall_at(r), "MdR": float(np.median(r)), "MnR": round(float(r.mean()), 2)}


def rank_of(hit_ids: Sequence[str], truth: str) -> int:
    """1-based position of truth in the hits, 0 when absent."""
    return list(hit_ids).index(truth) + 1 if truth in hit_ids else 0


def overlap_at(results: Sequence[Sequence[str]], reference: Sequence[Sequence[str]], k: int = 10) -> float:
    """Mean share (percent) of the reference's top k that each result's top k holds (e.g. GRDR vs exact dense)."""
    if not results:
        return 0.0
    shares = [len(set(a[:k]) & set(b[:k])) / k for a, b in zip(results, reference)]
    return round(100 * float(np.mean(shares)), 2)


def latency_summary(ms: Sequence[float] | np.ndarray, percentiles: Sequence[int] = STAGE_PERCENTILES, *,
                    with_max: bool = False) -> dict[str, float]:
    """{"p<q>_ms" per percentile, "mean_ms"[, "max_ms"]} rounded to 0.01 ms; {} for no samples."""
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return {}
    out = {f"p{q}_ms": round(float(np.percentile(a, q)), 2) for q in percentiles}
    out["mean_ms"] = round(float(a.mean()), 2)
    if with_max:
        out["max_ms"] = round(float(a.max()), 2)
    return out


def per_second(count: float, seconds: float) -> float:
    """A throughput (videos/s, queries/s) rounded to 0.1."""
    return round(count / seconds, 1)
