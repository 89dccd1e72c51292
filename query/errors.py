"""The one error shape of the HTTP API: every 4xx and 5xx of every route is an `ErrorBody`.

    {"status": 422, "error": "k: Input should be less than or equal to 100",
     "details": [{"field": "k", "error": "Input should be less than or equal to 100"}], "request_id": "..."}

`error` is one line a person can act on (the first problem, field first); `details` lists every
problem with the field it is about (empty when no field is at fault, e.g. an unknown route).
Handlers here turn FastAPI's and Starlette's exceptions, and the query layer's ValueErrors
("field: why"), into that shape; `document_errors` puts it in the OpenAPI description.
"""
from __future__ import annotations

import email.message
import logging
import re
from http import HTTPStatus
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.types import Scope

from grdr_plugin.index import FingerprintMismatch
from query.executor import OpenSearchUnavailable
from query.json_log import LOGGER, log

# "field: why", the convention of every ValueError the query layer raises; a field is a dotted name
# (filters.tags.0), a header (Content-Type) or a path parameter.
_LOCATED = re.compile(r"^([A-Za-z_][\w.\-]*): (.+)$", re.DOTALL)
# FastAPI's detail when it cannot decode a body at all (not UTF-8, nested too deeply for the JSON parser).
_UNPARSABLE_BODY = "There was an error parsing the body"
_LIMITER_413 = "Content Too Large"  # Starlette's body limiter's detail, when a streamed body passes the limit
REQUEST_ID_KEY = "request_id"  # where the request's id lives in scope["state"] (set by query.observe)


class FieldProblem(BaseModel):
    field: str = Field(description="what is wrong: a body field (dotted path), a header, a path or query parameter")
    error: str = Field(description="why, and what would be accepted")


class ErrorBody(BaseModel):
    status: int = Field(description="the HTTP status, repeated for logs and clients that lose it")
    error: str = Field(description="one line: the first problem, its field first ('text: ...')")
    details: list[FieldProblem] = Field(description="every problem with its field; empty when no field is at fault")
    request_id: str = Field(description="also the X-Request-ID header and the `request_id` of the server's log line")


ERROR_DESCRIPTIONS = {
    400: "a value the route refuses (the field first), or a body that cannot be decoded",
    401: "the API key is missing or wrong (GRDR_API_KEY is set)",
    413: "the body is over the limit",
    415: "the body's Content-Type is missing or not one the route reads (the error names the one it does)",
    422: "the body or a parameter does not validate",
    500: "a fault in the server; the log line with this request_id has the traceback",
    503: "a service the route needs (OpenSearch, the Celery broker, an ingest worker) did not answer",
}


def located(message: str) -> list[FieldProblem]:
    """'field: why' -> [FieldProblem]; [] when the message names no field."""
    match = _LOCATED.match(message)
    return [FieldProblem(field=match[1], error=match[2])] if match else []


def request_id_of(scope: Scope) -> str:
    return (scope.get("state") or {}).get(REQUEST_ID_KEY, "")


def error_response(scope: Scope, status: int, message: str, details: Optional[list[FieldProblem]] = None,
                   headers: Optional[dict[str, str]] = None) -> JSONResponse:
    body = ErrorBody(status=status, error=message, details=located(message) if details is None else details,
                     request_id=request_id_of(scope))
    return JSONResponse(status_code=status, content=body.model_dump(), headers=headers)


def too_large(scope: Scope) -> str:
    """A 413's message, with the limit of the route that refused the body (set by FastAPI's limiter)."""
    limit = scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    return f"body: at most {limit} bytes" if limit is not None else "body: over the limit"


def content_type_problem(value: Optional[str]) -> Optional[str]:
    """Why a body with this Content-Type is not read as JSON ('Content-Type: ...'), or None when it is JSON.

    A body without the header is not guessed at: a browser sends one cross-origin without a CORS
    preflight, so reading it as JSON would let any web page write through a visitor's browser."""
    fix = "send the body as JSON with the header 'Content-Type: application/json'"
    if not value:
        return f"Content-Type: missing; {fix}"
    parsed = email.message.Message()
    parsed["content-type"] = value
    subtype = parsed.get_content_subtype()
    if parsed.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json")):
        return None
    return f"Content-Type: {parsed.get_content_type()!r} is not read; {fix}"


