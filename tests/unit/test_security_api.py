"""The HTTP API's bounds (body size, k, beam size, text length), at and just past each limit.

The app runs in-process (TestClient) over a recording stand-in for the Searcher: a refused
request must never reach it, an accepted one reaches it with the values sent.
"""
import json
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from query.api import MAX_API_BEAM, MAX_API_K, MAX_BODY_BYTES, create_app
from query.searcher import MAX_QUERY_CHARS, SearchResult


class RecordingSearcher:
    index = "catalog"

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def search(self, text: str, **kwargs) -> SearchResult:
        self.calls.append({"text": text, **kwargs})
        return SearchResult(hits=[], timings_ms={})


@pytest.fixture
def searcher() -> RecordingSearcher:
    return RecordingSearcher()


@pytest.fixture
def api(searcher) -> TestClient:
    return TestClient(create_app(searcher))


def chunks(body: bytes, size: int = 4096) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked transfer encoding)."""
    for i in range(0, len(body), size):
        yield body[i:i + size]


def padded(n_bytes: int) -> bytes:
    """A valid request body of exactly ``n_bytes`` (JSON whitespace pads it)."""
    body = json.dumps({"text": "a dog runs", "k": 3}).encode()
    return body[:-1] + b" " * (n_bytes - len(body)) + b"}"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_up_to_the_limit_is_read_and_one_byte_more_is_413(api, searcher, chunked):
    for size, status in ((MAX_BODY_BYTES, 200), (MAX_BODY_BYTES + 1, 413)):
        body = padded(size)
        content = chunks(body) if chunked else body
        r = api.post("/search", content=content, headers={"content-type": "application/json"})
        assert r.status_code == status, (size, r.text)
    assert api.post("/search", content=chunks(padded(MAX_BODY_BYTES * 20)),
                    headers={"content-type": "application/json"}).json() == {
        "error": f"body: at most {MAX_BODY_BYTES} bytes"}
    assert len(searcher.calls) == 1  # only the body at the limit got through


@pytest.mark.parametrize("field,limit", [("k", MAX_API_K), ("beam_size", MAX_API_BEAM)])
def test_k_and_beam_size_are_bounded(api, searcher, field, limit):
    assert api.post("/search", json={"text": "a dog", field: limit}).status_code == 200
    assert searcher.calls[-1][field] == limit
    for bad in (0, limit + 1):
        r = api.post("/search", json={"text": "a dog", field: bad})
        assert r.status_code == 422 and r.json()["details"][0]["field"] == field
    assert len(searcher.calls) == 1


def test_text_length_is_bounded(api, searcher):
    assert api.post("/search", json={"text": "x" * MAX_QUERY_CHARS}).status_code == 200
    r = api.post("/search", json={"text": "x" * (MAX_QUERY_CHARS + 1)})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "text"
    assert [len(c["text"]) for c in searcher.calls] == [MAX_QUERY_CHARS]


@pytest.mark.parametrize("value", [True, False, 1, "both", None])
def test_hybrid_is_one_of_the_modes_and_anything_else_is_422_naming_them(api, searcher, value):
    r = api.post("/search", json={"text": "a dog", "hybrid": value})
    assert r.status_code == 422
    detail = r.json()["details"][0]
    assert detail["field"] == "hybrid" and all(f"'{m}'" in detail["error"] for m in ("off", "rrf", "union"))
    for mode in ("off", "rrf", "union"):
        assert api.post("/search", json={"text": "a dog", "hybrid": mode}).status_code == 200
        assert searcher.calls[-1]["hybrid"] == mode
