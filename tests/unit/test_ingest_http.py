"""Ingest jobs and the HTTP routes without services: Celery's in-memory result backend holds real task states;
the routes' refusals that come before any broker call are checked through FastAPI's TestClient."""
import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import pytest
from celery import Celery
from fastapi import FastAPI
from fastapi.testclient import TestClient

from grdr_plugin.settings import Settings
from ingest import jobs
from ingest.http import MAX_BODY_BYTES, ingest_router
from query.api import MAX_BODY_BYTES as SEARCH_BODY_BYTES
from query.api import create_app
from query.errors import install_error_handlers
from query.searcher import Searcher


@pytest.fixture
def celery_app():
    return Celery("grdr-test", broker="memory://", backend="cache+memory://")


def _job(sizes):
    return jobs.Job(job_id="g1", index="cat-v000001", alias="cat", videos=sum(sizes),
                    batches=[jobs.JobBatch(task_id=f"t{i}", videos=n) for i, n in enumerate(sizes)],
                    submitted_at=datetime(2025, 1, 2, tzinfo=timezone.utc))


def test_a_job_is_stored_in_the_result_backend_and_read_back(celery_app):
    job = _job([16, 4])
    jobs.save(job, celery_app.backend)
    assert jobs.load("g1", celery_app.backend) == job
    assert jobs.load("g2", celery_app.backend) is None


def test_job_status_follows_the_batches_and_merges_finished_summaries_in_order(celery_app):
    backend = celery_app.backend
    job = _job([16, 16, 4])
    first = jobs.status(job, celery_app)
    assert (first.state, first.videos, first.videos_done) == ("queued", 36, 0)
    assert first.batches.model_dump() == {"queued": 3, "running": 0, "succeeded": 0, "failed": 0}

    backend.store_result("t1", None, "STARTED")
    backend.store_result("t2", {"indexed": 3, "failed": 1, "errors": [{"video_id": "body line 34", "reason": "r2"}],
                                "timings_s": {"encode": 0.5}}, "SUCCESS")
    mid = jobs.status(job, celery_app)
    assert (mid.state, mid.videos_done, mid.summary.indexed, mid.summary.failed) == ("running", 4, 3, 1)
    assert mid.batches.model_dump() == {"queued": 1, "running": 1, "succeeded": 1, "failed": 0}

    first_batch = {"indexed": 10, "updated": 5, "failed": 1, "errors": [{"video_id": "v9", "reason": "r0"}],
                   "timings_s": {"encode": 1.0}}
    backend.store_result("t0", first_batch, "SUCCESS")
    backend.mark_as_failure("t1", RuntimeError("OpenSearch unreachable"))
    done = jobs.status(job, celery_app, max_errors=2)
    assert (done.state, done.videos_done) == ("done", 36)
    assert done.batches.model_dump() == {"queued": 0, "running": 0, "succeeded": 2, "failed": 1}
    s = done.summary
    assert (s.indexed, s.updated, s.failed, s.timings_s) == (13, 5, 18, {"encode": 1.5})
    assert [(e.video_id, e.reason) for e in s.errors] == [
        ("v9", "r0"), ("batch 2 of 3", "batch failed: RuntimeError('OpenSearch unreachable')")]  # capped at 2
    assert json.loads(done.model_dump_json())["summary"]["failed"] == 18


@pytest.fixture
def api(tmp_path):
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(ingest_router(tmp_path / "model", "cat"))
    return TestClient(app)


@pytest.mark.parametrize("headers, said", [
    ({}, "Content-Type: missing;"),
    ({"Content-Type": "application/json"}, "Content-Type: 'application/json';"),
    ({"Content-Type": "text/plain"}, "Content-Type: 'text/plain';"),
])
def test_a_body_not_sent_as_json_lines_is_refused_with_the_header_to_send(api, headers, said):
    r = api.post("/videos", content=b'{"video_id": "a", "features": [1.0]}\n', headers=headers)
    assert r.status_code == 415
    assert r.json()["error"] == (f"{said} send one JSON object per line with the header "
                                 "'Content-Type: application/x-ndjson'")
    assert r.json()["details"][0]["field"] == "Content-Type"


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "application/jsonl; charset=utf-8"])
def test_a_request_without_lines_is_a_400_naming_the_body(api, content_type):
    r = api.post("/videos", content=b"\n\n", headers={"Content-Type": content_type})
    assert r.status_code == 400
    assert r.json()["error"].startswith("body: no catalog lines; send one JSON object per line")


