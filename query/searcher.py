"""`Searcher`: text -> encode (onnxruntime) -> constrained decode (numpy) -> one OpenSearch request.

    from query.searcher import Searcher
    hits = Searcher("models/msrvtt", index="msrvtt").search("a man is cooking", k=10).hits
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from opensearchpy.exceptions import RequestError
from pydantic import BaseModel

from grdr_plugin.index import ID_FIELD, alias_target, check_fingerprint
from grdr_plugin.model.ids import children_pattern, format_id, id_prefix
from grdr_plugin.pool import DEFAULT_BEAM, DEFAULT_MAX_POOL
from grdr_plugin.runtime import ModelRuntime, Queries
from grdr_plugin.settings import Settings, get_settings
from query.filters import SearchFilters, filter_clauses, keyword_fields_of
from query.hybrid import (
    KEYWORD_CANDIDATES,
    HybridMode,
    bm25_request,
    hybrid_mode,
    keyword_candidates_request,
    native_hybrid_request,
    neural_search_present,
    rrf,
    rrf_pipeline,
)
from query.request import check_max_pool, grdr_request, recall_fits
from query.trie_store import TrieStore

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 2000
MAX_K = 1000
MAX_BEAM = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


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


def clean_query(text: str) -> str:
    """Control characters become spaces; empty or over-long text is refused with the field named."""
    if not isinstance(text, str):
        raise ValueError("text: must be a string")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"text: {len(text)} characters; at most {MAX_QUERY_CHARS}")
    try:
        text.encode()
    except UnicodeEncodeError as exc:  # the tokenizer would fail with a TypeError
        raise ValueError(f"text: not valid Unicode (unpaired surrogate at character {exc.start})") from None
    text = " ".join(_CONTROL.sub(" ", text).split())
    if not text:
        raise ValueError("text: empty (or only whitespace/control characters)")
    return text


class Searcher:
    def __init__(self, model_dir: Path | str, index: str, *, settings: Optional[Settings] = None, client=None,
                 beam_size: int = DEFAULT_BEAM, max_pool: int = DEFAULT_MAX_POOL, threads: int = 1, poll_interval_s: float = 0.5,
                 rrf_rank_constant: int = 60, hybrid_weights: tuple[float, float] = (1.0, 1.0),
                 native_hybrid: Optional[bool] = None):
        """native_hybrid: fuse hybrid="rrf" inside OpenSearch (neural-search's `hybrid` query and
        score-ranker pipeline); None = when every node has that plugin."""
        if not 1 <= beam_size <= MAX_BEAM:
            raise ValueError(f"beam_size: must be between 1 and {MAX_BEAM}")
        check_max_pool(max_pool)
        self.settings = settings or get_settings()
        self.client = client or self.settings.opensearch_client()
        self.index = index
        self.runtime = ModelRuntime(model_dir, threads=threads)
        self.beam_size, self.max_pool = beam_size, max_pool
        self.rrf_rank_constant, self.hybrid_weights = rrf_rank_constant, hybrid_weights
        self.rrf_pipeline = rrf_pipeline(hybrid_weights, rrf_rank_constant)
        target = alias_target(self.client, index)
        if target is None:
            raise LookupError(f"--index: no alias {index!r}; create it with `grdr index create` or `grdr ingest`")
        check_fingerprint(self.client, target, self.runtime.fingerprint, alias=index, model_dir=model_dir)
        mapping = self.client.indices.get_mapping(index=target)
        self.keyword_fields = keyword_fields_of(mapping[target]["mappings"].get("properties", {}))
        cfg = self.runtime.cfg
        self.store = TrieStore(self.client, index, levels=cfg.levels, codebook_size=cfg.codebook_size,
                               poll_interval_s=poll_interval_s).build()
        self.native_hybrid = self._detect_neural_search() if native_hybrid is None else native_hybrid

    def _detect_neural_search(self) -> bool:
        try:
            return neural_search_present(self.client)
        except Exception as exc:  # e.g. a role without cluster:monitor/nodes/info: fuse client side
            log.info("cannot list the cluster's plugins (%s); hybrid rrf fuses client side", exc)
            return False

    # ---- pure-ish planning ----

    def decode(self, queries: Queries, beam_size: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        masks = self.store.masks if self.runtime.search_session is not None else None
        return self.runtime.beam_search(queries, self.store.tables, beam_size or self.beam_size, masks=masks)

    def window(self, beams: list[str], max_pool: int, filtered: bool) -> tuple[list[str], np.ndarray]:
        """The decoded IDs the request recalls, and the trie's video count of each (what
        query.request plans the request by).  Unfiltered, only the leading IDs that can
        reach the pool: a video sits under at most K of its IDs, so once the trie's per-ID totals
        pass K x cap the IDs so far hold more than cap distinct videos, and no later ID's video
        comes before them in pool order.  (Totals gone stale by ingest, which adds videos, only
        widen the window.)  With filters, totals say nothing about what passes them: every ID."""
        counts = np.array([self.store.video_count(b) for b in beams], dtype=np.int64)
        if not filtered:
            keep = int(np.searchsorted(np.cumsum(counts), self.runtime.cfg.views * max_pool, side="right")) + 1
            beams, counts = beams[:keep], counts[:keep]
        return beams, counts

    def widen(self, beams: list[str], k: int, have: int) -> list[str]:
        """Shorter prefixes of the best beams, longest first, until the trie says `have` plus their
        videos reach k: the recalled pool holds fewer than k videos."""
        prefixes: list[str] = []
        for cut in range(self.runtime.cfg.levels - 1, 0, -1):
            for b in beams:
                if have >= k:
                    return prefixes
                p = id_prefix(b, cut)
                if p not in prefixes and not any(p.startswith(children_pattern(q)) for q in prefixes):
                    prefixes.append(p)
                    have += self.store.prefix_count(p)
        return prefixes

    # ---- searching ----

    def search(self, text: str, k: int = 10, filters: Optional[SearchFilters | dict] = None,
               hybrid: HybridMode | bool = "off", beam_size: Optional[int] = None,
               max_pool: Optional[int] = None) -> SearchResult:
        return self.search_many([text], k=k, filters=filters, hybrid=hybrid, beam_size=beam_size, max_pool=max_pool)[0]

    def search_many(self, texts: Sequence[str], k: int = 10, filters: Optional[SearchFilters | dict] = None,
                    hybrid: HybridMode | bool = "off", beam_size: Optional[int] = None,
                    max_pool: Optional[int] = None) -> list[SearchResult]:
        """Batched: one encode and one decode for all texts, one _msearch with every query's one
        search request (and, only for queries whose pool holds fewer than k videos, a second one
        widened by shorter prefixes).

        hybrid: "off", "rrf" or "union" (query.hybrid; True = the default, union).  beam_size and
        max_pool override the Searcher's for this call.  With native_hybrid, "rrf" is one `hybrid`
        query per query instead: no pool cap on its GRDR side (query.request.recalled_by_cosine_query),
        widening planned up front from the trie's counts, and the client-side requests for the batch
        if OpenSearch refuses it.
        """
        hybrid = hybrid_mode(hybrid)
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k: must be between 1 and {MAX_K}")
        if max_pool is not None:
            check_max_pool(max_pool)
        if beam_size is not None and not 1 <= beam_size <= MAX_BEAM:
            raise ValueError(f"beam_size: must be between 1 and {MAX_BEAM}")
        if isinstance(filters, dict):
            filters = SearchFilters(**filters)
        texts = [clean_query(t) for t in texts]
        clauses = filter_clauses(filters, self.keyword_fields)
        started = time.perf_counter()
        self.store.refresh()  # new IDs from ingest; a real-time GET at most every poll interval
        t0 = time.perf_counter()
        queries = self.runtime.encode_queries(texts)
        t1 = time.perf_counter()
        codes, scores = self.decode(queries, beam_size)
        t2 = time.perf_counter()
        cap = max_pool or self.max_pool
        beams = [[format_id(c) for c, s in zip(codes[i], scores[i]) if np.isfinite(s)] for i in range(len(texts))]
        planned = [self.window(b, cap, bool(clauses)) for b in beams]  # (recalled IDs, their video counts) per query
        size = max(k, KEYWORD_CANDIDATES) if hybrid == "rrf" else k
        reranked = max(cap, size)  # the request's rescore window: k > cap widens the pool to k

        def grdr_lines(i: int, prefixes: list[str], pool_order: bool = False) -> list[dict[str, Any]]:
            ids, counts = planned[i]
            return [{"index": self.index}, grdr_request(
                ids, queries.query_vec[i], k=size, max_pool=cap, prefixes=prefixes, extra_filters=clauses,
                videos_per_id=float(counts.mean()) if counts.size else 0.0,
                recalled_videos=None if pool_order else int(counts.sum()))]

        def keyword_lines(i: int) -> list[dict[str, Any]]:
            if hybrid == "rrf":
                return [{"index": self.index}, bm25_request(texts[i], size=size, filters=clauses)]
            if hybrid == "union":
                return [{"index": self.index}, keyword_candidates_request(texts[i], queries.query_vec[i],
                                                                          size=max(k, KEYWORD_CANDIDATES), filters=clauses)]
            return []

        if hybrid == "rrf" and self.native_hybrid:
            native = self._native_rrf(texts, queries.query_vec, beams, planned, k, size, clauses)
            if native is not None:
                t3 = time.perf_counter()
                return _with_timings(native, encode=t1 - t0, decode=t2 - t1, opensearch=t3 - t2, total=t3 - started)
            # refused: the same encoded and decoded batch is fused client side below

        per = 1 if hybrid == "off" else 2
        prefixes: list[list[str]] = [[] for _ in texts]
        responses = self._msearch([line for i in range(len(texts)) for line in grdr_lines(i, []) + keyword_lines(i)])
        # Ask again, the GRDR request of those queries only, in pool order: a pool smaller than k
        # (few or filtered videos under the decoded IDs) widened by shorter prefixes, or a recall
        # that stale trie counts said would fit the pool and did not.
        again = []
        for i, (_, counts) in enumerate(planned):
            have = self._pool_size(responses[i * per], reranked)
            if have < k and beams[i]:
                prefixes[i] = self.widen(beams[i], k, have)
            overflow = recall_fits(int(counts.sum()), cap, size) and self._recalled(responses[i * per]) > reranked
            if prefixes[i] or overflow:
                again.append(i)
        if again:
            for i, resp in zip(again, self._msearch([line for i in again for line in grdr_lines(i, prefixes[i], True)])):
                responses[i * per] = resp
        t3 = time.perf_counter()
        results = []
        for i, (ids, _) in enumerate(planned):
            grdr_resp = responses[i * per]
            hits = [self._hit(h, ids, prefixes[i]) for h in grdr_resp["hits"]["hits"]]
            if hybrid != "off":
                hits = self._fuse(hits, responses[i * per + 1], k, hybrid)
            results.append(SearchResult(hits=hits[:k], recalled_ids=len(ids), pool_size=self._pool_size(grdr_resp, reranked),
                                        timings_ms={}))
        t4 = time.perf_counter()
        return _with_timings(results, encode=t1 - t0, decode=t2 - t1, opensearch=t3 - t2, total=t4 - started)

    def _native_rrf(self, texts: list[str], query_vecs: np.ndarray, beams: list[list[str]],
                    planned: list[tuple[list[str], np.ndarray]], k: int, size: int,
                    clauses: list[dict[str, Any]]) -> Optional[list[SearchResult]]:
        """hybrid="rrf" inside OpenSearch, one `hybrid` request per query; None (and native_hybrid
        off from now on) when OpenSearch refuses it."""
        prefixes = [self.widen(beams[i], k, int(counts.sum())) if beams[i] else []
                    for i, (_, counts) in enumerate(planned)]
        lines = [line for i, (ids, _) in enumerate(planned)
                 for line in ({"index": self.index},
                              native_hybrid_request(ids, query_vecs[i], texts[i], size=size, filters=clauses,
                                                    prefixes=prefixes[i], pipeline=self.rrf_pipeline))]
        try:  # an unknown `hybrid` query fails the whole _msearch (400); other errors come per response
            responses = self.client.msearch(body=lines)["responses"]
        except RequestError as exc:
            responses = [{"error": exc.info or exc.error}]
        refused = next((r["error"] for r in responses if "error" in r), None)
        if refused is not None:
            log.warning("OpenSearch refused the hybrid query (%s); hybrid rrf fuses client side from now on", refused)
            self.native_hybrid = False
            return None
        return [SearchResult(hits=[self._hit(h, ids, prefixes[i]) for h in resp["hits"]["hits"]][:k],
                             recalled_ids=len(ids), pool_size=self._recalled(resp), timings_ms={})
                for i, ((ids, _), resp) in enumerate(zip(planned, responses))]

    def _msearch(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        responses = self.client.msearch(body=lines)["responses"]
        for r in responses:
            if "error" in r:
                raise RuntimeError(f"OpenSearch refused the query: {r['error']}")
        return responses

    @staticmethod
    def _recalled(response: dict[str, Any]) -> int:
        total = response["hits"]["total"]
        return int(total["value"] if isinstance(total, dict) else total)

    @classmethod
    def _pool_size(cls, response: dict[str, Any], reranked: int) -> int:
        """Videos in the recalled pool: every recalled video, up to the rescore window."""
        return min(reranked, cls._recalled(response))

    @staticmethod
    def _hit(h: dict[str, Any], ids: list[str], prefixes: list[str]) -> Hit:
        own = h.get("fields", {}).get(ID_FIELD, [])
        matched = next((s for s in ids if s in own), None)
        if matched is None:
            matched = next((p for p in prefixes if any(o.startswith(p + "-") for o in own)), None)
        src = h.get("_source") or {}
        return Hit(video_id=h["_id"], score=float(h["_score"]), matched_id=matched, title=src.get("title"))

    def _fuse(self, grdr_hits: list[Hit], keyword_resp: dict[str, Any], k: int, mode: HybridMode) -> list[Hit]:
        keyword = [self._hit(h, [], []) for h in keyword_resp["hits"]["hits"]]
        if mode == "union":  # one score scale (knn_score on both sides): merge, best first
            merged = {h.video_id: h for h in keyword}
            merged.update({h.video_id: h for h in grdr_hits})  # a recalled hit keeps its matched ID
            return sorted(merged.values(), key=lambda h: (-h.score, h.video_id))[:k]
        by_id = {h.video_id: h for h in [*keyword, *grdr_hits]}
        fused = rrf([[h.video_id for h in grdr_hits], [h.video_id for h in keyword]], self.hybrid_weights,
                    self.rrf_rank_constant)
        return [by_id[vid].model_copy(update={"score": score}) for vid, score in fused[:k]]


def _with_timings(results: list[SearchResult], **seconds: float) -> list[SearchResult]:
    """Each stage's time of a batch, per query in ms, on every result of it."""
    for r in results:
        r.timings_ms = {stage: round(v * 1e3 / len(results), 3) for stage, v in seconds.items()}
    return results
