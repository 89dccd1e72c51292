"""Which OpenSearch failures are worth retrying, and how long to wait (exponential backoff, full jitter)."""
from __future__ import annotations

import random
from typing import Optional

from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class TransientOpenSearchError(Exception):
    """OpenSearch was overloaded or unreachable after in-task retries; Celery retries the batch."""


def is_retryable_status(status: Optional[int]) -> bool:
    return status in RETRYABLE_STATUS


def is_retryable(exc: BaseException) -> bool:
    """Connection errors and timeouts (ConnectionError subclasses), 429 and 5xx answers."""
    if isinstance(exc, OSConnectionError):
        return True
    return isinstance(exc, TransportError) and isinstance(exc.status_code, int) and is_retryable_status(exc.status_code)


def backoff_s(attempt: int, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(max, initial * 2^attempt)].

    Jitter keeps many workers that failed together from retrying together.
    """
    cap = min(maximum, initial * (2 ** attempt))
    return (rng or random).uniform(0, cap)
