"""`Searcher`: text -> encode (onnxruntime) -> constrained decode (numpy) -> plan -> OpenSearch -> fuse.

    from query.searcher import Searcher
    searcher = Searcher("models/msrvtt", index="msrvtt").connect()
    hits = searcher.search("a man is cooking", k=10).hits

Construction reads the model folder's config.json only; `connect()` makes the network calls
(alias, fingerprint, mapping, trie build, plugin detection), and the first search makes them if
`connect()` was not called.  A Searcher is safe to share across threads: each search reads one
trie snapshot throughout (query.trie_store), and the only state searches change is guarded.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from grdr_plugin.index import GrdrFields, GrdrMeta, Scorer, resolve, served_meta
from grdr_plugin.model.config import ServingRecord
from grdr_plugin.pool import check_beam_size, check_max_pool
from grdr_plugin.runtime import ModelRuntime, Queries
from grdr_plugin.settings import Settings, get_settings
from query.executor import Answers, NativeHybrid, run_rounds
from query.filters import FieldKind, SearchFilters, field_kinds_of, filter_clauses
from query.hybrid import (
    BM25_FIELDS,
    HybridMode,
    check_hybrid_mode,
    check_hybrid_weights,
    check_text_fields,
    default_text_fields,
    fuse,
    rrf_pipeline,
)
from query.planner import SearchPlan, native_hybrid_bodies, plan_search, scored_pool
from query.request import hit_source
from query.results import (
    Hit,
    SearchResult,
    hits_of,
    recalled_total,
    reranked_pool,
    searched_shards_of,
    sourceless_hits,
    with_sources,
)
from query.trie_store import TrieSnapshot, TrieStore

__all__ = ["Hit", "SearchResult", "Searcher", "SearcherConfig", "clean_query"]

MAX_QUERY_CHARS = 2000  # far beyond any query the text encoder reads (it truncates), small enough to clean cheaply
# Bounds of the Python API: what one search may ask of the decoder and OpenSearch (the HTTP API's
# bounds, on what one HTTP request may cost the server, are tighter: query.api).
MAX_K = 1000  # one request's `size` and, above max_pool, its rescore window
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


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


def check_k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k: must be between 1 and {MAX_K}")
    return k


class SearcherConfig(BaseModel):
    """How a Searcher searches (per-call k, filters, hybrid, beam_size and max_pool aside)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    beam_size: Optional[int] = Field(None, strict=True, description="decoder beam: decoded IDs per query; None = "
                                     "the model's for the catalog's size (config.json serving: grdr tune, else "
                                     "grdr_plugin.pool's)")
    max_pool: Optional[int] = Field(None, strict=True, description="recall budget: videos (counted per ID) the "
                                    "reranker scores; None = the model's for the catalog's size (grdr_plugin.pool)")
    recall_level: Optional[int] = Field(None, ge=1, strict=True, description="the ID level the pool is recalled at "
                                        "(prefixes of that many codes, up to whole IDs); None = the model's for the "
                                        "catalog's size")
    threads: int = Field(1, ge=1, strict=True, description="onnxruntime threads per session")
    poll_interval_s: float = Field(0.5, ge=0, description="how often searches poll for new IDs (one registry GET): "
                                                          "newly ingested IDs reach searches within about this")
    rrf_rank_constant: int = Field(60, ge=1, strict=True, description="RRF's k (the RRF paper's and OpenSearch's)")
    hybrid_weights: tuple[float, float] = Field((1.0, 1.0), description="RRF weights of (GRDR, BM25)")
    native_hybrid: Optional[bool] = Field(
        None, description="fuse hybrid='rrf' inside OpenSearch (neural-search's `hybrid` query and score-ranker "
                          "pipeline); None = when every node has that plugin")
    text_fields: Optional[tuple[str, ...]] = Field(
        None, description="fields BM25 reads in hybrid searches (`name` or `name^boost`); None = the grdr "
                          "catalog's title^2, description and tags, or every text field of an attached index")

    @field_validator("beam_size")
    @classmethod
    def _bounded_beam(cls, v: Optional[int]) -> Optional[int]:
        return v if v is None else check_beam_size(v)

    @field_validator("max_pool")
    @classmethod
    def _bounded_pool(cls, v: Optional[int]) -> Optional[int]:
        return v if v is None else check_max_pool(v)

    @field_validator("hybrid_weights")
    @classmethod
    def _usable_weights(cls, v: tuple[float, float]) -> tuple[float, float]:
        return check_hybrid_weights(v)


