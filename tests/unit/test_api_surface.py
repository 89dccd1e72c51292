"""The HTTP surface of `grdr serve` without a server: the one error shape for every 4xx/5xx, the OpenAPI
description of it, the search page and the docs served with no CDN, /metrics, CORS, the JSON request log,
and the ID browser's route.

The app runs in-process (TestClient) over a stand-in Searcher whose OpenSearch client answers from a
fixed response (tests/integration/test_search_page.py runs the same routes on the real node).
"""
from __future__ import annotations

import io
import json
import logging
import re
import time
from types import SimpleNamespace
from typing import Optional

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from grdr_plugin.model.config import ModelConfig
from grdr_plugin.settings import Settings
from query.api import PAGE_DIR, create_app
from query.errors import ErrorBody, located
from query.executor import OpenSearchUnavailable
from query.http_settings import HttpSettings
from query.id_browser import locate_id
from query.json_log import LOGGER, JsonFormatter
from query.results import Hit
from query.searcher import SearchResult

TIMINGS = {"encode": 5.0, "decode": 2.0, "opensearch": 6.0, "total": 13.5}
SHARING = {"hits": {"total": {"value": 7}, "hits": [
    {"_id": "v1", "_source": {"title": "a man is cooking", "grdr_ids": ["1-2-3", "4-5-6"], "tags": "food",
                              "duration_s": 12.5}},
    {"_id": "v2", "_source": {"grdr_ids": ["1-2-3"]}}]}}


class StubStore:
    def __init__(self) -> None:
        self.generation, self.polled_at, self.refreshes = 3, time.monotonic(), 0
        self.snapshot, self.base_videos = SimpleNamespace(base_counts=[], delta={}), 0  # /health: an empty catalog

    def __len__(self) -> int:
        return 42

    def refresh(self) -> int:
        self.refreshes += 1
        return 0


class StubClient:
    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def search(self, index: str, body: dict) -> dict:
        self.bodies.append({"index": index, **body})
        return SHARING


class StubSearcher:
    index = "catalog"
    native_hybrid = False

    def __init__(self, fault: Optional[Exception] = None) -> None:
        self.fault = fault
        self.runtime = SimpleNamespace(fingerprint="0123456789abcdef",
                                       cfg=ModelConfig(views=4, levels=3, codebook_size=8))
        self.config = SimpleNamespace(max_pool=300)
        self.store = StubStore()
        self.client = StubClient()

    def recall_budget(self) -> int:
        return self.config.max_pool

    def search(self, text: str, **kwargs) -> SearchResult:
        if self.fault is not None:
            raise self.fault
        if text.strip() == "":
            raise ValueError("text: empty (or only whitespace/control characters)")
        return SearchResult(hits=[Hit(video_id="v1", score=0.9, matched_id="1-2-3", title="a man is cooking")],
                            timings_ms=TIMINGS, recalled_ids=300, pool_size=250)


def app_of(searcher=None, *, routers=(), http: Optional[HttpSettings] = None) -> TestClient:
    return TestClient(create_app(searcher or StubSearcher(), routers=routers, settings=Settings(),
                                 http=http or HttpSettings()))


def shaped(r) -> ErrorBody:
    assert r.headers["content-type"] == "application/json", r.text[:200]
    body = ErrorBody.model_validate(r.json())
    assert set(r.json()) == set(ErrorBody.model_fields)
    assert body.status == r.status_code and re.fullmatch(r"[0-9a-f]{32}", body.request_id)
    assert body.request_id == r.headers["x-request-id"]
    return body


# ---- one error shape ----

