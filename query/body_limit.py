"""Request body limits: FastAPI's `max_body_size` does the counting; this puts its refusals in the one error shape.

query.api gives each router a limit (64 KiB by default; a router built with its own
`APIRouter(max_body_size=...)` keeps its own). FastAPI refuses a declared Content-Length over the
limit before reading anything, and counts every other body as it streams in (a chunked body has
no Content-Length), so the framework never buffers more than the limit. A body over the limit met
while streaming raises an HTTPException that query.errors answers; a declared one is answered by
the limiter itself in plain text, which `ShapedBodyLimit` replaces with the one error shape.
"""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from query.errors import error_response, too_large


def _plain_413(message: Message) -> bool:
    headers = dict(message.get("headers") or [])
    return message["status"] == 413 and headers.get(b"content-type", b"").startswith(b"text/plain")


class ShapedBodyLimit:
    """ASGI middleware around every router's limiter: a plain-text 413 leaves as an `ErrorBody`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def shaped(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and _plain_413(message):
                replaced = True
                await error_response(scope, 413, too_large(scope))(scope, receive, send)
            elif not replaced:  # the plain response's body is dropped with its start
                await send(message)

        await self.app(scope, receive, shaped)