def _validation_problem(error: dict[str, Any]) -> FieldProblem:
    """One pydantic error; a JSON syntax error's loc is (body, character offset)."""
    if error["type"] == "json_invalid":
        where = error["loc"][-1]
        return FieldProblem(field="body", error=f"invalid JSON at character {where}: {error['ctx']['error']}")
    return FieldProblem(field=".".join(str(p) for p in error["loc"][1:]) or str(error["loc"][0]), error=error["msg"])


def _http_message(request: Request, exc: HTTPException) -> str:
    """The exception's own message, or one that says what to do when the framework gave only a phrase."""
    if exc.detail == _UNPARSABLE_BODY:
        return "body: cannot be parsed as UTF-8 JSON"
    if exc.status_code == 413 and exc.detail == _LIMITER_413:
        return too_large(request.scope)
    if exc.detail != HTTPStatus(exc.status_code).phrase:
        return str(exc.detail)
    if exc.status_code == 404:
        return f"path: no route for {request.method} {request.url.path}; the API is described at /docs"
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return f"method: {request.method} is not allowed on {request.url.path} (allowed: {allowed})"
    return str(exc.detail)


def install_error_handlers(app: FastAPI) -> None:
    """Every exception a route can raise answers in the one shape (faults: query.observe)."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_validation_problem(e) for e in exc.errors()]
        first = f"{problems[0].field}: {problems[0].error}"
        more = f" (and {len(problems) - 1} more in details)" if len(problems) > 1 else ""
        return error_response(request.scope, 422, first + more, problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(request.scope, exc.status_code, _http_message(request, exc), headers=exc.headers)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return error_response(request.scope, 400, str(exc))

    @app.exception_handler(FingerprintMismatch)
    async def other_model(request: Request, exc: FingerprintMismatch) -> JSONResponse:
        # the alias moved to an index of another model (a reindex): the server must restart with that model
        return error_response(request.scope, 503, str(exc))

    @app.exception_handler(OpenSearchConnectionError)
    async def unreachable(request: Request, exc: OpenSearchConnectionError) -> JSONResponse:
        # the client's message holds the node's URL and the socket error: for the operator's log, not for clients
        log(logging.getLogger(LOGGER), logging.WARNING, "opensearch_unreachable",
            request_id=request_id_of(request.scope), error=str(exc))
        return error_response(request.scope, 503, "OpenSearch did not answer; retry later")

    @app.exception_handler(OpenSearchUnavailable)
    async def partial(request: Request, exc: OpenSearchUnavailable) -> JSONResponse:
        # a shard with no live copy (a node lost): an answer without its hits would be silently wrong
        log(logging.getLogger(LOGGER), logging.WARNING, "opensearch_unavailable",
            request_id=request_id_of(request.scope), error=str(exc.error))
        return error_response(request.scope, 503, "OpenSearch could not search every shard; retry later")


def _error_content() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def document_errors(app: FastAPI) -> None:
    """The OpenAPI description lists, for every operation of every router, the error statuses it can
    answer (by what it takes: a body, parameters, a key) with `ErrorBody` as their schema, in place of
    FastAPI's own validation-error schema; a status a route documents itself keeps its description."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for fastapi_own in ("HTTPValidationError", "ValidationError"):
                schemas.pop(fastapi_own, None)
            _, defs = models_json_schema([(ErrorBody, "validation")], ref_template="#/components/schemas/{model}")
            schemas.update(defs["$defs"])
            for operations in schema["paths"].values():
                for op in operations.values():
                    codes = {500, 503}
                    if "requestBody" in op:
                        codes |= {400, 413, 415, 422}
                    if op.get("parameters"):
                        codes |= {400, 422}
                    if op.get("security"):
                        codes.add(401)
                    responses = op["responses"]
                    for code in sorted(codes):
                        if code == 422 or str(code) not in responses:  # FastAPI's 422 is its own shape
                            responses[str(code)] = {"description": ERROR_DESCRIPTIONS[code]}
                    for code, response in responses.items():
                        if code[0] in "45":
                            response["content"] = _error_content()
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to shape the schema
