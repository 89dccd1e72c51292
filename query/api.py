"""The HTTP query API (`grdr serve`): POST /search, GET /health, OpenAPI at /openapi.json and /docs."""
from __future__ import annotations

from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from query.filters import SearchFilters
from query.searcher import MAX_QUERY_CHARS, SearchResult, Searcher

MAX_BODY_BYTES = 64 * 1024
MAX_API_K = 100
MAX_API_BEAM = 200


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS, description="the query")
    k: int = Field(10, ge=1, le=MAX_API_K, description="number of hits")
    filters: Optional[SearchFilters] = None
    hybrid: bool = Field(False, description="fuse BM25 over title/description/tags by RRF")
    beam_size: Optional[int] = Field(None, ge=1, le=MAX_API_BEAM, description="decoder beam (default: the server's)")


def create_app(searcher: Searcher) -> FastAPI:
    app = FastAPI(title="grdr query API", version="1", description="Generative recall + dense rerank over OpenSearch")

    @app.middleware("http")
    async def bound_request_size(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse(status_code=413, content={"error": f"body: at most {MAX_BODY_BYTES} bytes"})
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        errors = [{"field": ".".join(str(p) for p in e["loc"][1:]) or "body", "error": e["msg"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"error": "invalid request", "details": errors})

    @app.exception_handler(ValueError)
    async def bad_value(_: Request, exc: ValueError):
        return JSONResponse(status_code=400, content={"error": str(exc)})

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "index": searcher.index, "fingerprint": searcher.runtime.fingerprint,
                "ids": len(searcher.store)}

    @app.post("/search", response_model=SearchResult)
    def search(req: SearchRequest) -> SearchResult:
        return searcher.search(req.text, k=req.k, filters=req.filters, hybrid=req.hybrid, beam_size=req.beam_size)

    return app
