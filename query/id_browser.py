"""The videos that share a semantic ID (or an ID prefix): the recall of a search, made browsable.

A hit's `matched_id` is the decoded ID it was recalled by, or the shorter prefix a widened pool
reached it by; either lists here with one terms query on the field that holds it.
"""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, Field

from grdr_plugin.index import ID_FIELD, PREFIX_FIELD
from grdr_plugin.model.ids import format_id, parse_id

# What a listed video shows of its document (its vector stays out: 1-2 KB of floats per video).
_SOURCE = ["title", "tags", "duration_s", ID_FIELD]


class SharingVideo(BaseModel):
    video_id: str
    title: Optional[str] = None
    semantic_ids: list[str] = Field(description="all K semantic IDs of the video")
    tags: list[str] = Field(default_factory=list)
    duration_s: Optional[float] = None


class SharingVideos(BaseModel):
    semantic_id: str = Field(description="the ID, or an ID prefix ('12-40')")
    total: int = Field(description="videos that hold it (all of them, not only those listed)")
    videos: list[SharingVideo] = Field(description="the first `size` of them, by video_id")


def locate_id(semantic_id: str, levels: int, codebook_size: int) -> tuple[str, str]:
    """(the field holding `semantic_id`, its canonical form): full IDs are in grdr_ids, shorter
    prefixes in grdr_prefixes; '07-40' is '7-40'."""
    example = "-".join(str(min(c, codebook_size - 1)) for c in (12, 40, 7, 3, 1)[:levels])
    fix = f"1 to {levels} codes, each 0-{codebook_size - 1}, joined by '-' (e.g. {example!r})"
    try:
        codes = parse_id(semantic_id)
    except ValueError:
        raise ValueError(f"semantic_id: {semantic_id!r} is not a semantic ID; give {fix}") from None
    if len(codes) > levels or max(codes) >= codebook_size:
        raise ValueError(f"semantic_id: {semantic_id!r} is not an ID of this model; give {fix}")
    return (ID_FIELD if len(codes) == levels else PREFIX_FIELD), format_id(codes)


def sharing_request(field: str, semantic_id: str, size: int) -> dict[str, Any]:
    return {"size": size, "track_total_hits": True, "query": {"term": {field: semantic_id}},
            "sort": [{"video_id": "asc"}], "_source": _SOURCE}


def sharing_videos(semantic_id: str, response: dict[str, Any]) -> SharingVideos:
    videos = []
    for hit in response["hits"]["hits"]:
        source = hit.get("_source") or {}
        tags = source.get("tags") or []
        if isinstance(tags, str):  # a keyword field given one value in the catalog holds a string
            tags = [tags]
        videos.append(SharingVideo(video_id=hit["_id"], title=source.get("title"),
                                   semantic_ids=source.get(ID_FIELD) or [], tags=tags,
                                   duration_s=source.get("duration_s")))
    return SharingVideos(semantic_id=semantic_id, total=int(response["hits"]["total"]["value"]), videos=videos)


def videos_sharing(client, alias: str, semantic_id: str, *, levels: int, codebook_size: int,
                   size: int) -> SharingVideos:
    """One search on the alias: the videos holding `semantic_id`, the first `size` by video_id."""
    field, canonical = locate_id(semantic_id, levels, codebook_size)
    return sharing_videos(canonical, client.search(index=alias, body=sharing_request(field, canonical, size)))
