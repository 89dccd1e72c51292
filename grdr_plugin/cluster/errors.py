"""The one error type the cluster commands turn into a readable message (never a stack trace)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional


class ClusterError(RuntimeError):
    def __init__(self, message: str, hint: str = "", log: Optional[Path] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.log = log  # a log whose tail helps the user (shown by the command layer)


# What a failed start shows of the node's log: enough lines for a Java stack trace's cause, read from at
# most the last 64 KB (a node log grows to many MB).
TAIL_LINES = 30
TAIL_BYTES = 64 * 1024
# What a failed tool (mvn, opensearch-plugin) shows of its output: the end, where its error is.
OUTPUT_TAIL_LINES = 20


def tail(path: Optional[Path], lines: int = TAIL_LINES) -> list[str]:
    """Last ``lines`` lines of a text file, or nothing when it cannot be read."""
    if path is None:
        return []
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_BYTES))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return data.splitlines()[-lines:]
