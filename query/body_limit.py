"""Cap a request body: a declared Content-Length over the cap is refused before anything is read,
and every body (chunked ones have no Content-Length) is counted while it streams in.

A Content-Length check alone lets a chunked request of any size through, and the framework would
buffer all of it before validation could refuse it.
"""
from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware: 413 once more than ``max_bytes`` of body have arrived (the rest is never read)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = f"body: at most {self.max_bytes} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await JSONResponse(status_code=413, content={"error": too_big})(scope, receive, send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # raised where the route reads its body: the app's HTTPException handler answers 413
                    raise HTTPException(413, detail=too_big)
            return message

        await self.app(scope, bounded, send)
