"""The edge of every request: its id, its metrics, its log line, and the 500 for a fault.

ASGI middleware around everything the app does (query.api puts only CORS outside it), so a
request refused before any route ran (413, CORS aside) is counted and logged like the rest.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from query.api_metrics import UNMATCHED, ApiMetrics
from query.errors import REQUEST_ID_KEY, error_response
from query.json_log import log

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()  # as ASGI carries header names
# A caller's own request id is kept (a proxy's trace id follows the request into our log) when it is
# short and plain; anything else could forge or flood log lines, so the server makes its own.
_CALLER_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


def _route_of(scope: Scope, request: Scope, routes: Sequence[BaseRoute]) -> str:
    """The template of the route that answered (`scope` after the app ran), else of the route or mount
    whose template the request (`scope` as it came in) matches: a mount sets no route, and a request may
    be answered before routing."""
    route = scope.get("route")
    if route is None:
        route = next((r for r in routes if r.matches(request)[0] is Match.FULL), None)
    return getattr(route, "path", None) or UNMATCHED


class Observe:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics, logger: logging.Logger, routes: Sequence[BaseRoute]):
        self.app, self.metrics, self.logger, self.routes = app, metrics, logger, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(_HEADER_KEY, b"").decode("latin-1")
        request_id = given if _CALLER_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})[REQUEST_ID_KEY] = request_id
        request = dict(scope)  # routing rewrites the scope (a mount its root_path): match the request as it came
        started = time.perf_counter()
        status = 500
        response_started = False

        async def observed(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message["headers"] = [*message.get("headers", []), (_HEADER_KEY, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception:
            log(self.logger, logging.ERROR, "fault", exc_info=True, request_id=request_id, method=request["method"],
                path=request["path"])
            if response_started:
                raise  # the status line is out: only closing the connection is left
            await error_response(scope, 500, "internal error; the server's log has the traceback under this "
                                             "request_id", details=[])(scope, receive, observed)
        finally:
            seconds = time.perf_counter() - started
            route = _route_of(scope, request, self.routes)
            self.metrics.request(request["method"], route, status, seconds)
            client = request.get("client")
            log(self.logger, logging.INFO, "request", request_id=request_id, method=request["method"],
                path=request["path"], route=route, status=status, duration_ms=round(seconds * 1000, 2),
                client=client[0] if client else None)
