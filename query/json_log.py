"""Structured logs of the HTTP API: one JSON object per line on stderr, under the logger `grdr.http`.

    {"ts": "2025-01-01T12:00:00.123Z", "level": "info", "event": "request", "request_id": "5f0c...",
     "method": "POST", "path": "/search", "route": "/search", "status": 200, "duration_ms": 14.2, "client": "127.0.0.1"}

Events: `request` (every request, level info; GRDR_ACCESS_LOG=off silences them), `fault` (an
exception no handler took: the 500's traceback, level error), `opensearch_unreachable` and
`opensearch_unavailable` (a 503: no node answered; a shard had no live copy; level warning).
Headers and bodies are never logged: they may hold the API key or a user's query.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

LOGGER = "grdr.http"
FIELDS = "fields"  # the `extra` key whose dict becomes the line's own keys


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {"ts": ts.replace("+00:00", "Z"), "level": record.levelname.lower(),
                                "event": record.getMessage(), **getattr(record, FIELDS, {})}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def http_logger(access_log: str) -> logging.Logger:
    """The API's logger, writing JSON lines to stderr; `access_log` "off" keeps only warnings and errors."""
    logger = logging.getLogger(LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False  # uvicorn's or the root's text handlers would print each line a second time
    logger.setLevel(logging.INFO if access_log == "json" else logging.WARNING)
    return logger


def log(logger: logging.Logger, level: int, event: str, *, exc_info: bool = False, **fields: Any) -> None:
    """One line: `event` plus `fields` (and the current exception's traceback with exc_info)."""
    logger.log(level, event, extra={FIELDS: fields}, exc_info=exc_info)
