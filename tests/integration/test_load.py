"""Load: 8 concurrent HTTP clients against a real `grdr serve` subprocess over a worker-ingested index.

Zero errors, every answer a valid SearchResult, the server's RSS flat after the warm-up, and a clean
shutdown on SIGTERM. A short run with over-long queries shows that failures are counted, not lost:
by the load tester, and by the server's own /metrics and JSON request log, request for request.
"""
import json
import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.loadtest import LoadConfig, read_texts, run_load
from ingest.submit import enqueue, make_plan, wait
from ingest.target import prepare_target
from query.searcher import MAX_QUERY_CHARS
from tests.conftest import shared_dataset
from tests.support.serve_process import grdr_serve

CLIENTS, LOAD_S, WARMUP_S = 8, 15.0, 5.0


@pytest.fixture
def server(client, ingest_alias, tiny_model_dir, queue, tmp_path):
    """(url, process, log path) of `grdr serve` over msrvtt's 200 unseen videos; killed if a test left it up."""
    plan = make_plan(dataset=shared_dataset("msrvtt"), batch_size=500, split="unseen")
    summary, _ = wait(enqueue(plan, prepare_target(client, ingest_alias, tiny_model_dir), queue=queue))
    assert summary.indexed == 200 and summary.failed == 0
    log = tmp_path / "serve.log"
    with grdr_serve(tiny_model_dir, ingest_alias, log) as (url, proc):
        yield url, proc, log


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text; 0 when the server never counted it."""
    return next((s.value for family in text_string_to_metric_families(text) for s in family.samples
                 if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())), 0.0)


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

    # The server counted the same: every search by status, each stage of each answered one, the trie it searched.
    scraped = httpx.get(f"{url}/metrics", timeout=10).text
    search_200 = dict(name="grdr_http_requests_total", method="POST", route="/search", status="200")
    assert metric(scraped, **search_200) == report.ok
    assert metric(scraped, "grdr_http_errors_total", method="POST", route="/search", status="422") == bad.requests
    assert metric(scraped, "grdr_http_errors_total", method="POST", route="/search", status="500") == 0
    for stage in ("encode", "decode", "opensearch", "total"):
        assert metric(scraped, "grdr_search_stage_seconds_count", stage=stage) == report.ok
    assert metric(scraped, "grdr_trie_ids") == httpx.get(f"{url}/health").json()["ids"] > 0

    proc.terminate()
    # uvicorn finishes in-flight work, runs shutdown, then re-raises SIGTERM (exit status -15)
    assert proc.wait(timeout=20) in (0, -signal.SIGTERM), log.read_text()[-2000:]
    text = log.read_text()
    assert "Application shutdown complete" in text and "Finished server process" in text
    # One JSON line per request, with its id; uvicorn's own text access log is off.
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    searches = [line for line in lines if line["event"] == "request" and line["path"] == "/search"]
    assert sum(line["status"] == 200 for line in searches) == report.ok
    assert sum(line["status"] == 422 for line in searches) == bad.requests
    assert len({line["request_id"] for line in searches}) == len(searches)
    assert "POST /search HTTP/1.1" not in text
