"""Start a real `celery -A ingest worker` as a subprocess (benchmarks and integration tests).

One solo-pool process on a private queue: what "per worker process" numbers mean, and no
interference with other workers on the same broker.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

READY_TIMEOUT_S = 60.0  # a worker imports Celery and connects in seconds; a minute covers a loaded machine
PING_TIMEOUT_S = 0.5  # per ping round: a ready worker on a local broker answers in milliseconds
STOP_TIMEOUT_S = 20  # after SIGTERM a solo worker finishes its batch's bookkeeping, then gets SIGKILL


@contextmanager
def celery_worker(queue: Optional[str] = None, log_path: Optional[Path] = None,
                  ready_timeout_s: float = READY_TIMEOUT_S,
                  extra_env: Optional[dict[str, str]] = None) -> Iterator[str]:
    """Yield the queue name once the worker answers a ping; stop it (TERM, then KILL) afterwards.

    The caller sends its tasks there (`ingest.submit.enqueue(..., queue=...)`).
    """
    queue = queue or f"grdr-ingest-{uuid.uuid4().hex[:8]}"
    hostname = f"{queue}@%h"
    env = {**os.environ, "GRDR_INGEST_QUEUE": queue, **(extra_env or {})}
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "ingest", "worker", "-P", "solo", "-c", "1",
                             "-Q", queue, "--hostname", hostname, "-l", "info", "--without-gossip",
                             "--without-mingle"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        from ingest.celery_app import app

        deadline = time.monotonic() + ready_timeout_s
        with app.connection_for_write() as conn:  # the error classes only: asked once, released
            broker_errors = conn.connection_errors
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {proc.returncode} (log: {log_path})")
            try:
                replies = app.control.ping(timeout=PING_TIMEOUT_S)
            except broker_errors:
                # A pooled broker connection that predates a Redis restart fails once; the next ping reconnects.
                replies = []
            if any(name.startswith(queue + "@") for r in replies for name in r):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"celery worker not ready after {ready_timeout_s} s (log: {log_path})")
        yield queue
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path:
            log.close()
