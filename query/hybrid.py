"""Keyword (BM25 over title/description/tags) + semantic search, two ways:

* ``rrf``: reciprocal rank fusion of the GRDR ranking and the BM25 ranking, client side (the
  neural-search plugin's `hybrid` query + score-ranker pipeline would do the same inside
  OpenSearch; that plugin is not served for 3.5.0 where we fetch plugins, so RRF runs here).
* ``union``: BM25's top documents join the generatively recalled pool and everything is ranked
  by the same exact knn_score.  BM25 only adds candidates the decoder missed; it never pushes a
  document above one with a higher dense score, so a weak keyword ranking cannot drag the fused
  list below GRDR's (which is what equal-weight RRF does when BM25 is much weaker).
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np

from grdr_plugin.index import VECTOR_FIELD
from query.request import knn_rerank_script, knn_rescore

HybridMode = Literal["off", "rrf", "union"]
HYBRID_MODES: tuple[str, ...] = ("off", "rrf", "union")
DEFAULT_HYBRID: HybridMode = "union"
KEYWORD_CANDIDATES = 50  # BM25 documents per query that join the pool (union) or the fused lists (rrf)


def hybrid_mode(value: HybridMode | bool | None) -> HybridMode:
    """True means the default mode; False/None mean off."""
    if value is True:
        return DEFAULT_HYBRID
    if value is False or value is None:
        return "off"
    if value not in HYBRID_MODES:
        raise ValueError(f"hybrid: {value!r} is not one of {', '.join(HYBRID_MODES)}")
    return value

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


def keyword_candidates_request(text: str, query_vec: np.ndarray, *, size: int,
                               filters: list[dict[str, Any]]) -> dict[str, Any]:
    """BM25's top `size` documents, each rescored by the same knn_score as the GRDR request (the
    keyword score is dropped: query_weight 0), so both lists share one score scale."""
    body = bm25_request(text, size=size, filters=filters)
    body["rescore"] = knn_rescore(knn_rerank_script(query_vec), size)
    return body
