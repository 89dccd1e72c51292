"""Planning a batch of searches, pure: decoded IDs and the trie's counts in, request bodies out.

Per query the plan is its pool: the decoded IDs within the recall budget, by the trie's video
count of each (grdr_plugin.pool), its request (query.request.grdr_request), and, once the first
round's totals are known, whether to ask again, widened by shorter prefixes, because the pool
holds fewer than k videos.
query.executor sends what this module plans.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Optional, Protocol, Sequence

import numpy as np

from grdr_plugin.index import DEFAULT_FIELDS, GrdrFields, Scorer
from grdr_plugin.model.ids import children_pattern, format_rows, id_prefix
from grdr_plugin.pool import pool_ids
from query.hybrid import (
    BM25_FIELDS,
    KEYWORD_CANDIDATES,
    HybridMode,
    bm25_request,
    keyword_candidates_request,
    native_hybrid_request,
)
from query.request import HIT_SOURCE, grdr_request


class TrieCounts(Protocol):
    """What planning reads of the valid IDs (query.trie_store.TrieSnapshot)."""

    def video_count(self, sid: str) -> int: ...

    def prefix_count(self, prefix: str) -> int: ...

    def prefix_counts(self, codes: np.ndarray) -> np.ndarray: ...


def real_beams(codes: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query, its decoded IDs (or prefixes) as codes [B, l] and their scores [B], best first (padding beams,
    scored -inf, dropped)."""
    return [(c[real], s[real]) for c, s, real in zip(codes, scores, np.isfinite(scores))]


def decoded_ids(codes: np.ndarray, scores: np.ndarray) -> list[list[str]]:
    """Per query, its decoded IDs best first, formatted (padding beams dropped)."""
    return [format_rows(beams) for beams, _ in real_beams(codes, scores)]


def widening_prefixes(beams: Sequence[str], k: int, have: int, *, levels: int, trie: TrieCounts) -> list[str]:
    """Shorter prefixes of the best beams, longest first, until the trie says `have` plus their
    videos reach k: for a recalled pool of fewer than k videos."""
    prefixes: list[str] = []
    for cut in range(levels - 1, 0, -1):
        for b in beams:
            if have >= k:
                return prefixes
            p = id_prefix(b, cut)
            if p not in prefixes and not any(p.startswith(children_pattern(q)) for q in prefixes):
                prefixes.append(p)
                have += trie.prefix_count(p)
    return prefixes


@dataclass(frozen=True, eq=False)
class QueryPlan:
    text: str
    query_vec: np.ndarray  # the rerank vector
    beams: np.ndarray  # every decoded ID (or prefix, recalled at a shorter level) as codes [B, l], best first
    ids: list[str]  # the pool's IDs: the decoded IDs taken within the recall budget (grdr_plugin.pool), in turn
    counts: np.ndarray  # the trie's video count of each of `ids` (or of `prefixes`)
    # the pool's prefixes, recalled at a shorter level than whole IDs: the decoded prefixes taken within the budget
    prefixes: list[str] = field(default_factory=list)

    @cached_property
    def decoded(self) -> list[str]:
        """`beams` formatted (what widening shortens): only a query that widens reads them all."""
        return format_rows(self.beams)

    @property
    def recalled_videos(self) -> int:
        """Videos behind the pool's IDs, with multiplicity: at least the videos recalled."""
        return int(self.counts.sum())


@dataclass(frozen=True, eq=False)
class SearchPlan:
    queries: list[QueryPlan]
    k: int
    hybrid: HybridMode
    filters: list[dict[str, Any]]  # user filter clauses (query.filters)
    levels: int  # length of the decoded IDs or prefixes, for widening
    fields: GrdrFields = DEFAULT_FIELDS  # where the index keeps grdr's fields
    text_fields: Sequence[str] = tuple(BM25_FIELDS)  # what BM25 reads (hybrid)
    source: dict[str, Any] = field(default_factory=lambda: HIT_SOURCE)  # the hits' `_source` includes
    # GRDR hits read from doc values instead (query.request.hit_payload): a catalog's, when no field beyond the
    # title is asked for
    hit_doc_values: bool = False
    shards: int = 1  # the index's primary shards: how union's keyword candidates are reranked (query.hybrid)
    scorer: Scorer = "knn_score"  # how the index scores the pool (its `_meta.grdr.scorer`)
    # a pool of fewer than k videos is widened by shorter prefixes (`ask_again`); evaluation turns it off, since a
    # widened request's top k may push pool videos out, and in-process eval does not widen
    widen: bool = True

    @property
    def size(self) -> int:
        """Hits per GRDR request: rrf fuses the top KEYWORD_CANDIDATES of each side."""
        return max(self.k, KEYWORD_CANDIDATES) if self.hybrid == "rrf" else self.k


