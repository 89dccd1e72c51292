"""Video files named by an http(s) URL: fetched by the worker into a temporary file, then decoded like any file.

Decoding straight from the URL would need the server to answer byte ranges (an MP4 whose index sits
at its end is read back to front); a local copy works with any server.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

URL_SCHEMES = ("http", "https")
# A stalled server costs one record, never the batch: far above a healthy connection's pauses.
TIMEOUT_S = 30.0
# A long film at a high bitrate; a larger download is more likely a wrong URL than a video.
MAX_BYTES = 4 * 1024**3
CHUNK_BYTES = 1024 * 1024  # written as it arrives: a video is never held in memory


class DownloadError(Exception):
    """The URL gave no video file; the message is the per-record reason."""


def is_url(value: str) -> bool:
    return urlsplit(value).scheme.lower() in URL_SCHEMES


@contextmanager
def downloaded(url: str, *, timeout_s: float = TIMEOUT_S, max_bytes: int = MAX_BYTES) -> Iterator[Path]:
    """A temporary local copy of the file at url, removed afterwards."""
    import httpx

    suffix = Path(urlsplit(url).path).suffix[:16]  # the decoder guesses nothing from it, but logs read better
    fd, name = tempfile.mkstemp(prefix="grdr-video-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as resp:
                    if resp.status_code != 200:
                        raise DownloadError(f"cannot download {url}: the server answered {resp.status_code}")
                    got = 0
                    for chunk in resp.iter_bytes(CHUNK_BYTES):
                        got += len(chunk)
                        if got > max_bytes:
                            raise DownloadError(f"cannot download {url}: larger than {max_bytes} bytes")
                        out.write(chunk)
            except httpx.HTTPError as exc:
                raise DownloadError(f"cannot download {url}: {type(exc).__name__}: {exc}") from None
        yield Path(name)
    finally:
        os.unlink(name)
