"""What a search returns (`Hit`, `SearchResult`) and how an OpenSearch response is read into it."""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import numpy as np
from pydantic import BaseModel, Field

from grdr_plugin.index import HIT_ID_FIELD, HIT_TITLE_FIELD, ID_FIELD
from grdr_plugin.model.ids import proper_prefixes
from query.request import POOL_COSINE


class Hit(BaseModel):
    video_id: str
    score: float
    matched_id: Optional[str] = None
    title: Optional[str] = None
    # Left out unless the search asked for fields: a hit then answers exactly the four keys it always did.
    source: Optional[dict[str, Any]] = Field(None, exclude_if=lambda v: v is None,
                                             description="the `_source` fields the search asked for")


class SearchResult(BaseModel):
    hits: list[Hit]
    timings_ms: dict[str, float]
    recalled_ids: int = 0  # decoded IDs (or prefixes) in the terms filter
    pool_size: int = 0  # videos the reranker saw (query.planner.scored_pool; native hybrid: matched by either side)


def recalled_total(response: dict[str, Any]) -> int:
    """Every video the request matched (its hits' total: the pool, counted exactly up to OpenSearch's
    default track_total_hits of 10,000)."""
    total = response["hits"]["total"]
    return int(total["value"] if isinstance(total, dict) else total)


def searched_shards_of(response: dict[str, Any]) -> int:
    """The shards the request reached (one copy of each primary)."""
    return int(response["_shards"]["total"])


def hit_of(raw: dict[str, Any], ids: Sequence[str], prefixes: Sequence[str], *, id_field: str = ID_FIELD,
           with_source: bool = False) -> Hit:
    """One response hit; matched_id is the first of the pool's IDs (in the order taken) the video holds, else
    the first widening prefix it was recalled by, else None (a keyword-only hit).  with_source: the hit carries the
    `_source` fields the request asked for."""
    return _hit(raw, _turns(ids), _turns(prefixes), id_field=id_field, with_source=with_source)


def hits_of(response: dict[str, Any], ids: Sequence[str] = (), prefixes: Sequence[str] = (), *,
            id_field: str = ID_FIELD, with_source: bool = False) -> list[Hit]:
    id_turns, prefix_turns = _turns(ids), _turns(prefixes)  # once per response: a pool takes hundreds of IDs
    return [_hit(h, id_turns, prefix_turns, id_field=id_field, with_source=with_source)
            for h in response["hits"]["hits"]]


def _turns(taken: Sequence[str]) -> dict[str, int]:
    """Each ID or prefix's place in the order taken (its first, if repeated)."""
    turns: dict[str, int] = {}
    for i, key in enumerate(taken):
        turns.setdefault(key, i)
    return turns


def _first_taken(keys: Iterable[str], turns: dict[str, int]) -> Optional[str]:
    return min((k for k in keys if k in turns), key=turns.__getitem__, default=None)


def _hit(raw: dict[str, Any], id_turns: dict[str, int], prefix_turns: dict[str, int], *, id_field: str,
         with_source: bool) -> Hit:
    values = raw.get("fields", {})
    own = values.get(id_field, [])
    matched = _first_taken(own, id_turns)
    if matched is None and prefix_turns:
        matched = _first_taken((p for o in own for p in proper_prefixes(o)), prefix_turns)
    source = raw.get("_source") or {}
    # a hit read from doc values (query.request.hit_payload) carries no `_id` and no `_source`
    video_id = raw["_id"] if "_id" in raw else values[HIT_ID_FIELD][0]
    title = source.get("title") if "_source" in raw else next(iter(values.get(HIT_TITLE_FIELD, [])), None)
    return Hit(video_id=video_id, score=float(raw["_score"]), matched_id=matched, title=title,
               source=source if with_source else None)


def reranked_pool(response: dict[str, Any], size: int) -> dict[str, Any]:
    """A pool fetch's response (query.request.rerank_window on several shards: union's keyword
    candidates in BM25 order, each with its cosine) as a rescored one reads: the hits ordered by cosine, scored
    (1 + cos) / 2 in float32 as knn_score scores them, the first `size` kept; ties keep pool order,
    as a rescore keeps them.  Any other response is returned as it is."""
    hits = response["hits"]["hits"]
    if not hits or POOL_COSINE not in hits[0].get("fields", {}):
        return response
    cosine = np.array([h["fields"][POOL_COSINE][0] for h in hits], dtype=np.float32)
    scores = (np.float32(1) + cosine) / np.float32(2)
    order = np.argsort(-scores, kind="stable")[:size]
    # each score as OpenSearch writes a float32 (its shortest decimal), so it reads back as a rescored hit's
    # does; the `_id` from the doc values the pool fetch asks for in place of the stored field
    reranked = [{**hits[i], "_id": hits[i]["fields"]["_id"][0], "_score": float(str(scores[i]))} for i in order]
    return {**response, "hits": {**response["hits"], "hits": reranked}}


DocKey = tuple[str, str]  # (_index, _id): a hit's document, also under an alias over several indices


def sourceless_hits(response: Optional[dict[str, Any]]) -> list[DocKey]:
    """The hits a pool fetch returned without `_source` (query.request.rerank_window), as documents to read."""
    return [(h["_index"], h["_id"]) for h in (response or {}).get("hits", {}).get("hits", []) if "_source" not in h]


def with_sources(response: Optional[dict[str, Any]], sources: dict[DocKey, dict[str, Any]]) -> Optional[dict[str, Any]]:
    """`response` with each sourceless hit given its document's source (empty when it is gone since)."""
    if not sourceless_hits(response):
        return response
    hits = [h if "_source" in h else {**h, "_source": sources.get((h["_index"], h["_id"]), {})}
            for h in response["hits"]["hits"]]
    return {**response, "hits": {**response["hits"], "hits": hits}}