def test_every_error_status_has_the_one_shape_with_the_field_first():
    api = app_of()
    as_json = {"content-type": "application/json"}
    cases = [  # (response, status, field of the first detail or None)
        (api.post("/search", json={"text": "   "}), 400, "text"),
        (api.post("/search", content=b'{"text": "caf\xe9"}', headers=as_json), 400, "body"),
        (api.get("/nowhere"), 404, "path"),
        (api.delete("/search"), 405, "method"),
        (api.post("/search", json={"text": "x" * 70_000}), 413, "body"),
        (api.post("/search", content=b'{"text": "a"}'), 415, "Content-Type"),
        (api.post("/search", json={"text": "a", "k": "ten", "beam_size": 0}), 422, "k"),
        (api.post("/search", content=b'{"text": ', headers=as_json), 422, "body"),
        (api.get("/ids/1-2-3/videos?size=0"), 422, "size"),
        (app_of(StubSearcher(RuntimeError("boom"))).post("/search", json={"text": "a"}), 500, None),
        (app_of(StubSearcher(OpenSearchConnectionError("N/A", "http://node:9200 refused", None))).post(
            "/search", json={"text": "a"}), 503, None),
    ]
    for r, status, field in cases:
        assert r.status_code == status, (status, r.text[:300])
        body = shaped(r)
        assert [d.field for d in body.details][:1] == ([field] if field else []), body
        if field:
            assert body.error.startswith(f"{field}: ")
    many = cases[6][0].json()
    assert [d["field"] for d in many["details"]] == ["k", "beam_size"] and "(and 1 more in details)" in many["error"]
    assert "boom" not in cases[9][0].text and "node:9200" not in cases[10][0].text  # the log has them, not clients


def test_a_routers_own_errors_get_the_shape_too():
    router = APIRouter()

    @router.get("/jobs/{job_id}")
    def job(job_id: int) -> dict:
        raise ValueError(f"job_id: no job {job_id}")

    api = app_of(routers=[router])
    assert shaped(api.get("/jobs/7")).details[0].model_dump() == {"field": "job_id", "error": "no job 7"}
    assert shaped(api.get("/jobs/seven")).details[0].field == "job_id"


def test_a_message_names_its_field_only_when_it_leads_with_one():
    assert [p.field for p in located("filters.fields.: not a keyword field")] == ["filters.fields."]
    assert located('filters.fields.x"], "script": {"a": 1}: not a keyword field') == []  # the message still says it
    assert located("OpenSearch did not answer; retry later") == []


def test_the_openapi_description_documents_the_shape_for_every_operation():
    router = APIRouter()

    @router.post("/videos", status_code=202, responses={409: {"description": "another model's index"}})
    def videos(body: dict) -> dict:
        return body

    spec = app_of(routers=[router]).get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ErrorBody"]["required"]) == {"status", "error", "details", "request_id"}
    ops = {(path, method): op for path, item in spec["paths"].items() for method, op in item.items()}
    assert ("get", "/") not in ops and ("/search", "post") in ops and ("/ids/{semantic_id}/videos", "get") in ops
    for (path, method), op in ops.items():
        errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
        assert {"500", "503"} <= set(errors), (path, method)
        for r in errors.values():
            assert r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert {"400", "413", "415", "422"} <= set(ops[("/search", "post")]["responses"])
    assert {"400", "422"} <= set(ops[("/ids/{semantic_id}/videos", "get")]["responses"])
    assert ops[("/videos", "post")]["responses"]["409"]["description"] == "another model's index"


# ---- the page and the docs, self-contained ----

def local_refs(html: str) -> list[str]:
    refs = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', html)
    assert refs and all(ref.startswith("/") or ref.startswith("data:") for ref in refs), refs
    return [ref for ref in refs if ref.startswith("/")]


@pytest.mark.parametrize("path", ["/", "/docs", "/redoc"])
def test_the_page_and_the_docs_load_only_from_the_server(path):
    api = app_of()
    r = api.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for ref in local_refs(r.text):
        assert api.get(ref).status_code == 200, ref


def test_the_page_files_name_no_other_host():
    for file in PAGE_DIR.iterdir():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", file.read_text()), file.name


# ---- the ID browser's route ----

