"""Bulk indexing rules with a scripted client: created vs updated, retries, per-record failures.

(Unit level only: the integration tests run the same code against the real node.)
"""
import json
import random

import pytest
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError
from opensearchpy.serializer import JSONSerializer

from ingest.indexer import RetryPolicy, bulk_index
from ingest.retry import TransientOpenSearchError, backoff_s, is_retryable


class ScriptedBulkClient:
    """Answers each bulk request from a script: an exception, or a status per document id."""

    def __init__(self, script):
        self.script = list(script)
        self.transport = type("T", (), {"serializer": JSONSerializer()})()
        self.requests = []

    def bulk(self, body=None, **_):
        ids = [json.loads(line)["index"]["_id"] for line in body.splitlines()[::2]]
        self.requests.append(ids)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        items = []
        for i in ids:
            status = step(i)
            item = {"_id": i, "status": status}
            if status < 300:
                item["result"] = "created" if status == 201 else "updated"
            else:
                kind = "mapper_parsing_exception" if status == 400 else "es_rejected_execution_exception"
                item["error"] = {"type": kind, "reason": f"doc {i}"}
            items.append({"index": item})
        return {"errors": any(it["index"]["status"] >= 300 for it in items), "items": items}


def _run(client, n=6, **kw):
    ids = [f"v{i}" for i in range(n)]
    policy = RetryPolicy(max_retries=kw.pop("max_retries", 3), initial_s=0.01, max_s=0.02, sleep=lambda s: None)
    return bulk_index(client, "idx", ids, ['{"video_id":"x"}'] * n, chunk_size=kw.pop("chunk", 4), policy=policy)


def test_created_updated_and_rejected_are_told_apart_and_429_retried():
    first = {"v0": 201, "v1": 200, "v2": 429, "v3": 400, "v4": 503, "v5": 201}
    client = ScriptedBulkClient([first.get, first.get, lambda i: 201])
    out = _run(client)
    assert sorted(out.created) == [0, 2, 4, 5] and out.updated == [1]
    assert out.failed == [(3, "rejected by OpenSearch (400): mapper_parsing_exception: doc v3")]
    assert client.requests[-1] == ["v2", "v4"]  # only the retryable ones went again


def test_connection_error_retries_the_unanswered_documents():
    client = ScriptedBulkClient([lambda i: 201, OSConnectionError("N/A", "refused", None), lambda i: 201])
    out = _run(client, chunk=4)
    assert sorted(out.created) == list(range(6))
    assert client.requests == [["v0", "v1", "v2", "v3"], ["v4", "v5"], ["v4", "v5"]]


def test_retries_exhausted_raise_for_celery_and_other_errors_propagate():
    with pytest.raises(TransientOpenSearchError, match="6 documents"):
        _run(ScriptedBulkClient([TransportError(503, "unavailable")] * 3), max_retries=2, chunk=10)
    with pytest.raises(TransportError):
        _run(ScriptedBulkClient([TransportError(403, "forbidden")]))


def test_retry_classification_and_full_jitter_bounds():
    assert is_retryable(TransportError(429, "x")) and is_retryable(TransportError(502, "x"))
    assert is_retryable(OSConnectionError("N/A", "x", None))
    assert not is_retryable(TransportError(400, "x")) and not is_retryable(ValueError())
    rng = random.Random(0)
    waits = [backoff_s(a, 0.5, 4.0, rng) for a in range(8) for _ in range(50)]
    assert all(0 <= w <= 4.0 for w in waits) and max(waits) > 3.0 and len(set(waits)) > 300
