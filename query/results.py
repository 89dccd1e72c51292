"""What a search returns (`Hit`, `SearchResult`) and how an OpenSearch response is read into it."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from pydantic import BaseModel, Field

from grdr_plugin.index import ID_FIELD
from grdr_plugin.model.ids import children_pattern


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
    recalled_ids: int = 0  # decoded IDs in the terms filter
    pool_size: int = 0  # videos the reranker saw (recalled, up to the cap; native hybrid: matched by either side)


def recalled_total(response: dict[str, Any]) -> int:
    """Every video the request matched (its hits' total)."""
    total = response["hits"]["total"]
    return int(total["value"] if isinstance(total, dict) else total)


def pool_size(response: dict[str, Any], reranked: int) -> int:
    """Videos in the recalled pool: every recalled video, up to the rescore window."""
    return min(reranked, recalled_total(response))


def hit_of(raw: dict[str, Any], ids: Sequence[str], prefixes: Sequence[str], *, id_field: str = ID_FIELD,
           with_source: bool = False) -> Hit:
    """One response hit; matched_id is the best decoded ID the video holds, else the widening
    prefix it was recalled by, else None (a keyword-only hit).  with_source: the hit carries the
    `_source` fields the request asked for."""
    own = raw.get("fields", {}).get(id_field, [])
    matched = next((s for s in ids if s in own), None)
    if matched is None:
        matched = next((p for p in prefixes if any(o.startswith(children_pattern(p)) for o in own)), None)
    source = raw.get("_source") or {}
    return Hit(video_id=raw["_id"], score=float(raw["_score"]), matched_id=matched, title=source.get("title"),
               source=source if with_source else None)


def hits_of(response: dict[str, Any], ids: Sequence[str] = (), prefixes: Sequence[str] = (), *,
            id_field: str = ID_FIELD, with_source: bool = False) -> list[Hit]:
    return [hit_of(h, ids, prefixes, id_field=id_field, with_source=with_source) for h in response["hits"]["hits"]]
