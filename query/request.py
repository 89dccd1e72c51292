"""The one OpenSearch request per query: a terms filter on semantic IDs, every video it passes scored exactly.

Query text and vectors travel only as values/params, never inside script source or field names.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from grdr_plugin.index import DEFAULT_FIELDS, HIT_ID_FIELD, HIT_TITLE_FIELD, VECTOR_FIELD, GrdrFields, Scorer


def query_value(query_vec: np.ndarray | Sequence[float]) -> list[float]:
    """The query vector as a script parameter (float32 values), refused when not finite."""
    vec = np.asarray(query_vec, dtype=np.float32).ravel()
    if not np.all(np.isfinite(vec)):
        raise ValueError("query_vec: contains NaN or Inf")
    return vec.tolist()


def knn_rerank_script(query_vec: np.ndarray | Sequence[float], field: str = VECTOR_FIELD) -> dict[str, Any]:
    """Exact cosine rerank of `field` with the k-NN plugin's score script (score = (1 + cosine) / 2 on 3.x)."""
    return {
        "lang": "knn",
        "source": "knn_score",
        "params": {"field": field, "query_value": query_value(query_vec), "space_type": "cosinesimil"},
    }


def knn_rescore(rerank_script: dict[str, Any], window: int) -> dict[str, Any]:
    """Rescore the first `window` hits by the knn_score script alone (the first phase's score is
    dropped: query_weight 0), so the returned scores are (1 + cos) / 2."""
    return {"window_size": window, "query": {
        "rescore_query": {"script_score": {"query": {"match_all": {}}, "script": rerank_script}},
        "query_weight": 0.0, "rescore_query_weight": 1.0}}


# What a hit reads of a video's source (query.results.Hit): its title, not the 2 KB vector.
HIT_SOURCE = {"includes": ["title"]}
# Fields a caller may ask hits to carry (`_source` includes): a result card's worth, and one request's
# `_source` filter stays small.
MAX_SOURCE_FIELDS = 100


def hit_source(fields: Sequence[str] = ()) -> dict[str, Any]:
    """The `_source` includes of a hit: its title, plus the fields the caller asked for (names or wildcards)."""
    if isinstance(fields, str):
        raise ValueError(f"source: a list of field names, e.g. [{fields!r}]")
    if len(fields) > MAX_SOURCE_FIELDS:
        raise ValueError(f"source: at most {MAX_SOURCE_FIELDS} fields")
    bad = next((f for f in fields if not isinstance(f, str) or not f.strip() or len(f) > 255), None)
    if bad is not None:
        raise ValueError(f"source: {bad!r} is not a field name")
    return {"includes": list(dict.fromkeys(["title", *fields]))} if fields else HIT_SOURCE


def _widen_clause(prefixes: Sequence[str], fields: GrdrFields) -> Optional[dict[str, Any]]:
    return {"terms": {fields.prefixes: [str(p) for p in prefixes]}} if prefixes else None


def recall_filter(semantic_ids: Sequence[str], prefixes: Sequence[str] = (),
                  fields: GrdrFields = DEFAULT_FIELDS) -> dict[str, Any]:
    """Videos holding any of the decoded IDs, or an ID under any of `prefixes` (the decoded prefixes of a search
    recalled at a shorter level, and widening ones)."""
    widen = _widen_clause(prefixes, fields)
    if not semantic_ids and not widen:  # nothing decoded (an empty index): nothing recalled
        return {"match_none": {}}
    clauses: list[dict[str, Any]] = [{"terms": {fields.ids: [str(s) for s in semantic_ids]}}] if semantic_ids else []
    if widen:
        clauses.append(widen)
    return clauses[0] if len(clauses) == 1 else {"bool": {"should": clauses, "minimum_should_match": 1}}


def pool_filter(semantic_ids: Sequence[str], prefixes: Sequence[str] = (),
                extra_filters: Optional[list[dict[str, Any]]] = None,
                fields: GrdrFields = DEFAULT_FIELDS) -> dict[str, Any]:
    """The pool: recalled (recall_filter) and passing the user's filters."""
    return {"bool": {"filter": [recall_filter(semantic_ids, prefixes, fields), *(extra_filters or [])]}}


def recalled_by_cosine_query(semantic_ids: Sequence[str], query_vec: np.ndarray | Sequence[float],
                             prefixes: Sequence[str] = (),
                             extra_filters: Optional[list[dict[str, Any]]] = None,
                             fields: GrdrFields = DEFAULT_FIELDS) -> dict[str, Any]:
    """Every recalled video scored by knn_score alone: the GRDR side of a neural-search `hybrid` query, and
    grdr_request's query on an index scored by the script."""
    return {"script_score": {"query": pool_filter(semantic_ids, prefixes, extra_filters, fields),
                             "script": knn_rerank_script(query_vec, fields.vec)}}


