"""Keyword (BM25) + semantic fusion by reciprocal rank fusion, client side.

Used when the cluster has no neural-search plugin (whose `hybrid` query + score-ranker
pipeline would do the same inside OpenSearch).
"""
from __future__ import annotations

from typing import Any, Sequence

from grdr_plugin.index import VECTOR_FIELD

BM25_FIELDS = ["title^2", "description", "tags"]


def bm25_request(text: str, *, size: int, filters: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "size": size,
        "_source": {"excludes": [VECTOR_FIELD]},
        "query": {"bool": {"must": [{"multi_match": {"query": text, "fields": BM25_FIELDS}}], "filter": filters}},
    }


def rrf(rankings: Sequence[Sequence[str]], weights: Sequence[float], rank_constant: int = 60) -> list[tuple[str, float]]:
    """Fused (id, score) best first: sum over lists of weight / (rank_constant + rank), rank from 1."""
    if len(rankings) != len(weights):
        raise ValueError("weights: one weight per ranking")
    scores: dict[str, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (rank_constant + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