def test_ids_videos_lists_the_videos_holding_an_id_or_a_prefix():
    searcher = StubSearcher()
    api = app_of(searcher)
    r = api.get("/ids/1-2-3/videos", params={"size": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["semantic_id"] == "1-2-3" and body["total"] == 7
    assert body["videos"][0] == {"video_id": "v1", "title": "a man is cooking", "semantic_ids": ["1-2-3", "4-5-6"],
                                 "tags": ["food"], "duration_s": 12.5}
    sent = searcher.client.bodies[-1]
    assert sent["index"] == "catalog" and sent["size"] == 5 and sent["query"] == {"term": {"grdr_ids": "1-2-3"}}
    api.get("/ids/01-2/videos")
    assert searcher.client.bodies[-1]["query"] == {"term": {"grdr_prefixes": "1-2"}}


@pytest.mark.parametrize("bad", ["abc", "1-2-3-4", "1-2-8", "1--2", "-", "1-2-x"])
def test_ids_videos_refuses_what_is_not_an_id_of_the_model_naming_the_format(bad):
    r = app_of().get(f"/ids/{bad}/videos")
    assert r.status_code == 400, r.text
    body = shaped(r)
    assert body.details[0].field == "semantic_id" and "e.g. '7-7-7'" in body.error


def test_locate_id_gives_the_field_and_canonical_form():
    assert locate_id("12-40-7", 3, 128) == ("grdr_ids", "12-40-7")
    assert locate_id("012", 3, 128) == ("grdr_prefixes", "12")
    with pytest.raises(ValueError, match="^semantic_id: .*e.g. '12-40-7'"):
        locate_id("12-128-7", 3, 128)


# ---- /metrics ----

def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_and_errors_by_route_and_status_and_time_each_stage():
    searcher = StubSearcher()
    api = app_of(searcher)
    for _ in range(3):
        api.post("/search", json={"text": "a dog"})
    api.post("/search", json={"text": "a", "k": 0})
    api.get("/ids/1-2-3/videos")
    api.get("/random/path/1")
    api.get("/random/path/2")
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = metric_samples(r.text)

    def labels(**kv):
        return tuple(sorted(kv.items()))

    assert m[("grdr_http_requests_total", labels(method="POST", route="/search", status="200"))] == 3
    assert m[("grdr_http_requests_total", labels(method="POST", route="/search", status="422"))] == 1
    assert m[("grdr_http_errors_total", labels(method="POST", route="/search", status="422"))] == 1
    assert ("grdr_http_errors_total", labels(method="POST", route="/search", status="200")) not in m
    assert m[("grdr_http_requests_total", labels(method="GET", route="/ids/{semantic_id}/videos", status="200"))] == 1
    assert m[("grdr_http_requests_total", labels(method="GET", route="unmatched", status="404"))] == 2  # no path label
    assert m[("grdr_http_request_seconds_count", labels(method="POST", route="/search"))] == 4
    for stage, ms in TIMINGS.items():
        assert m[("grdr_search_stage_seconds_count", labels(stage=stage))] == 3
        assert m[("grdr_search_stage_seconds_sum", labels(stage=stage))] == pytest.approx(3 * ms / 1000)
    assert m[("grdr_trie_ids", ())] == 42 and m[("grdr_trie_generation", ())] == 3
    assert 0 <= m[("grdr_registry_poll_age_seconds", ())] < 60
    assert searcher.store.refreshes == 1  # the scrape polled the registry
    assert m[("process_resident_memory_bytes", ())] > 0


# ---- CORS ----

def test_cors_is_off_unless_origins_are_configured():
    plain = app_of().get("/health", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in plain.headers

    api = app_of(http=HttpSettings(cors_origins=["https://app.example"]))
    ok = api.get("/health", headers={"Origin": "https://app.example"})
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in ok.headers["access-control-expose-headers"].lower()
    preflight = api.options("/search", headers={"Origin": "https://app.example",
                                                "Access-Control-Request-Method": "POST",
                                                "Access-Control-Request-Headers": "content-type, x-api-key"})
    assert preflight.status_code == 200 and "POST" in preflight.headers["access-control-allow-methods"]
    refused = api.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in refused.headers
    error = api.get("/nowhere", headers={"Origin": "https://app.example"})  # a page can read the error too
    assert error.status_code == 404 and error.headers["access-control-allow-origin"] == "https://app.example"


@pytest.mark.parametrize("value", ["https://app.example/", "app.example", "https://app.example/path"])
def test_a_cors_origin_that_is_not_one_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("GRDR_CORS_ORIGINS", f"https://ok.example,{value}")
    with pytest.raises(ValidationError, match="GRDR_CORS_ORIGINS: .* is not an origin"):
        HttpSettings()


def test_cors_origins_are_read_comma_separated(monkeypatch):
    monkeypatch.setenv("GRDR_CORS_ORIGINS", " https://a.example , http://127.0.0.1:3000,")
    assert HttpSettings().cors_origins == ["https://a.example", "http://127.0.0.1:3000"]


# ---- the JSON request log ----

@pytest.fixture
def log_lines():
    """The JSON lines `grdr.http` writes during the test, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER)
    level = logger.level  # an app made with access_log "off" raises it
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_each_request_is_one_json_line_and_a_fault_its_traceback(log_lines):
    api = app_of()
    ok = api.post("/search", json={"text": "a dog"}, headers={"X-Request-ID": "trace-7.a_b"})
    forged = api.get("/health", headers={"X-Request-ID": "x\n{\"level\": \"error\"}"})
    app_of(StubSearcher(RuntimeError("boom"))).post("/search", json={"text": "a"})
    lines = log_lines()
    request = lines[0]
    assert ok.headers["x-request-id"] == "trace-7.a_b" == request["request_id"]  # a caller's plain id is kept
    assert {k: request[k] for k in ("level", "event", "method", "path", "route", "status")} == {
        "level": "info", "event": "request", "method": "POST", "path": "/search", "route": "/search", "status": 200}
    assert request["duration_ms"] >= 0 and request["ts"].endswith("Z")
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["x-request-id"])  # anything else is replaced
    fault, answered = lines[2], lines[3]
    assert fault["event"] == "fault" and fault["level"] == "error" and "RuntimeError: boom" in fault["exception"]
    assert answered["status"] == 500 and answered["request_id"] == fault["request_id"]


def test_a_503_logs_what_opensearch_said_and_answers_without_it(log_lines):
    down = OpenSearchConnectionError("N/A", "http://node:9200 refused", None)
    r = app_of(StubSearcher(down)).post("/search", json={"text": "a"})
    warning = next(line for line in log_lines() if line["event"] == "opensearch_unreachable")
    assert warning["request_id"] == r.headers["x-request-id"] and "node:9200 refused" in warning["error"]
    assert "node:9200" not in r.text


def test_a_search_that_lost_shards_is_a_503_not_a_partial_answer(log_lines):
    lost = OpenSearchUnavailable(503, "OpenSearch could not answer 1 of 1 searches in full after 3 tries: "
                                      "1 of 3 shards failed: node_disconnected_exception: [grdr-node-2] disconnected")
    r = app_of(StubSearcher(lost)).post("/search", json={"text": "a"})
    assert r.status_code == 503 and r.json()["error"] == "OpenSearch could not search every shard; retry later"
    warning = next(line for line in log_lines() if line["event"] == "opensearch_unavailable")
    assert warning["request_id"] == r.headers["x-request-id"] and "3 tries" in warning["error"]


def test_access_log_off_keeps_faults_only(log_lines):
    api = app_of(StubSearcher(RuntimeError("boom")), http=HttpSettings(access_log="off"))
    api.get("/health")
    api.post("/search", json={"text": "a"})
    assert [line["event"] for line in log_lines()] == ["fault"]