@dataclass(frozen=True)
class _Catalog:
    """What `connect()` learns from the cluster."""

    field_kinds: dict[str, FieldKind]  # every field a filter may name, with its kind (query.filters)
    store: TrieStore
    native_hybrid: NativeHybrid
    fields: GrdrFields  # where the index keeps grdr's fields
    text_fields: tuple[str, ...]  # what BM25 reads (hybrid)
    shards: int  # primary shards a search of the index reaches (union's candidates: query.hybrid)
    indices: tuple[str, ...]  # the concrete indices behind the name when connected (fingerprint-checked)
    scorer: Scorer  # how the pool is scored (the indices' `_meta.grdr.scorer`)
    hit_doc_values: bool  # whether hits may be read from doc values (the indices' `_meta.grdr.hit_doc_values`)


class Searcher:
    """Search one catalog alias with one model folder; share one across threads.

    Construction reads the model's config only; `connect()` (or the first search) talks to the
    cluster.  search / search_many plan, send and fuse (query.planner, query.executor, query.hybrid).
    """

    def __init__(self, model_dir: Path | str, index: str, *, config: Optional[SearcherConfig] = None,
                 settings: Optional[Settings] = None, client=None, **overrides: Any):
        """overrides: SearcherConfig fields (beam_size=50, max_pool=3000, ...) over `config`'s.
        Reads the model folder's config.json; nothing goes over the network (see `connect`)."""
        base = config.model_dump() if config is not None else {}
        self.config = SearcherConfig.model_validate({**base, **overrides})
        self.index = index
        self.model_dir = model_dir
        settings = settings or get_settings()
        self.runtime = ModelRuntime(model_dir, threads=self.config.threads, encoder=settings.query_encoder)
        levels = self.runtime.cfg.levels
        if (self.config.recall_level or 0) > levels:  # refused here, not at the first search
            raise ValueError(f"recall_level: {self.config.recall_level} is more than the model's {levels} ID levels")
        self.client = client or settings.opensearch_client()
        self.rrf_pipeline = rrf_pipeline(self.config.hybrid_weights, self.config.rrf_rank_constant)
        self._catalog: Optional[_Catalog] = None
        self._connect_lock = threading.Lock()

    # ---- the network calls ----

    def connect(self) -> "Searcher":
        """Resolve the alias, refuse an index of another model, read the mapping, build the trie
        and detect neural-search; once (later calls, and concurrent ones, return at once)."""
        with self._connect_lock:
            if self._catalog is None:
                self._catalog = self._open_catalog()
        return self

    def _open_catalog(self) -> _Catalog:
        try:
            resolved = resolve(self.client, self.index)
        except LookupError:
            raise LookupError(f"--index: no index or alias named {self.index!r}; create a catalog with "
                              "`grdr index create` or `grdr ingest`, or add grdr to your own index with "
                              "`grdr attach`") from None
        meta, mappings = served_meta(self.client, resolved, self.runtime.fingerprint, self.model_dir)
        kinds = field_kinds_of(mappings.get("properties", {}), meta.fields)
        text_fields = self._text_fields(meta, kinds)
        cfg = self.runtime.cfg
        # An attached index (or an alias over several) is read as named; a catalog alias through its one index.
        store = TrieStore(self.client, meta.registry_key or self.index, levels=cfg.levels,
                          codebook_size=cfg.codebook_size, poll_interval_s=self.config.poll_interval_s,
                          index=self.index if meta.mode == "attached" else None, id_field=meta.fields.ids).build()
        forced = self.config.native_hybrid
        native = NativeHybrid.detect(self.client) if forced is None else NativeHybrid(forced)
        return _Catalog(field_kinds=kinds, store=store, native_hybrid=native, fields=meta.fields,
                        text_fields=text_fields, shards=searched_shards(self.client, self.index),
                        indices=resolved.indices, scorer=meta.scorer, hit_doc_values=meta.hit_doc_values)

    def _text_fields(self, meta: GrdrMeta, kinds: dict[str, FieldKind]) -> tuple[str, ...]:
        """What BM25 reads: the fields the config names, else the catalog's own, else the index's text fields."""
        if self.config.text_fields is not None:
            return tuple(check_text_fields(self.config.text_fields, kinds))
        return tuple(BM25_FIELDS if meta.mode == "catalog" else default_text_fields(kinds))

    def _connected(self) -> _Catalog:
        """The catalog, connecting first if no one has (what a search does)."""
        if self._catalog is None:
            self.connect()
        return self._catalog  # type: ignore[return-value]  # connect() set it or raised

    def _catalog_for(self, attribute: str) -> _Catalog:
        """The catalog, for an attribute read: that makes no network call, so it asks for connect()."""
        if self._catalog is None:
            raise RuntimeError(f"Searcher.{attribute}: not connected; call connect() first (or search once)")
        return self._catalog

    @property
    def store(self) -> TrieStore:
        return self._catalog_for("store").store

    @property
    def text_fields(self) -> tuple[str, ...]:
        """What BM25 reads in hybrid searches."""
        return self._catalog_for("text_fields").text_fields

    @property
    def scorer(self) -> Scorer:
        """How the catalog scores a pool (grdr_plugin.index.Scorer)."""
        return self._catalog_for("scorer").scorer

    @property
    def hit_doc_values(self) -> bool:
        """Whether hits are read from doc values when a search asks for no field (the catalog's
        `_meta.grdr.hit_doc_values`: query.request.hit_payload)."""
        return self._catalog_for("hit_doc_values").hit_doc_values

    @property
    def native_hybrid(self) -> bool:
        """Whether hybrid="rrf" is fused inside OpenSearch (off for good once OpenSearch refused it)."""
        return self._catalog_for("native_hybrid").native_hybrid.enabled

    def serving(self, trie: Optional[TrieSnapshot] = None) -> ServingRecord:
        """The model's serving defaults for the catalog of `trie` (default: the current snapshot): those tuned nearest
        its size (`ModelConfig.serving_for`)."""
        return self.runtime.cfg.serving_for(self._postings(trie))

    def beam_size(self, trie: Optional[TrieSnapshot] = None) -> int:
        """The beam a search uses unless it names one: the config's, else the model's serving default for the
        catalog of `trie` (default: the current snapshot)."""
        return self.config.beam_size or self.serving(trie).beam_size

    def recall_level(self, trie: Optional[TrieSnapshot] = None) -> int:
        """The ID level a search recalls its pool at: the config's, else the model's serving default for the
        catalog of `trie` (default: the current snapshot)."""
        return self.config.recall_level or self.runtime.cfg.recall_level_for(self._postings(trie))

    def recall_budget(self, max_pool: Optional[int] = None, trie: Optional[TrieSnapshot] = None) -> int:
        """The recall budget a search uses: `max_pool`, else the config's, else the model's (config.json serving:
        grdr_plugin.pool.BudgetRule) for the postings of `trie` (default: the current snapshot)."""
        cap = self.config.max_pool if max_pool is None else check_max_pool(max_pool)
        if cap is not None:
            return cap
        return self.runtime.cfg.budget_rule().budget(self._postings(trie))

    def _postings(self, trie: Optional[TrieSnapshot]) -> int:
        return (trie or self._connected().store.snapshot).postings

    # ---- searching ----

    def decode(self, queries: Queries, beam_size: Optional[int] = None,
               trie: Optional[TrieSnapshot] = None) -> tuple[np.ndarray, np.ndarray]:
        """Trie-constrained beam search (`ModelRuntime.beam_search`) over `trie` (default: the current snapshot), to
        the recall level (`recall_level`: whole IDs, or their prefixes)."""
        if trie is None:
            trie = self._connected().store.snapshot
        level = self.recall_level(trie)
        whole = level == self.runtime.cfg.levels
        masks = trie.masks if whole and self.runtime.search_session is not None else None
        beam = self.beam_size(trie) if beam_size is None else beam_size
        return self.runtime.beam_search(queries, trie.tables[:level], beam, masks=masks)

    def search(self, text: str, k: int = 10, filters: Optional[SearchFilters | dict] = None,
               hybrid: HybridMode = "off", beam_size: Optional[int] = None,
               max_pool: Optional[int] = None, source: Optional[Sequence[str]] = None,
               widen: bool = True) -> SearchResult:
        return self.search_many([text], k=k, filters=filters, hybrid=hybrid, beam_size=beam_size, max_pool=max_pool,
                                source=source, widen=widen)[0]

    def search_many(self, texts: Sequence[str], k: int = 10, filters: Optional[SearchFilters | dict] = None,
                    hybrid: HybridMode = "off", beam_size: Optional[int] = None,
                    max_pool: Optional[int] = None, source: Optional[Sequence[str]] = None,
                    reconnect: bool = True, widen: bool = True) -> list[SearchResult]:
        """Batched: one encode and one decode for all texts, then the planned requests
        (query.planner) in one _msearch, and a second only for the queries that need it
        (query.executor).

        hybrid: "off", "rrf" or "union" (query.hybrid).  beam_size and max_pool override the
        config's for this call.  With native hybrid on, "rrf" is one `hybrid` query per query
        instead, and the client-side requests for the batch if OpenSearch refuses it.
        source: the `_source` fields each hit carries (`Hit.source`; names or wildcards).
        reconnect: when hits come from an index the name did not point at on connect (the alias moved),
        connect again and search once more (refused, with the fix, if that index holds another model's IDs).
        widen: a pool of fewer than k videos is widened by shorter ID prefixes (query.planner.ask_again); False
        returns the pool's hits alone (what evaluation compares with in-process eval, which does not widen).
        """
        mode = check_hybrid_mode(hybrid)
        check_k(k)
        if max_pool is not None:
            check_max_pool(max_pool)  # refused before any network call
        beam = None if beam_size is None else check_beam_size(beam_size)  # None: the catalog's default (decode)
        if isinstance(filters, dict):
            filters = SearchFilters(**filters)
        source_body = hit_source(source or ())
        texts = [clean_query(t) for t in texts]
        catalog = self._connected()
        clauses = filter_clauses(filters, catalog.field_kinds)
        if mode != "off" and not catalog.text_fields:
            raise ValueError(f"hybrid: {self.index} has no text fields for BM25; name the fields it reads "
                             "(SearcherConfig.text_fields, `--text-field`)")
        started = time.perf_counter()
        catalog.store.refresh()  # new IDs from ingest; a real-time GET at most every poll interval
        trie = catalog.store.snapshot  # this search's one view of the valid IDs
        cap = self.recall_budget(max_pool, trie)
        t0 = time.perf_counter()
        queries = self.runtime.encode_queries(texts)
        t1 = time.perf_counter()
        codes, scores = self.decode(queries, beam, trie)
        t2 = time.perf_counter()
        cfg = self.runtime.cfg
        plan = plan_search(texts, queries.query_vec, codes, scores, trie, k=k, max_pool=cap, hybrid=mode,
                           filters=clauses, levels=cfg.levels, fields=catalog.fields,
                           text_fields=catalog.text_fields, source=source_body, shards=catalog.shards,
                           scorer=catalog.scorer, hit_doc_values=catalog.hit_doc_values and not source, widen=widen)
        with_source = bool(source)
        if mode == "rrf" and catalog.native_hybrid.enabled:
            native = self._native_rrf(plan, trie, catalog.native_hybrid, with_source)
            if native is not None:
                t3 = time.perf_counter()
                return _with_timings(native, encode=t1 - t0, decode=t2 - t1, opensearch=t3 - t2, total=t3 - started)
            # refused: the same encoded and decoded batch is fused client side below
        answers = run_rounds(self.client, self.index, plan, trie)
        if reconnect and _moved(answers, catalog.indices):
            # The alias moved (a blue/green reindex): its new index may hold another model's IDs, which this
            # model's decoded IDs would recall wrongly.  Connect again (the fingerprint check refuses another
            # model's index with the fix) and search once more with the new index's trie.
            with self._connect_lock:
                if self._catalog is catalog:
                    self._catalog = None
            return self.search_many(texts, k=k, filters=filters, hybrid=hybrid, beam_size=beam_size,
                                    max_pool=max_pool, source=source, reconnect=False, widen=widen)
        shards = max((searched_shards_of(r) for r in answers.grdr), default=plan.shards)
        if shards > plan.shards:  # the alias moved to an index of more shards
            self._catalog = catalog = replace(catalog, shards=shards)
            if plan.hybrid == "union":  # its keyword candidates need a pool fetch there
                answers = run_rounds(self.client, self.index, replace(plan, shards=shards), trie)
        t3 = time.perf_counter()
        results = self._fused(plan, answers, with_source)
        t4 = time.perf_counter()
        return _with_timings(results, encode=t1 - t0, decode=t2 - t1, opensearch=t3 - t2, total=t4 - started)

    def _fused(self, plan: SearchPlan, answers: Answers, with_source: bool) -> list[SearchResult]:
        """Each query's GRDR hits, fused with its keyword hits as the plan's hybrid mode says."""
        results = []
        read = {"id_field": plan.fields.ids, "with_source": with_source}
        keyword_pools = self._with_sources([reranked_pool(r, plan.size) if r else r for r in answers.keyword],
                                           plan.source)
        for q, grdr, keyword, prefixes in zip(plan.queries, answers.grdr, keyword_pools, answers.prefixes):
            keyword_hits = hits_of(keyword, **read) if keyword else []
            grdr_hits = hits_of(grdr, q.ids, prefixes, **read)
            hits = fuse(plan.hybrid, grdr_hits, keyword_hits, plan.k,
                        weights=self.config.hybrid_weights, rank_constant=self.config.rrf_rank_constant)
            results.append(SearchResult(hits=hits, recalled_ids=len(q.ids) + len(q.prefixes),
                                        pool_size=scored_pool(plan, q, recalled_total(grdr)), timings_ms={}))
        return results

    def _with_sources(self, responses: list[Optional[dict[str, Any]]],
                      source: dict[str, Any]) -> list[Optional[dict[str, Any]]]:
        """Reranked pool fetches (union's keyword candidates on several shards) with their hits' `_source`
        read: one `mget` for the batch."""
        wanted = list(dict.fromkeys(key for r in responses for key in sourceless_hits(r)))
        if not wanted:
            return responses
        docs = self.client.mget(body={"docs": [{"_index": i, "_id": d, "_source": source} for i, d in wanted]})["docs"]
        found = {(d["_index"], d["_id"]): d.get("_source", {}) for d in docs if d.get("found")}
        return [with_sources(r, found) for r in responses]

    def _native_rrf(self, plan: SearchPlan, trie: TrieSnapshot, native: NativeHybrid,
                    with_source: bool) -> Optional[list[SearchResult]]:
        """hybrid="rrf" inside OpenSearch; None when OpenSearch refuses it."""
        bodies, prefixes = native_hybrid_bodies(plan, trie, self.rrf_pipeline)
        responses = native.run(self.client, self.index, bodies)
        if responses is None:
            return None
        read = {"id_field": plan.fields.ids, "with_source": with_source}
        return [SearchResult(hits=hits_of(resp, q.ids, p, **read)[: plan.k], recalled_ids=len(q.ids) + len(q.prefixes),
                             pool_size=recalled_total(resp), timings_ms={})
                for q, p, resp in zip(plan.queries, prefixes, responses)]


def searched_shards(client, index: str) -> int:
    """The primary shards a search of `index` reaches, read from a search that matches nothing: it
    needs no permission beyond searching, and an alias over several indices counts them all."""
    return searched_shards_of(client.search(index=index, body={"size": 0, "query": {"match_none": {}}}))


def _moved(answers: Answers, indices: tuple[str, ...]) -> bool:
    """Whether a hit came from an index the name did not point at when this Searcher connected."""
    return any(h["_index"] not in indices for r in answers.grdr for h in r["hits"]["hits"])


def _with_timings(results: list[SearchResult], **seconds: float) -> list[SearchResult]:
    """Each stage's time of a batch, per query in ms, on every result of it."""
    for r in results:
        r.timings_ms = {stage: round(v * 1e3 / len(results), 3) for stage, v in seconds.items()}
    return results
