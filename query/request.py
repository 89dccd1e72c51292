"""The one OpenSearch request per query: a terms filter on semantic IDs, reranked by exact knn_score.

Query text and vectors travel only as values/params, never inside script source or field names.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from grdr_plugin.index import ID_FIELD, PREFIX_FIELD, VECTOR_FIELD


def knn_rerank_script(query_vec: np.ndarray | Sequence[float]) -> dict[str, Any]:
    """Exact cosine rerank with the k-NN plugin's score script (score = (1 + cosine) / 2 on 3.x)."""
    vec = np.asarray(query_vec, dtype=np.float32).ravel()
    if not np.all(np.isfinite(vec)):
        raise ValueError("query_vec: contains NaN or Inf")
    return {
        "lang": "knn",
        "source": "knn_score",
        "params": {"field": VECTOR_FIELD, "query_value": vec.tolist(), "space_type": "cosinesimil"},
    }


def recall_clause(semantic_ids: Sequence[str], prefixes: Sequence[str] = ()) -> dict[str, Any]:
    """The recalled pool: videos holding any chosen ID, or (widening) any chosen shorter prefix."""
    ids = {"terms": {ID_FIELD: [str(s) for s in semantic_ids]}}
    if not prefixes:
        return ids
    return {"bool": {"should": [ids, {"terms": {PREFIX_FIELD: [str(p) for p in prefixes]}}], "minimum_should_match": 1}}


# Each recalled video's best (lowest) rank among the decoded IDs; constant source, IDs in params only.
FIRST_RANK_SCRIPT = (
    "int best = Integer.MAX_VALUE; "
    "for (def id : doc[params.field]) { def r = params.rank[id]; if (r != null && r < best) { best = r; } } "
    "return best;"
)


def first_rank_request(semantic_ids: Sequence[str], *, extra_filters: Optional[list[dict[str, Any]]] = None
                       ) -> dict[str, Any]:
    """How many videos each decoded ID adds to the pool (videos no better-ranked ID holds): a terms
    aggregation over each matching video's best rank, so the pool cap counts distinct videos."""
    ids = [str(s) for s in semantic_ids]
    script = {"lang": "painless", "source": FIRST_RANK_SCRIPT,
              "params": {"field": ID_FIELD, "rank": {s: i for i, s in enumerate(ids)}}}
    return {
        "size": 0,
        "query": {"bool": {"filter": [recall_clause(ids), *(extra_filters or [])]}},
        "aggs": {"first_rank": {"terms": {"script": script, "size": max(1, len(ids))}}},
    }


def first_rank_counts(response: dict[str, Any], n_ids: int) -> np.ndarray:
    """int64 [n_ids]: videos whose best decoded ID is each ID, from a first_rank_request response."""
    counts = np.zeros(n_ids, dtype=np.int64)
    for bucket in response["aggregations"]["first_rank"]["buckets"]:
        counts[int(bucket["key"])] = bucket["doc_count"]
    return counts


def grdr_request(semantic_ids: Sequence[str], query_vec: np.ndarray | Sequence[float], *, k: int = 10,
                 prefixes: Sequence[str] = (), extra_filters: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
    """Recall = `terms` on the ID field (plus user filters), rerank = knn_score, top-k back with matched IDs."""
    if k < 1:
        raise ValueError("k: must be at least 1")
    filters: list[dict[str, Any]] = [recall_clause(semantic_ids, prefixes), *(extra_filters or [])]
    return {
        "size": k,
        "_source": {"excludes": [VECTOR_FIELD]},
        "query": {"script_score": {"query": {"bool": {"filter": filters}}, "script": knn_rerank_script(query_vec)}},
        # The recalled ID that matched: the ID field's values, to intersect with the decoded IDs client side.
        "docvalue_fields": [ID_FIELD],
    }


def exact_dense_request(query_vec: np.ndarray | Sequence[float], *, k: int = 10) -> dict[str, Any]:
    """The full-corpus exact dense baseline: knn_score over every document."""
    return {
        "size": k,
        "_source": False,
        "query": {"script_score": {"query": {"match_all": {}}, "script": knn_rerank_script(query_vec)}},
    }
