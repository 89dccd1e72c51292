"""The HTTP API's bounds (body size, k, beam size, text length) at and just past each limit, what it
reads a body as, and the API key.

The app runs in-process (TestClient) over a recording stand-in for the Searcher: a refused
request must never reach it, an accepted one reaches it with the values sent.
"""
import io
import json
import logging
from typing import Iterator

import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from pydantic import SecretStr

from grdr_plugin.settings import Settings
from query.api import MAX_API_BEAM, MAX_API_K, MAX_BODY_BYTES, create_app
from query.errors import ErrorBody
from query.http_settings import HttpSettings
from query.json_log import LOGGER, JsonFormatter
from query.searcher import MAX_QUERY_CHARS, SearchResult

KEY = "s3cret-key-for-tests"
ROUTER_LIMIT = 4 * MAX_BODY_BYTES  # a router with a limit of its own (ingest's takes catalog lines)


class RecordingSearcher:
    index = "catalog"

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def search(self, text: str, **kwargs) -> SearchResult:
        self.calls.append({"text": text, **kwargs})
        return SearchResult(hits=[], timings_ms={})

    @property
    def store(self):
        raise RuntimeError("Searcher.store: not connected")  # as a Searcher before its first search


def writes_router() -> APIRouter:
    """Another layer's routes, as `grdr serve` mounts ingest's: a write, a read, a large body."""
    router = APIRouter(max_body_size=ROUTER_LIMIT)

    @router.post("/things", status_code=202)
    async def add(request: Request) -> dict:
        return {"bytes": len(await request.body())}

    @router.get("/things/{name}")
    def read(name: str) -> dict:
        return {"name": name}

    return router


@pytest.fixture
def searcher() -> RecordingSearcher:
    return RecordingSearcher()


@pytest.fixture
def api(searcher) -> TestClient:
    return TestClient(create_app(searcher, settings=Settings(), http=HttpSettings()))


def keyed(searcher, *, for_reads: bool = False) -> TestClient:
    settings = Settings(api_key=SecretStr(KEY), api_key_for_reads=for_reads)
    return TestClient(create_app(searcher, routers=[writes_router()], settings=settings, http=HttpSettings()))


def chunks(body: bytes, size: int = 4096) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked transfer encoding)."""
    for i in range(0, len(body), size):
        yield body[i:i + size]


def padded(n_bytes: int) -> bytes:
    """A valid request body of exactly ``n_bytes`` (JSON whitespace pads it)."""
    body = json.dumps({"text": "a dog runs", "k": 3}).encode()
    return body[:-1] + b" " * (n_bytes - len(body)) + b"}"


def error(r) -> ErrorBody:
    """The response as the one error shape (validated), its request id the header's."""
    assert r.headers["content-type"] == "application/json", r.text[:200]
    body = ErrorBody.model_validate(r.json())
    assert body.status == r.status_code and body.request_id == r.headers["x-request-id"]
    return body


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_up_to_the_limit_is_read_and_one_byte_more_is_413(api, searcher, chunked):
    for size, status in ((MAX_BODY_BYTES, 200), (MAX_BODY_BYTES + 1, 413)):
        body = padded(size)
        content = chunks(body) if chunked else body
        r = api.post("/search", content=content, headers={"content-type": "application/json"})
        assert r.status_code == status, (size, r.text)
    huge = api.post("/search", content=chunks(padded(MAX_BODY_BYTES * 20)) if chunked else padded(MAX_BODY_BYTES * 20),
                    headers={"content-type": "application/json"})
    assert huge.status_code == 413
    assert error(huge).error == f"body: at most {MAX_BODY_BYTES} bytes"
    assert error(huge).details[0].field == "body"
    assert len(searcher.calls) == 1  # only the body at the limit got through


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_router_with_its_own_body_limit_keeps_it_and_its_refusal_has_the_one_shape(searcher, chunked):
    api = keyed(searcher)
    headers = {"X-API-Key": KEY, "content-type": "application/x-ndjson"}
    for size, status in ((ROUTER_LIMIT, 202), (ROUTER_LIMIT + 1, 413)):
        body = b"x" * size
        r = api.post("/things", content=chunks(body) if chunked else body, headers=headers)
        assert r.status_code == status, (size, r.text[:200])
    assert r.json()["error"] == f"body: at most {ROUTER_LIMIT} bytes" and error(r).details[0].field == "body"
    assert api.post("/search", json={"text": "x" * (MAX_BODY_BYTES + 1)}).status_code == 413  # the default stays


