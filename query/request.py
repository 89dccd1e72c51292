"""The one OpenSearch request per query: a terms filter on semantic IDs, reranked by exact knn_score.

Query text and vectors travel only as values/params, never inside script source or field names.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from grdr_plugin.index import DEFAULT_FIELDS, VECTOR_FIELD, GrdrFields
from grdr_plugin.pool import DEFAULT_MAX_POOL


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

# OpenSearch's default index.max_rescore_window and index.max_result_window: the pool is a rescore
# window on one shard and a page of hits on several, so it can exceed neither.
MAX_RESCORE_WINDOW = 10_000


def check_max_pool(max_pool: int) -> int:
    if not 1 <= max_pool <= MAX_RESCORE_WINDOW:
        raise ValueError(f"max_pool: must be between 1 and {MAX_RESCORE_WINDOW} "
                         "(OpenSearch's index.max_rescore_window and index.max_result_window)")
    return max_pool


# Each recalled video's best rank as n - rank (0 when only a widening prefix matched), read from
# its ID doc values.  Constant source; the IDs travel in params only.
RANK_SCRIPT = ("int best = params.n; "
               "for (def id : doc[params.field]) { def r = params.rank[id]; if (r != null && r < best) { best = r; } } "
               "return params.n - best;")
# Mean videos per decoded ID at which one query clause per ID (boosted by rank) beats the rank
# script: a clause costs about as much as scripting a few documents (development timings: 300 IDs
# of ~1.4 videos at 1k videos favour the script, ~20 IDs of ~50 videos at 100k the clauses).
CLAUSE_MIN_VIDEOS_PER_ID = 4.0


def _widen_clause(prefixes: Sequence[str], fields: GrdrFields) -> Optional[dict[str, Any]]:
    return {"terms": {fields.prefixes: [str(p) for p in prefixes]}} if prefixes else None


def recall_filter(semantic_ids: Sequence[str], prefixes: Sequence[str] = (),
                  fields: GrdrFields = DEFAULT_FIELDS) -> dict[str, Any]:
    """Videos holding any of the decoded IDs, or (widening) an ID under any of `prefixes`."""
    widen = _widen_clause(prefixes, fields)
    if not semantic_ids and not widen:  # nothing decoded (an empty index): nothing recalled
        return {"match_none": {}}
    clauses: list[dict[str, Any]] = [{"terms": {fields.ids: [str(s) for s in semantic_ids]}}] if semantic_ids else []
    if widen:
        clauses.append(widen)
    return clauses[0] if len(clauses) == 1 else {"bool": {"should": clauses, "minimum_should_match": 1}}


def recalled_by_cosine_query(semantic_ids: Sequence[str], query_vec: np.ndarray | Sequence[float],
                             prefixes: Sequence[str] = (),
                             extra_filters: Optional[list[dict[str, Any]]] = None,
                             fields: GrdrFields = DEFAULT_FIELDS) -> dict[str, Any]:
    """Every recalled video scored by knn_score alone, no pool order: grdr_request's form when the
    whole recall fits the pool, and the GRDR side of a `hybrid` query (neural-search applies a
    request's rescore to every sub-query, BM25's too, so the pool-order-then-rescore form cannot be one)."""
    recalled = {"bool": {"filter": [recall_filter(semantic_ids, prefixes, fields), *(extra_filters or [])]}}
    return {"script_score": {"query": recalled, "script": knn_rerank_script(query_vec, fields.vec)}}


def pool_order_query(semantic_ids: Sequence[str], rerank_script: dict[str, Any], prefixes: Sequence[str] = (),
                     extra_filters: Optional[list[dict[str, Any]]] = None,
                     videos_per_id: float = float("inf"), fields: GrdrFields = DEFAULT_FIELDS) -> dict[str, Any]:
    """The recalled videos scored in pool order (grdr_plugin.pool): a function_score whose score is
    each video's best rank as `n - rank` plus the knn_score script, (1 + cos) / 2.  The rank comes
    from one of two equivalent forms, whichever costs less for the IDs' mean `videos_per_id`
    (the trie's counts): a dis_max over one constant-score term query per ID, boost n - rank
    (few, crowded IDs: no per-document script), or one terms filter plus RANK_SCRIPT (many
    sparse IDs: no per-ID clause)."""
    n = len(semantic_ids)
    ids = [str(s) for s in semantic_ids]
    widen = _widen_clause(prefixes, fields)
    if not ids and not widen:  # nothing decoded (an empty index): nothing recalled
        return {"match_none": {}}
    knn = {"script_score": {"script": rerank_script}}
    if videos_per_id >= CLAUSE_MIN_VIDEOS_PER_ID:
        ranks: list[dict[str, Any]] = [{"constant_score": {"filter": {"term": {fields.ids: s}}, "boost": n - i}}
                                       for i, s in enumerate(ids)]
        if widen:
            ranks.append({"constant_score": {"filter": widen, "boost": 0}})
        recalled: dict[str, Any] = {"dis_max": {"queries": ranks}}
        if extra_filters:
            recalled = {"bool": {"must": [recalled], "filter": extra_filters}}
        return {"function_score": {"query": recalled, "functions": [knn], "boost_mode": "sum"}}
    recall = recall_filter(ids, prefixes, fields)
    rank = {"lang": "painless", "source": RANK_SCRIPT,
            "params": {"field": fields.ids, "n": n, "rank": {s: i for i, s in enumerate(ids)}}}
    return {"function_score": {"query": {"bool": {"filter": [recall, *(extra_filters or [])]}},
                               "functions": [{"script_score": {"script": rank}}, knn],
                               "score_mode": "sum", "boost_mode": "replace"}}


# The script field a pool-fetch request (grdr_request on several shards) carries: each pool video's cosine.
POOL_COSINE = "grdr_cosine"


def pool_cosine_field(query_vec: np.ndarray | Sequence[float], field: str = VECTOR_FIELD) -> dict[str, Any]:
    """The k-NN plugin's painless `cosineSimilarity`, as a script field: run in the fetch phase, so only
    for the hits returned.  knn_score's cosine to float32 precision (the two sum in different orders)."""
    return {POOL_COSINE: {"script": {"lang": "painless", "source": "cosineSimilarity(params.query_value, "
                                     "doc[params.field])",
                                     "params": {"field": field, "query_value": query_value(query_vec)}}}}


def grdr_request(semantic_ids: Sequence[str], query_vec: np.ndarray | Sequence[float], *, k: int = 10,
                 max_pool: int = DEFAULT_MAX_POOL, prefixes: Sequence[str] = (),
                 extra_filters: Optional[list[dict[str, Any]]] = None,
                 videos_per_id: float = float("inf"), recalled_videos: Optional[int] = None,
                 fields: GrdrFields = DEFAULT_FIELDS, source: dict[str, Any] = HIT_SOURCE,
                 shards: int = 1) -> dict[str, Any]:
    """One request: recall = the decoded IDs (plus user filters); the pool = the first `max_pool`
    recalled videos in pool order (pool_order_query); rerank = exactly those by cosine.  Top-k
    back with the IDs each hit holds.

    recalled_videos: the trie's count of videos behind the IDs (with multiplicity, so at least
    the videos recalled).  When it fits the pool, every recalled video is in the pool and pool
    order is moot: one knn_score query over the recall ranks them (`recall_fits`), with no
    first-phase rank, no second knn_score pass.  A count gone stale (ingest since the trie was
    built) shows in the response's total exceeding the pool; the caller then asks in pool order.

    shards: the index's primary shards.  On one shard the pool is reranked by a rescore of the
    first `max_pool` hits.  A rescore window is per shard (S shards would rerank S x the pool, and
    the top-k could come from outside the global pool), so on several the request is a pool
    fetch: the first `max_pool` hits themselves, merged into the global pool order by the
    coordinating node, each with its cosine as a script field (POOL_COSINE) and no `_source`; the
    caller reranks them (query.results.reranked_pool) and reads the top-k's sources in one `mget`
    for the whole batch.

    fields: where the index keeps grdr's fields; source: the hits' `_source` includes (`hit_source`)."""
    if k < 1:
        raise ValueError("k: must be at least 1")
    check_max_pool(max_pool)
    body: dict[str, Any] = {
        "size": k,
        "_source": source,
        # The recalled ID that matched: the ID field's values, to intersect with the decoded IDs client side.
        "docvalue_fields": [fields.ids],
    }
    if recall_fits(recalled_videos, max_pool, k):
        body["query"] = recalled_by_cosine_query(semantic_ids, query_vec, prefixes, extra_filters, fields)
        return body
    rerank = knn_rerank_script(query_vec, fields.vec)
    body["query"] = pool_order_query(semantic_ids, rerank, prefixes, extra_filters, videos_per_id, fields)
    # k > max_pool widens the pool, so every returned hit is reranked
    return rerank_window(body, query_vec, max(max_pool, k), shards=shards, field=fields.vec)


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


def recall_fits(recalled_videos: Optional[int], max_pool: int, k: int) -> bool:
    """Whether grdr_request ranks the whole recall by knn_score alone (see there)."""
    return recalled_videos is not None and recalled_videos <= max(max_pool, k)