def recalled_by_exact_knn_query(semantic_ids: Sequence[str], query_vec: np.ndarray | Sequence[float], k: int,
                                prefixes: Sequence[str] = (),
                                extra_filters: Optional[list[dict[str, Any]]] = None,
                                fields: GrdrFields = DEFAULT_FIELDS) -> dict[str, Any]:
    """The top k recalled videos by a `knn` query filtered to the pool, on a field no graph is built for
    (grdr_plugin.index.FLAT_EXACT): each shard scores every filtered video exactly, with the same
    (1 + cos) / 2 score knn_score gives."""
    return {"knn": {fields.vec: {"vector": query_value(query_vec), "k": k,
                                 "filter": pool_filter(semantic_ids, prefixes, extra_filters, fields)}}}


# The script field a pool-fetch request (rerank_window on several shards) carries: each pool video's cosine.
POOL_COSINE = "grdr_cosine"


def pool_cosine_field(query_vec: np.ndarray | Sequence[float], field: str = VECTOR_FIELD) -> dict[str, Any]:
    """The k-NN plugin's painless `cosineSimilarity`, as a script field: run in the fetch phase, so only
    for the hits returned.  knn_score's cosine to float32 precision (the two sum in different orders)."""
    return {POOL_COSINE: {"script": {"lang": "painless", "source": "cosineSimilarity(params.query_value, "
                                     "doc[params.field])",
                                     "params": {"field": field, "query_value": query_value(query_vec)}}}}


def hit_payload(source: Optional[dict[str, Any]], fields: GrdrFields = DEFAULT_FIELDS) -> dict[str, Any]:
    """What each hit carries: the IDs it holds (doc values, to intersect with the decoded IDs client side) and
    its `_source` includes, or with `source` None its video ID and title from doc values alone (a catalog's hits:
    grdr_plugin.index.HIT_TITLE_FIELD), no stored field read."""
    if source is None:
        return {"_source": False, "stored_fields": "_none_",
                "docvalue_fields": [fields.ids, HIT_ID_FIELD, HIT_TITLE_FIELD]}
    return {"_source": source, "docvalue_fields": [fields.ids]}


def grdr_request(semantic_ids: Sequence[str], query_vec: np.ndarray | Sequence[float], *, k: int = 10,
                 prefixes: Sequence[str] = (), extra_filters: Optional[list[dict[str, Any]]] = None,
                 fields: GrdrFields = DEFAULT_FIELDS, source: Optional[dict[str, Any]] = HIT_SOURCE,
                 scorer: Scorer = "knn_score") -> dict[str, Any]:
    """One request: the pool = every video holding one of `semantic_ids` (the decoded IDs within the
    recall budget: grdr_plugin.pool) or, widening, an ID under one of `prefixes`, and passing the
    user's filters; each scored exactly (by the index's scorer: grdr_plugin.index.Scorer); the top k back
    with the IDs each hit holds.

    The pool is a filter, not a ranking, so the request is the same on one shard or many: each
    shard scores its part of the pool and the coordinating node merges the top k.

    fields: where the index keeps grdr's fields; source: the hits' `_source` includes (`hit_source`), or None
    for a catalog's hits read from doc values (`hit_payload`)."""
    if k < 1:
        raise ValueError("k: must be at least 1")
    return {
        "size": k,
        **hit_payload(source, fields),
        "query": (recalled_by_exact_knn_query(semantic_ids, query_vec, k, prefixes, extra_filters, fields)
                  if scorer == "knn_exact" else
                  recalled_by_cosine_query(semantic_ids, query_vec, prefixes, extra_filters, fields)),
    }


def rerank_window(body: dict[str, Any], query_vec: np.ndarray | Sequence[float], window: int, *, shards: int,
                  field: str = VECTOR_FIELD) -> dict[str, Any]:
    """`body` with its first `window` hits reranked by cosine (the first phase's score dropped): on one
    shard a rescore (knn_rescore); on several a pool fetch of those hits with their cosine, which the
    caller reranks (query.results.reranked_pool), since a rescore window is per shard."""
    if shards < 1:
        raise ValueError("shards: must be at least 1")
    if shards == 1:
        return {**body, "rescore": knn_rescore(knn_rerank_script(query_vec, field), window)}
    # No stored field is read for the pool's hits: loading `_id` (and `_source`) from stored fields is
    # what a fetch of thousands of hits spends its time on; `_id` comes from doc values instead
    # (fielddata, OpenSearch's default indices.id_field_data.enabled) and the caller reads the
    # sources of the top-k alone (query.results.sourceless_hits).
    return {**body, "size": window, "_source": False, "stored_fields": "_none_",
            "docvalue_fields": [*body.get("docvalue_fields", []), "_id"],
            "script_fields": pool_cosine_field(query_vec, field)}
