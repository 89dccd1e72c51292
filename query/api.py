"""The HTTP query API (`grdr serve`): POST /search, GET /health, OpenAPI at /openapi.json and /docs."""
from __future__ import annotations

import functools
import os
from typing import Optional

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from query.body_limit import BodyLimit
from query.filters import SearchFilters
from query.hybrid import HybridMode
from query.searcher import MAX_QUERY_CHARS, Searcher, SearchResult

# What one HTTP request may cost the server (the Python API's own bounds are wider: query.searcher).
MAX_BODY_BYTES = 64 * 1024  # a query text and its filters with room; larger bodies are refused unread
MAX_API_K = 100  # a page of results, not an export of the catalog
MAX_API_BEAM = 400  # the default beam (grdr_plugin.pool.DEFAULT_BEAM, 300) with headroom: decoding cost grows with it
DEFAULT_CONCURRENCY = 4  # searches running at once; the rest wait in the event loop


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
                                     description="decoder beam (default: the server's)")


def _detail(error: dict) -> dict:
    """One validation error as {field, error}; a JSON syntax error's loc is (body, character offset)."""
    if error["type"] == "json_invalid":
        return {"field": "body", "error": f"invalid JSON at character {error['loc'][-1]}: {error['ctx']['error']}"}
    return {"field": ".".join(str(p) for p in error["loc"][1:]) or "body", "error": error["msg"]}


def create_app(searcher: Searcher, max_concurrency: int = DEFAULT_CONCURRENCY) -> FastAPI:
    app = FastAPI(title="grdr query API", version="1", description="Generative recall + dense rerank over OpenSearch")
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)  # bodies without Content-Length

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        errors = [_detail(e) for e in exc.errors()]
        return JSONResponse(status_code=422, content={"error": "invalid request", "details": errors})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        # FastAPI's only 400 is a body it cannot decode (not UTF-8, nested too deeply); say so in our shape.
        message = "body: cannot be parsed as UTF-8 JSON" if exc.status_code == 400 else exc.detail
        return JSONResponse(status_code=exc.status_code, content={"error": message}, headers=exc.headers)

    @app.exception_handler(ValueError)
    async def bad_value(_: Request, exc: ValueError):
        return JSONResponse(status_code=400, content={"error": str(exc)})

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "index": searcher.index, "fingerprint": searcher.runtime.fingerprint,
                "ids": len(searcher.store), "pid": os.getpid(),  # pid: `grdr loadtest` samples its RSS
                "rrf_fusion": "opensearch" if searcher.native_hybrid else "client"}  # where hybrid="rrf" is fused

    # Searches are CPU-bound (ONNX + numpy): a few threads use the cores fully, and more only add
    # per-thread allocator arenas (the query process's memory then creeps up under load).
    limiter = anyio.CapacityLimiter(max_concurrency)

    @app.post("/search", response_model=SearchResult)
    async def search(req: SearchRequest) -> SearchResult:
        run = functools.partial(searcher.search, req.text, k=req.k, filters=req.filters, hybrid=req.hybrid,
                                beam_size=req.beam_size)
        return await anyio.to_thread.run_sync(run, limiter=limiter)

    return app
