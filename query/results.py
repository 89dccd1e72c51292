"""What a search returns (`Hit`, `SearchResult`) and how an OpenSearch response is read into it."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from pydantic import BaseModel

from grdr_plugin.index import ID_FIELD
from grdr_plugin.model.ids import children_pattern


class Hit(BaseModel):
    video_id: str
    score: float
    matched_id: Optional[str] = None
    title: Optional[str] = None


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


def hit_of(raw: dict[str, Any], ids: Sequence[str], prefixes: Sequence[str]) -> Hit:
    """One response hit; matched_id is the best decoded ID the video holds, else the widening
    prefix it was recalled by, else None (a keyword-only hit)."""
    own = raw.get("fields", {}).get(ID_FIELD, [])
    matched = next((s for s in ids if s in own), None)
    if matched is None:
        matched = next((p for p in prefixes if any(o.startswith(children_pattern(p)) for o in own)), None)
    source = raw.get("_source") or {}
    return Hit(video_id=raw["_id"], score=float(raw["_score"]), matched_id=matched, title=source.get("title"))


def hits_of(response: dict[str, Any], ids: Sequence[str] = (), prefixes: Sequence[str] = ()) -> list[Hit]:
    return [hit_of(h, ids, prefixes) for h in response["hits"]["hits"]]
