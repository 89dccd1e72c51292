"""Keyword (BM25 over the index's text fields) + semantic search, two ways:

* ``rrf``: reciprocal rank fusion of the GRDR ranking and the BM25 ranking.  Inside OpenSearch
  when every node has the neural-search plugin: one `hybrid` query whose request carries a
  temporary search pipeline with the score-ranker processor (RRF); otherwise client side
  (`fuse_rrf`).  The local cluster cannot install that plugin (it is not served from Maven
  Central), so the client side is what `make test` runs live; the plugin path is checked for its
  request shape only, and falls back to the client side on a refusal (query.executor).
* ``union``: BM25's top documents join the generatively recalled pool and everything is ranked
  by the same exact knn_score.  BM25 only adds candidates the decoder missed; it never pushes a
  document above one with a higher dense score, so a weak keyword ranking cannot drag the fused
  list below GRDR's (which is what equal-weight RRF does when BM25 is much weaker).

BM25 reads `text_fields`: the grdr catalog's title, description and tags by default; on a user's
index, the fields the user names, else every text field of its mapping (`default_text_fields`).
This module builds the keyword side's requests and fuses hit lists; it sends nothing.
"""
from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence, get_args

import numpy as np

from grdr_plugin.index import DEFAULT_FIELDS, GrdrFields
from query.request import HIT_SOURCE, recalled_by_cosine_query, rerank_window
from query.results import Hit

HybridMode = Literal["off", "rrf", "union"]
HYBRID_MODES: tuple[str, ...] = get_args(HybridMode)
KEYWORD_CANDIDATES = 50  # BM25 documents per query that join the pool (union) or the fused lists (rrf)
BM25_FIELDS = ["title^2", "description", "tags"]  # the grdr catalog's text, its title weighted as in the demo
# Fields BM25 may name: each is a clause of a multi_match per query; far beyond a document's text fields.
MAX_TEXT_FIELDS = 64


def default_text_fields(kinds: Mapping[str, str]) -> list[str]:
    """Every text field of a user's index (dotted paths, multi-fields included; query.filters.field_kinds_of):
    what BM25 reads unless told."""
    return sorted(name for name, kind in kinds.items() if kind == "text")


def check_text_fields(names: Sequence[str], kinds: Mapping[str, str]) -> list[str]:
    """The fields BM25 reads (`name` or `name^boost`), each a text or keyword field of the index."""
    if len(names) > MAX_TEXT_FIELDS:
        raise ValueError(f"text_fields: at most {MAX_TEXT_FIELDS} fields")
    for entry in names:
        name, _, boost = str(entry).partition("^")
        kind = kinds.get(name)
        if kind not in ("text", "keyword"):
            what = "not a field of the index" if kind is None else f"a {kind} field"
            raise ValueError(f"text_fields: {name!r} is {what}; BM25 reads text or keyword fields "
                             f"(text fields here: {', '.join(default_text_fields(kinds)) or 'none'})")
        try:
            weight = float(boost) if boost else 1.0
        except ValueError:
            weight = 0.0
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"text_fields: {entry!r}: a boost is a positive number (title^2)")
    return list(names)


def check_hybrid_mode(value: Any) -> HybridMode:
    """The mode itself; anything else (a bool included) is refused with the choices named."""
    if not isinstance(value, str) or value not in HYBRID_MODES:
        raise ValueError(f"hybrid: {value!r} is not one of {', '.join(HYBRID_MODES)}")
    return value  # type: ignore[return-value]  # one of HYBRID_MODES, checked above


def check_hybrid_weights(weights: Sequence[float]) -> tuple[float, float]:
    if len(weights) != 2 or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError("hybrid_weights: two non-negative weights (GRDR, BM25), not both 0")
    return float(weights[0]), float(weights[1])


# ---- requests ----

def bm25_query(text: str, filters: list[dict[str, Any]], text_fields: Sequence[str] = BM25_FIELDS) -> dict[str, Any]:
    return {"bool": {"must": [{"multi_match": {"query": text, "fields": list(text_fields)}}], "filter": filters}}


def bm25_request(text: str, *, size: int, filters: list[dict[str, Any]], text_fields: Sequence[str] = BM25_FIELDS,
                 source: dict[str, Any] = HIT_SOURCE) -> dict[str, Any]:
    return {"size": size, "_source": source, "query": bm25_query(text, filters, text_fields)}


