"""A test's own local cluster: `grdr cluster start --nodes N` in a private home on its own ports (beside the
default node, which it never touches), driven through the real CLI, reusing the default home's download cache.

Each test module that needs one takes distinct ports (`LocalCluster(http=..., transport=..., redis=...)`), so
modules can run one after another without waiting for ports to free, and beside a developer's cluster."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from opensearchpy import OpenSearch

from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.settings import Settings

GRDR = [sys.executable, "-m", "cli.main"]
REPO = Path(__file__).resolve().parents[2]
HEAP_MB = 512  # three of these fit beside the default node's 1 GiB on a 24 GiB machine
CLI_TIMEOUT_S = 600  # a 3-node start on a loaded 2-core machine takes a minute or two
WORKER_READY_S = 90.0  # a worker imports Celery, torch-free ingest and onnxruntime in seconds; slack for a busy machine


@dataclass
class LocalCluster:
    http: int  # node i answers HTTP on http + i
    transport: int
    redis: int
    heap_mb: int = HEAP_MB
    home: Path = field(default_factory=lambda: _home())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def env(self) -> dict[str, str]:
        """What a grdr process (CLI, Celery worker, query layer) needs to use this cluster and its Redis."""
        return {**os.environ, "GRDR_HOME": str(self.home), "GRDR_OPENSEARCH_PORT": str(self.http),
                "GRDR_OPENSEARCH_TRANSPORT_PORT": str(self.transport), "GRDR_OPENSEARCH_HEAP": f"{self.heap_mb}m",
                "GRDR_REDIS_PORT": str(self.redis), "GRDR_OPENSEARCH_URL": self.url,
                "GRDR_BROKER_URL": f"redis://127.0.0.1:{self.redis}/0",
                "GRDR_RESULT_BACKEND": f"redis://127.0.0.1:{self.redis}/1",
                # the default home's cache: the 200 MB distribution is not downloaded a second time
                "GRDR_CACHE_DIR": str(ClusterPaths.from_settings(Settings()).cache),
                "COLUMNS": "200"}  # rich wraps at 80 columns without a terminal; asserts read whole lines

    def grdr(self, *args: str, timeout: float = CLI_TIMEOUT_S,
             env_extra: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
        return subprocess.run([*GRDR, *map(str, args)], env={**self.env(), **(env_extra or {})}, capture_output=True,
                              text=True, timeout=timeout, cwd=REPO)

    def client(self, node: int = 0, **kwargs) -> OpenSearch:
        # timeout above the health waits (30 s on the server side)
        return OpenSearch(hosts=[f"http://127.0.0.1:{self.http + node}"], timeout=60, **kwargs)

    def all_nodes_client(self, nodes: int, **kwargs) -> OpenSearch:
        """A client that knows every node: a dead node's connection is marked dead and the next one is tried."""
        return OpenSearch(hosts=[f"http://127.0.0.1:{self.http + i}" for i in range(nodes)], timeout=60, **kwargs)

    def start(self, nodes: int) -> None:
        ok(self.grdr("cluster", "start", "--nodes", str(nodes)))

    def status(self) -> dict:
        proc = self.grdr("cluster", "status", "--json")  # exit 1 is expected when no ingest worker serves its Redis
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def node_pids(self) -> list[Optional[int]]:
        return [r["pid"] for r in self.status()["local_nodes"]]

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis}/0"

    @contextmanager
    def worker(self, log_path: Path, *, queue: Optional[str] = None, concurrency: int = 1) -> Iterator[str]:
        """A real `celery -A ingest worker` on this cluster's Redis and OpenSearch, consuming `queue` (default: a
        fresh name; pass it to `grdr ingest` as GRDR_INGEST_QUEUE, e.g. `grdr(..., env_extra=...)`); yields the
        queue once the worker answers a ping on this cluster's broker; TERM (then KILL) afterwards."""
        from celery import Celery

        queue = queue or f"grdr-ingest-{uuid.uuid4().hex[:8]}"
        pool = ["-P", "solo"] if concurrency == 1 else ["-P", "prefork", "-c", str(concurrency)]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "ingest", "worker", *pool, "-Q", queue,
                                     "--hostname", f"{queue}@%h", "-l", "info", "--without-gossip",
                                     "--without-mingle"], env={**self.env(), "GRDR_INGEST_QUEUE": queue},
                                    stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
            try:
                probe = Celery(broker=self.broker_url)
                deadline = time.monotonic() + WORKER_READY_S
                while not any(name.startswith(queue + "@") for r in probe.control.ping(timeout=0.5) for name in r):
                    assert proc.poll() is None, f"worker exited with {proc.returncode}: see {log_path}"
                    assert time.monotonic() < deadline, f"worker not ready after {WORKER_READY_S} s: see {log_path}"
                yield queue
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def stop(self) -> subprocess.CompletedProcess:
        return self.grdr("cluster", "stop")

    def remove(self) -> None:
        """Stop the nodes and Redis, and delete the home; whatever its pid files still name (a stop that failed,
        e.g. a CLI that no longer imports) is SIGKILLed, so no orphan holds the ports of the next run."""
        self.stop()
        for pid in _processes_under(self.home):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.home, ignore_errors=True)


def _home() -> Path:
    # not pytest's tmp_path: its parents are 0700, and under root the node user must traverse the home's parents
    path = Path(tempfile.mkdtemp(prefix="grdr-nodes-"))
    path.chmod(0o755)
    return path


def _processes_under(home: Path) -> list[int]:
    """The live pids the home's pid files name (its nodes, its Redis)."""
    pids = []
    for pid_file in home.rglob("*.pid"):
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):  # gone, or a half-written file
            continue
        pids.append(pid)
    return pids


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc
