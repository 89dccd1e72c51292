"""Load: 8 concurrent HTTP clients against a real `grdr serve` subprocess over a worker-ingested index.

Zero errors, every answer a valid SearchResult, the server's RSS flat after the warm-up, and a clean
shutdown on SIGTERM. A short run with over-long queries shows that failures are counted, not lost.
"""
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from bench.loadtest import LoadConfig, read_texts, run_load
from ingest.submit import enqueue, make_plan, wait
from ingest.target import prepare_target
from query.searcher import MAX_QUERY_CHARS
from tests.conftest import shared_dataset

CLIENTS, LOAD_S, WARMUP_S = 8, 15.0, 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(client, ingest_alias, tiny_model_dir, queue, tmp_path):
    """(url, process, log path) of `grdr serve` over msrvtt's 200 unseen videos; killed if a test left it up."""
    plan = make_plan(dataset=shared_dataset("msrvtt"), batch_size=500, split="unseen")
    summary, _ = wait(enqueue(plan, prepare_target(client, ingest_alias, tiny_model_dir), queue=queue))
    assert summary.indexed == 200 and summary.failed == 0
    url, log = f"http://127.0.0.1:{free_port()}", tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--model", str(tiny_model_dir),
                                 "--index", ingest_alias, "--port", url.rsplit(":", 1)[1]],
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not _healthy(url):
                assert proc.poll() is None, f"grdr serve exited with {proc.returncode}: {log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, f"grdr serve not up after 60 s: {log.read_text()[-2000:]}"
                time.sleep(0.2)
            yield url, proc, log
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_8_clients_get_only_valid_answers_and_the_server_rss_stays_flat(server):
    url, proc, log = server
    texts = read_texts(None, shared_dataset("msrvtt"))
    report = run_load(LoadConfig(url=url, texts=texts, clients=CLIENTS, duration_s=LOAD_S, warmup_s=WARMUP_S))

    assert report.errors == {}, report.error_examples
    assert report.ok == report.requests >= 4 * CLIENTS  # every answer parsed, 1..k hits, sorted, no duplicates
    assert report.throughput_rps > 0 and report.latency_ms["p50_ms"] <= report.latency_ms["p99_ms"]
    mem = report.memory
    assert mem is not None and mem.pid == proc.pid  # /health's pid is the serving process itself
    assert mem.samples >= LOAD_S - 1
    assert abs(mem.growth_mb) < mem.bound_mb and mem.flat, mem
    assert report.passed

    # Failures are counted by status, with the server's own message kept.
    bad = run_load(LoadConfig(url=url, texts=["x" * (MAX_QUERY_CHARS + 1)], clients=2, duration_s=3, warmup_s=0))
    assert bad.ok == 0 and bad.errors == {"status 422": bad.requests} and bad.requests > 0
    assert '"field":"text"' in bad.error_examples["status 422"] and not bad.passed

    proc.terminate()
    # uvicorn finishes in-flight work, runs shutdown, then re-raises SIGTERM (exit status -15)
    assert proc.wait(timeout=20) in (0, -signal.SIGTERM), log.read_text()[-2000:]
    assert "Application shutdown complete" in log.read_text() and "Finished server process" in log.read_text()