def test_a_job_id_that_is_not_a_celery_id_is_a_422(api):
    r = api.get("/jobs/not-a-job")
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "job_id"


def test_openapi_describes_the_json_lines_body_and_the_job(api):
    spec = api.get("/openapi.json").json()
    post = spec["paths"]["/videos"]["post"]
    body = post["requestBody"]
    assert "application/x-ndjson" in body["content"] and str(MAX_BODY_BYTES) in body["description"]
    assert set(post["responses"]) >= {"202", "409"}
    assert "JobStatus" in spec["components"]["schemas"] and "404" in spec["paths"]["/jobs/{job_id}"]["get"]["responses"]


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    """The app as `grdr serve` composes it (searcher not connected: nothing here reaches OpenSearch), with a key."""
    app = create_app(Searcher(tiny_model_dir, "cat"), routers=[ingest_router(tiny_model_dir, "cat")],
                     settings=Settings(api_key="k1", api_key_for_reads=True))
    return TestClient(app)


def test_in_the_served_app_writes_and_reads_need_the_key(served):
    body = {"content": b'{"video_id": "a", "features": [1.0]}\n', "headers": {"Content-Type": "application/x-ndjson"}}
    r = served.post("/videos", **body)
    assert r.status_code == 401 and r.json()["error"].startswith("Authorization: this request needs the API key")
    assert served.get(f"/jobs/{'0' * 32}").status_code == 401  # GRDR_API_KEY_FOR_READS
    r = served.post("/videos", content=b"\n", headers={**body["headers"], "X-API-Key": "k1"})
    assert r.status_code == 400  # past the key, to the route


def test_in_the_served_app_videos_take_bodies_of_up_to_its_own_limit(served):
    headers = {"Content-Type": "application/x-ndjson", "X-API-Key": "k1"}
    r = served.post("/videos", content=b" " * (SEARCH_BODY_BYTES * 4) + b"\n", headers=headers)
    assert r.status_code == 400 and r.json()["error"].startswith("body: no catalog lines")  # read whole
    r = served.post("/videos", content=b"\n" * (MAX_BODY_BYTES + 1), headers=headers)
    assert r.status_code == 413 and r.json()["status"] == 413


BROKER_DOWN = textwrap.dedent("""
    import json, uuid
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from ingest.http import ingest_router
    from query.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(ingest_router("/no/model", "cat"))
    api = TestClient(app)
    posted = api.post("/videos", content=b'{"video_id": "a", "features": [1.0]}\\n',
                      headers={"Content-Type": "application/x-ndjson"})
    read = api.get(f"/jobs/{uuid.uuid4()}")
    print(json.dumps([[r.status_code, r.json()["error"]] for r in (posted, read)]))
""")


def test_an_unreachable_broker_is_a_503_that_names_no_url():
    # the Celery app reads GRDR_BROKER_URL when imported: a fresh process, pointed at a port nothing listens on
    env = {**os.environ, "GRDR_BROKER_URL": "redis://:secret@127.0.0.1:1/0",
           "GRDR_RESULT_BACKEND": "redis://:secret@127.0.0.1:1/1"}
    out = subprocess.run([sys.executable, "-c", BROKER_DOWN], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    (posted, post_error), (read, read_error) = json.loads(out.stdout.strip().splitlines()[-1])
    assert (posted, read) == (503, 503)
    assert post_error == "the Celery broker or result backend did not answer (OperationalError); retry later"
    assert read_error == "the Celery broker or result backend did not answer (ConnectionError); retry later"