def plan_search(texts: Sequence[str], query_vecs: np.ndarray, codes: np.ndarray, scores: np.ndarray,
                trie: TrieCounts, *, k: int, max_pool: int, hybrid: HybridMode, filters: list[dict[str, Any]],
                levels: int, fields: GrdrFields = DEFAULT_FIELDS,
                text_fields: Sequence[str] = tuple(BM25_FIELDS), source: dict[str, Any] = HIT_SOURCE,
                shards: int = 1, scorer: Scorer = "knn_score", hit_doc_values: bool = False,
                widen: bool = True) -> SearchPlan:
    """The plan of a batch from its decoder output (codes, scores: `ModelRuntime.beam_search`'s): whole IDs of
    `levels` codes, or prefixes of fewer (a search recalled at a shorter level), taken under the same budget rule."""
    queries = []
    whole = codes.shape[-1] == levels
    for text, vec, (beams, beam_scores) in zip(texts, query_vecs, real_beams(codes, scores)):
        if whole:  # the trie's keys are the ID strings
            decoded = format_rows(beams)
            counts = np.array([trie.video_count(b) for b in decoded], dtype=np.int64)
            taken = pool_ids(beam_scores, counts, max_pool)
            queries.append(QueryPlan(text=text, query_vec=vec, beams=beams, ids=[decoded[i] for i in taken],
                                     counts=counts[taken]))
        else:  # counted from the codes; only the taken prefixes are formatted
            counts = trie.prefix_counts(beams)
            taken = pool_ids(beam_scores, counts, max_pool)
            queries.append(QueryPlan(text=text, query_vec=vec, beams=beams, ids=[], counts=counts[taken],
                                     prefixes=format_rows(beams[taken])))
    levels = codes.shape[-1]
    return SearchPlan(queries=queries, k=k, hybrid=hybrid, filters=filters, levels=levels,
                      fields=fields, text_fields=tuple(text_fields), source=source, shards=shards, scorer=scorer,
                      hit_doc_values=hit_doc_values, widen=widen)


# ---- request bodies ----

def grdr_body(plan: SearchPlan, q: QueryPlan, prefixes: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """The query's one GRDR request: its pool's IDs and prefixes (`prefixes`: those and the widening ones)."""
    prefixes = q.prefixes if prefixes is None else prefixes
    return grdr_request(q.ids, q.query_vec, k=plan.size, prefixes=prefixes, extra_filters=plan.filters,
                        fields=plan.fields, source=None if plan.hit_doc_values else plan.source, scorer=plan.scorer)


def keyword_body(plan: SearchPlan, q: QueryPlan) -> Optional[dict[str, Any]]:
    """The query's keyword request (rrf: BM25's ranking; union: BM25's candidates by knn_score), or None."""
    if plan.hybrid == "rrf":
        return bm25_request(q.text, size=plan.size, filters=plan.filters, text_fields=plan.text_fields,
                            source=plan.source)
    if plan.hybrid == "union":
        return keyword_candidates_request(q.text, q.query_vec, size=max(plan.k, KEYWORD_CANDIDATES),
                                          filters=plan.filters, text_fields=plan.text_fields, source=plan.source,
                                          fields=plan.fields, shards=plan.shards)
    return None


def first_round(plan: SearchPlan) -> list[dict[str, Any]]:
    """Per query its GRDR request, followed (hybrid) by its keyword request."""
    bodies = []
    for q in plan.queries:
        bodies.append(grdr_body(plan, q))
        keyword = keyword_body(plan, q)
        if keyword is not None:
            bodies.append(keyword)
    return bodies


def scored_pool(plan: SearchPlan, q: QueryPlan, matched: int) -> int:
    """The videos a query's pool held, from its GRDR response's total (`matched`): knn_score's counts
    every pool video; knn_exact's only the top k each shard returns, so the pool is then the trie's count
    of the recalled IDs' videos (before the user's filters; a video under two IDs counts twice)."""
    return matched if plan.scorer == "knn_score" else max(matched, q.recalled_videos)


def ask_again(plan: SearchPlan, pool_sizes: Sequence[int],
              trie: TrieCounts) -> tuple[list[list[str]], list[int]]:
    """After the first round (each query's hits total: the pool, or under knn_exact at most k per shard,
    which is exact below k, all this needs): the prefixes per query (its pool's, then the widening ones), and which
    queries to ask again with them: a pool smaller than k (few or filtered videos under the decoded IDs)."""
    prefixes: list[list[str]] = [list(q.prefixes) for q in plan.queries]
    again = []
    for i, q in enumerate(plan.queries):
        if plan.widen and pool_sizes[i] < plan.k and q.decoded:
            widening = widening_prefixes(q.decoded, plan.k, pool_sizes[i], levels=plan.levels, trie=trie)
            if widening:
                prefixes[i] += widening
                again.append(i)
    return prefixes, again


def native_hybrid_bodies(plan: SearchPlan, trie: TrieCounts,
                         pipeline: dict[str, Any]) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """hybrid="rrf" as one neural-search `hybrid` request per query, and the prefixes each is
    widened by, planned up front from the trie's counts."""
    prefixes = [[*q.prefixes, *(widening_prefixes(q.decoded, plan.k, q.recalled_videos, levels=plan.levels, trie=trie)
                                if plan.widen and q.decoded else [])] for q in plan.queries]
    bodies = [native_hybrid_request(q.ids, q.query_vec, q.text, size=plan.size, filters=plan.filters,
                                    prefixes=p, pipeline=pipeline, text_fields=plan.text_fields, source=plan.source,
                                    fields=plan.fields) for q, p in zip(plan.queries, prefixes)]
    return bodies, prefixes
