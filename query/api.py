"""The HTTP API of `grdr serve`: the search page, search, the ID browser, health and metrics.

    GET  /                                 the search page (query/page/: no CDN, works offline)
    POST /search                           a SearchResult
    GET  /ids/{semantic_id}/videos?size=N  the videos that share a semantic ID (or an ID prefix)
    GET  /health                           index, model fingerprint, valid IDs, pid, capacity
    GET  /metrics                          Prometheus text format (query.api_metrics)
    GET  /docs, /redoc, /openapi.json      the OpenAPI description, its assets served locally

`create_app(searcher, routers=...)` mounts other layers' routers too (`grdr serve` adds ingest's):
every API route of every router gets the one error shape (query.errors), the API key
(query.auth), a body limit (query.body_limit), metrics and a JSON log line (query.observe).
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Optional, Sequence

import anyio
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from grdr_plugin.pool import MAX_BEAM
from grdr_plugin.settings import Settings, get_settings
from query.api_metrics import ApiMetrics
from query.auth import api_key_guard
from query.body_limit import ShapedBodyLimit
from query.catalog_capacity import SnapshotCapacity
from query.errors import content_type_problem, document_errors, install_error_handlers
from query.filters import SearchFilters
from query.http_settings import HttpSettings, get_http_settings
from query.hybrid import HybridMode
from query.id_browser import SharingVideos, videos_sharing
from query.json_log import http_logger, log
from query.observe import REQUEST_ID_HEADER, Observe
from query.request import MAX_SOURCE_FIELDS
from query.searcher import MAX_QUERY_CHARS, Searcher, SearchResult
from query.trie_store import TrieStore

# What one HTTP request may cost the server (the Python API's own bounds are wider: query.searcher).
MAX_BODY_BYTES = 64 * 1024  # a query text and its filters with room; larger bodies are refused unread
MAX_API_K = 100  # a page of results, not an export of the catalog
# The Python API's bound: a model's own default may be that wide (`grdr tune`), so a client may ask as much;
# a search at it decodes in about 20 ms on a C=256 model (MODEL.md, "Masks or the trie walk").
MAX_API_BEAM = MAX_BEAM
DEFAULT_CONCURRENCY = 4  # searches running at once; the rest wait in the event loop
DEFAULT_BROWSE_SIZE = 20  # videos listed per ID unless asked: most IDs hold fewer (a pool of 300 over ~100 IDs)
PAGE_DIR = Path(__file__).parent / "page"
READ_POSTS = frozenset({"/search"})  # POST routes that only read: the API key guards them as reads
# Every method a route of any router may answer; a cross-origin page may send the key and a JSON body.
CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
CORS_HEADERS = ("Authorization", "X-API-Key", "Content-Type", REQUEST_ID_HEADER)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # strict: true or "10" for a number (or "yes" for a flag) is a client bug worth a 422, not a guess.
    text: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS, description="the query")
    k: int = Field(10, ge=1, le=MAX_API_K, strict=True, description="number of hits")
    filters: Optional[SearchFilters] = None
    hybrid: HybridMode = Field(
        "off", description="BM25 over title/description/tags: 'union' adds its top documents to the recalled pool "
                           "(one dense ranking), 'rrf' fuses the two rankings")
    beam_size: Optional[int] = Field(None, ge=1, le=MAX_API_BEAM, strict=True,
                                     description="decoder beam (default: the model's)")
    source: Optional[list[str]] = Field(None, max_length=MAX_SOURCE_FIELDS,
                                        description="_source fields each hit carries (hit.source)")


def json_body(request: Request) -> None:
    """A JSON body or a 415 naming the header (before the body is validated)."""
    problem = content_type_problem(request.headers.get("content-type"))
    if problem:
        raise HTTPException(415, problem)


def _store(searcher: Searcher) -> Optional[TrieStore]:
    try:
        return searcher.store
    except RuntimeError:  # not connected yet: nothing to report
        return None


def _api_routes(searcher: Searcher, metrics: ApiMetrics, logger: logging.Logger,
                max_concurrency: int) -> APIRouter:
    api = APIRouter()
    # Searches are CPU-bound (ONNX + numpy): a few threads use the cores fully, and more only add
    # per-thread allocator arenas (the query process's memory then creeps up under load).
    limiter = anyio.CapacityLimiter(max_concurrency)

    @api.post("/search", response_model=SearchResult, dependencies=[Depends(json_body)])
    async def search(req: SearchRequest) -> SearchResult:
        run = functools.partial(searcher.search, req.text, k=req.k, filters=req.filters, hybrid=req.hybrid,
                                beam_size=req.beam_size, source=req.source)
        result = await anyio.to_thread.run_sync(run, limiter=limiter)
        metrics.search(result.timings_ms)
        return result

    @api.get("/ids/{semantic_id}/videos", response_model=SharingVideos)
    def ids_videos(semantic_id: str,
                   size: int = Query(DEFAULT_BROWSE_SIZE, ge=1, le=MAX_API_K, description="videos listed")
                   ) -> SharingVideos:
        """The videos holding this semantic ID (or ID prefix, as a widened hit's matched_id), by video_id."""
        cfg = searcher.runtime.cfg
        return videos_sharing(searcher.client, searcher.index, semantic_id, levels=cfg.levels,
                              codebook_size=cfg.codebook_size, size=size)

    @api.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    def prometheus() -> Response:
        store = _store(searcher)
        if store is not None:
            try:  # a scrape polls like a search would, so the poll age measures failing polls, not idle time
                store.refresh()
            except Exception as exc:  # the scrape must answer whatever the registry does
                log(logger, logging.WARNING, "registry_poll_failed", error=type(exc).__name__)
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return api


def create_app(searcher: Searcher, max_concurrency: int = DEFAULT_CONCURRENCY, *,
               routers: Sequence[APIRouter] = (), settings: Optional[Settings] = None,
               http: Optional[HttpSettings] = None) -> FastAPI:
    """The app over a searcher (connected or not: /health and /metrics wait for the first search).

    routers: more API routes (e.g. ingest's); settings: the API key (default: GRDR_* variables);
    http: CORS and the request log (default: GRDR_* variables)."""
    settings = settings or get_settings()
    http = http or get_http_settings()
    app = FastAPIOffline(title="grdr query API", version="1", static_url="/static/docs",
                         description="Generative recall + dense rerank over OpenSearch. Every error is an "
                                     "`ErrorBody`; with GRDR_API_KEY set, writes need the key.")
    install_error_handlers(app)
    logger = http_logger(http.access_log)
    metrics = ApiMetrics(lambda: _store(searcher))
    capacity = SnapshotCapacity()

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=PAGE_DIR), name="page")

    @app.get("/health")
    def health() -> dict:
        """Open to all (liveness probes): no key is asked. capacity: whether the catalog has outgrown its
        codebook or the served model's budget share and tuned size, from the trie snapshot (counts as of the trie
        build, plus IDs published since)."""
        store, cfg = searcher.store, searcher.runtime.cfg
        report = capacity.report(store, alias=searcher.index, views=cfg.views, levels=cfg.levels,
                                 codebook_size=cfg.codebook_size, max_pool=searcher.recall_budget(),
                                 serving=cfg)
        return {"status": "ok", "index": searcher.index, "fingerprint": searcher.runtime.fingerprint,
                "ids": len(store), "pid": os.getpid(),  # pid: `grdr loadtest` samples its RSS
                "rrf_fusion": "opensearch" if searcher.native_hybrid else "client",  # where hybrid="rrf" is fused
                "capacity": report.model_dump()}

    guard = api_key_guard(settings.api_key, for_reads=settings.api_key_for_reads, read_posts=READ_POSTS)
    guarded = [Depends(guard)] if guard else []
    for router in (_api_routes(searcher, metrics, logger, max_concurrency), *routers):
        # max_body_size: the default for routers that set none of their own
        app.include_router(router, dependencies=guarded, max_body_size=MAX_BODY_BYTES)

    # Outermost last: CORS (its headers on every answer, errors too), Observe, the 413 shaper.
    app.add_middleware(ShapedBodyLimit)
    app.add_middleware(Observe, metrics=metrics, logger=logger, routes=app.router.routes)
    if http.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=http.cors_origins, allow_methods=CORS_METHODS,
                           allow_headers=CORS_HEADERS, expose_headers=(REQUEST_ID_HEADER,))
    document_errors(app)
    return app
