"""Start real `celery -A ingest worker` subprocesses (benchmarks and integration tests).

On a private queue by default: no interference with other workers on the same broker. One process of concurrency 1
is a solo-pool worker (what "per worker process" numbers mean, and a SIGKILL of its pid kills the worker holding
the batch); concurrency >= 2 is a prefork worker whose children run batches side by side, and several processes on
one queue are what several machines running workers look like.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

READY_TIMEOUT_S = 60.0  # a worker imports Celery and connects in seconds; a minute covers a loaded machine
PING_TIMEOUT_S = 0.5  # per ping round: a ready worker on a local broker answers in milliseconds
STOP_TIMEOUT_S = 20  # after SIGTERM a worker finishes its batches' bookkeeping, then gets SIGKILL


@dataclass
class Workers:
    queue: str
    procs: list[subprocess.Popen]  # one per worker process (a prefork one's children are its own)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]


def worker_args(queue: str, hostname: str, concurrency: int) -> list[str]:
    """The `celery worker` command line: solo pool for one slot, prefork for several."""
    pool = ["-P", "solo", "-c", "1"] if concurrency == 1 else ["-P", "prefork", "-c", str(concurrency)]
    return [sys.executable, "-m", "celery", "-A", "ingest", "worker", *pool, "-Q", queue, "--hostname", hostname,
            "-l", "info", "--without-gossip", "--without-mingle"]


def _control_app(env: dict[str, str]):
    """-> (a Celery app on the broker the workers use, whether it is a private one to close): the process's own
    app unless `env` names another broker."""
    from grdr_plugin.settings import Settings
    from ingest.celery_app import app, make_app

    url = env.get("GRDR_BROKER_URL")
    if url is None or url == app.conf.broker_url:
        return app, False
    return make_app(Settings(broker_url=url, result_backend=env.get("GRDR_RESULT_BACKEND", url))), True


def _wait_ready(app, procs: list[subprocess.Popen], names: set[str], timeout_s: float, log_path) -> None:
    """Until every worker named in `names` answers a ping; a worker that exits meanwhile fails the start."""
    deadline = time.monotonic() + timeout_s
    with app.connection_for_write() as conn:  # the error classes only: asked once, released
        broker_errors = conn.connection_errors
    while True:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {proc.returncode} (log: {log_path})")
        try:
            replies = app.control.ping(timeout=PING_TIMEOUT_S)
        except broker_errors:
            # A pooled broker connection that predates a Redis restart fails once; the next ping reconnects.
            replies = []
        if names <= {name.split("@", 1)[0] for r in replies for name in r}:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"celery workers not ready after {timeout_s} s (log: {log_path})")


@contextmanager
def celery_workers(queue: Optional[str] = None, *, processes: int = 1, concurrency: int = 1,
                   log_path: Optional[Path] = None, ready_timeout_s: float = READY_TIMEOUT_S,
                   extra_env: Optional[dict[str, str]] = None) -> Iterator[Workers]:
    """Start `processes` workers on `queue` (default: a fresh private one), each running `concurrency` batches at
    once, all logging to `log_path`; yield once every one answers a ping; stop them (TERM, then KILL) afterwards.

    extra_env: the workers' environment on top of this process's (e.g. another cluster's GRDR_* settings).
    """
    queue = queue or f"grdr-ingest-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **(extra_env or {}), "GRDR_INGEST_QUEUE": queue}
    names = [queue if processes == 1 else f"{queue}-{i + 1}" for i in range(processes)]
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    procs: list[subprocess.Popen] = []
    app, private = _control_app(env)
    try:
        for name in names:
            procs.append(subprocess.Popen(worker_args(queue, f"{name}@%h", concurrency), env=env, stdout=log,
                                          stderr=subprocess.STDOUT))
        _wait_ready(app, procs, set(names), ready_timeout_s, log_path)
        yield Workers(queue, procs)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log_path:
            log.close()
        if private:
            app.close()


@contextmanager
def celery_worker(queue: Optional[str] = None, log_path: Optional[Path] = None,
                  ready_timeout_s: float = READY_TIMEOUT_S, extra_env: Optional[dict[str, str]] = None,
                  concurrency: int = 1) -> Iterator[str]:
    """One worker process (`celery_workers`); yield its queue. The caller sends its tasks there
    (`ingest.submit.enqueue(..., queue=...)`)."""
    with celery_workers(queue, concurrency=concurrency, log_path=log_path, ready_timeout_s=ready_timeout_s,
                        extra_env=extra_env) as workers:
        yield workers.queue