@pytest.mark.parametrize("field,limit", [("k", MAX_API_K), ("beam_size", MAX_API_BEAM)])
def test_k_and_beam_size_are_bounded(api, searcher, field, limit):
    assert api.post("/search", json={"text": "a dog", field: limit}).status_code == 200
    assert searcher.calls[-1][field] == limit
    for bad in (0, limit + 1):
        r = api.post("/search", json={"text": "a dog", field: bad})
        assert r.status_code == 422 and error(r).details[0].field == field
    assert len(searcher.calls) == 1


def test_text_length_is_bounded(api, searcher):
    assert api.post("/search", json={"text": "x" * MAX_QUERY_CHARS}).status_code == 200
    r = api.post("/search", json={"text": "x" * (MAX_QUERY_CHARS + 1)})
    assert r.status_code == 422 and error(r).details[0].field == "text"
    assert [len(c["text"]) for c in searcher.calls] == [MAX_QUERY_CHARS]


@pytest.mark.parametrize("value", [True, False, 1, "both", None])
def test_hybrid_is_one_of_the_modes_and_anything_else_is_422_naming_them(api, searcher, value):
    r = api.post("/search", json={"text": "a dog", "hybrid": value})
    assert r.status_code == 422
    detail = error(r).details[0]
    assert detail.field == "hybrid" and all(f"'{m}'" in detail.error for m in ("off", "rrf", "union"))
    for mode in ("off", "rrf", "union"):
        assert api.post("/search", json={"text": "a dog", "hybrid": mode}).status_code == 200
        assert searcher.calls[-1]["hybrid"] == mode


@pytest.mark.parametrize("content_type,named", [
    (None, "missing"),  # curl --data-binary without -H, fetch() with a Blob body
    ("application/x-www-form-urlencoded", "'application/x-www-form-urlencoded'"),  # curl -d's default
    ("text/plain", "'text/plain'"),  # a cross-origin form or fetch() that skips the CORS preflight
])
def test_a_body_not_sent_as_json_is_415_naming_the_header_and_the_fix(api, searcher, content_type, named):
    headers = {"content-type": content_type} if content_type else {}
    r = api.post("/search", content=b'{"text": "a dog"}', headers=headers)
    assert r.status_code == 415
    body = error(r)
    assert body.details[0].field == "Content-Type" and named in body.error
    assert "'Content-Type: application/json'" in body.error
    assert searcher.calls == []
    for json_type in ("application/json", "application/json; charset=utf-8", "application/vnd.api+json"):
        assert api.post("/search", content=b'{"text": "a dog"}', headers={"content-type": json_type}).status_code == 200


def test_without_a_key_nothing_is_asked(searcher):
    api = TestClient(create_app(searcher, routers=[writes_router()], settings=Settings(), http=HttpSettings()))
    assert api.post("/things", content=b"x").status_code == 202
    assert "securitySchemes" not in api.get("/openapi.json").json().get("components", {})


def test_with_a_key_writes_need_it_and_reads_do_not(searcher):
    api = keyed(searcher)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": f"Basic {KEY}"}):
        r = api.post("/things", content=b"x", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
        assert error(r).details[0].field == "Authorization" and KEY not in r.text
    assert api.post("/things", content=b"x", headers={"Authorization": f"Bearer {KEY}"}).status_code == 202
    assert api.post("/things", content=b"x", headers={"X-API-Key": KEY}).status_code == 202
    # reads: GET routes, and POST /search, which only reads
    assert api.get("/things/a").status_code == 200
    assert api.post("/search", json={"text": "a dog"}).status_code == 200
    assert api.get("/").status_code == 200 and api.get("/docs").status_code == 200


def test_with_reads_guarded_every_api_route_needs_the_key_but_the_page_and_docs_do_not(searcher):
    api = keyed(searcher, for_reads=True)
    for call in (lambda h: api.get("/things/a", headers=h), lambda h: api.get("/metrics", headers=h),
                 lambda h: api.post("/search", json={"text": "a"}, headers=h)):
        assert call({}).status_code == 401
        assert call({"X-API-Key": KEY}).status_code == 200
    for open_path in ("/", "/static/app.js", "/docs", "/openapi.json"):
        assert api.get(open_path).status_code == 200, open_path
    schemes = api.get("/openapi.json").json()["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}


def test_the_key_never_reaches_a_log_line(searcher):
    api = keyed(searcher)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger(LOGGER).addHandler(handler)
    try:
        api.post("/things", content=b"x", headers={"Authorization": f"Bearer {KEY}"})
        api.post("/things", content=b"x", headers={"X-API-Key": KEY + "x"})
    finally:
        logging.getLogger(LOGGER).removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["status"] for line in lines] == [202, 401]
    assert KEY not in stream.getvalue()
