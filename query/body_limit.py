"""Cap a request body while it streams in: a body without Content-Length (chunked) is counted, not trusted.

A Content-Length check alone lets a chunked request of any size through, and the framework would
buffer all of it before validation could refuse it.
"""
from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware: 413 once more than ``max_bytes`` of body have arrived (the rest is never read)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # raised where the route reads its body: the app's HTTPException handler answers 413
                    raise HTTPException(413, detail=f"body: at most {self.max_bytes} bytes")
            return message

        await self.app(scope, bounded, send)