def keyword_candidates_request(text: str, query_vec: np.ndarray, *, size: int, filters: list[dict[str, Any]],
                               text_fields: Sequence[str] = BM25_FIELDS, source: dict[str, Any] = HIT_SOURCE,
                               fields: GrdrFields = DEFAULT_FIELDS, shards: int = 1) -> dict[str, Any]:
    """BM25's top `size` documents, each reranked by the same cosine as the GRDR request (the
    keyword score is dropped), so both lists share one score scale; shards as in grdr_request."""
    body = bm25_request(text, size=size, filters=filters, text_fields=text_fields, source=source)
    return rerank_window(body, query_vec, size, shards=shards, field=fields.vec)


def rrf_pipeline(weights: Sequence[float], rank_constant: int) -> dict[str, Any]:
    """A temporary search pipeline (in the request body, so no pipeline-admin permission) with the
    score-ranker processor.  Its weights lie in [0, 1]: ours are scaled to sum to 1, which keeps
    the fused order of the client-side `rrf` with the same weights."""
    weights = check_hybrid_weights(weights)
    combination: dict[str, Any] = {"technique": "rrf", "rank_constant": rank_constant}
    if weights[0] != weights[1]:  # equal weights are the processor's default (and older versions take no weights)
        combination["parameters"] = {"weights": [w / sum(weights) for w in weights]}
    return {"phase_results_processors": [{"score-ranker-processor": {"combination": combination}}]}


def native_hybrid_request(semantic_ids: Sequence[str], query_vec: np.ndarray, text: str, *, size: int,
                          filters: list[dict[str, Any]], prefixes: Sequence[str],
                          pipeline: dict[str, Any], text_fields: Sequence[str] = BM25_FIELDS,
                          source: dict[str, Any] = HIT_SOURCE, fields: GrdrFields = DEFAULT_FIELDS) -> dict[str, Any]:
    """One `hybrid` query: the recalled videos by cosine and BM25, fused by the pipeline's RRF."""
    return {
        "size": size,
        "_source": source,
        "docvalue_fields": [fields.ids],
        "query": {"hybrid": {"queries": [recalled_by_cosine_query(semantic_ids, query_vec, prefixes, filters, fields),
                                         bm25_query(text, filters, text_fields)]}},
        "search_pipeline": pipeline,
    }


# ---- fusion (pure: hit lists in, hit list out) ----

def rrf(rankings: Sequence[Sequence[str]], weights: Sequence[float],
        rank_constant: int = 60) -> list[tuple[str, float]]:
    """Fused (id, score) best first: sum over lists of weight / (rank_constant + rank), rank from 1."""
    if len(rankings) != len(weights):
        raise ValueError("weights: one weight per ranking")
    scores: dict[str, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (rank_constant + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def fuse_union(grdr_hits: Sequence[Hit], keyword_hits: Sequence[Hit], k: int) -> list[Hit]:
    """One score scale (knn_score on both sides): merge, best first; a recalled hit keeps its matched ID."""
    merged = {h.video_id: h for h in keyword_hits}
    merged.update({h.video_id: h for h in grdr_hits})
    return sorted(merged.values(), key=lambda h: (-h.score, h.video_id))[:k]


def fuse_rrf(grdr_hits: Sequence[Hit], keyword_hits: Sequence[Hit], k: int, weights: Sequence[float],
             rank_constant: int) -> list[Hit]:
    """The two rankings fused by `rrf`; each hit's score becomes its fused score."""
    by_id = {h.video_id: h for h in [*keyword_hits, *grdr_hits]}
    fused = rrf([[h.video_id for h in grdr_hits], [h.video_id for h in keyword_hits]], weights, rank_constant)
    return [by_id[vid].model_copy(update={"score": score}) for vid, score in fused[:k]]


def fuse(mode: HybridMode, grdr_hits: Sequence[Hit], keyword_hits: Sequence[Hit], k: int, *,
         weights: Sequence[float], rank_constant: int) -> list[Hit]:
    """The top k of GRDR's hits and the keyword side's, fused as `mode` says ("off": GRDR's alone)."""
    if mode == "union":
        return fuse_union(grdr_hits, keyword_hits, k)
    if mode == "rrf":
        return fuse_rrf(grdr_hits, keyword_hits, k, weights, rank_constant)
    return list(grdr_hits[:k])
