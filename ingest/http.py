"""Ingest over HTTP, composed into `grdr serve`: POST /videos queues catalog lines, GET /jobs/{id} follows them.

A request's body is catalog lines (JSON lines, the format of `grdr ingest --videos catalog.jsonl`), each
with its features inline, a features file or a video file (a path or http(s) URL the workers can read).
The lines travel to the workers in the batches' payloads and are validated there by the same parser as
the CLI's, so a bad line is a per-record error in the job's summary, never a refusal of the good ones.
Only problems of the request as a whole are answered at once: no lines, not JSON lines, no worker.
"""
from __future__ import annotations

import email.message
from pathlib import Path
from typing import Optional
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from grdr_plugin.index import FingerprintMismatch
from grdr_plugin.settings import get_settings
from ingest import jobs
from ingest.config import get_ingest_settings
from ingest.sources import plan_lines
from ingest.submit import NoWorkerError, Plan, enqueue, require_worker, worker_command
from ingest.target import prepare_target

# One request is held in memory by the serve process and copied to the broker (and, with the batches'
# results, to the result backend): 32 MiB is ~6,000 videos with a 512-d pooled feature inline, or ~400
# with 16 frames each; more goes in several requests.
MAX_BODY_BYTES = 32 * 1024 * 1024
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
BODY_NAME = "body"  # per-record errors name a line as "body line 7"
ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}  # the API's one shape
EXAMPLE = ('{"video_id": "v1", "title": "a man is cooking", "features": [0.012, -0.034, 0.051]}\n'
           '{"video_id": "v2", "path": "/data/videos/v2.mp4", "tags": ["kitchen"]}\n'
           '{"video_id": "v3", "path": "https://media.example/v3.mp4"}\n')


class Accepted(BaseModel):
    """POST /videos: the job that will ingest the request's lines."""

    job_id: str = Field(description="follow it at GET /jobs/{job_id}")
    videos: int = Field(description="records (non-blank lines) in the request")
    batches: int = Field(description="Celery batches they were queued in")
    index: str
    alias: str


async def _ndjson_body(request: Request) -> bytes:
    """The raw body, when it is sent as JSON lines (a bad line is its own record's error, later)."""
    parsed = email.message.Message()
    parsed["content-type"] = request.headers.get("content-type", "")
    if parsed.get_content_type() not in NDJSON_TYPES:
        sent = request.headers.get("content-type")
        raise HTTPException(415, f"Content-Type: {'missing' if not sent else repr(parsed.get_content_type())}; "
                                 "send one JSON object per line with the header 'Content-Type: application/x-ndjson'")
    return await request.body()


def ingest_router(model_dir: str | Path, alias: str, *, image_encoder: Optional[str] = None,
                  queue: Optional[str] = None, client=None) -> APIRouter:
    """Routes that ingest into `alias` with the model in `model_dir` (the ones `grdr serve` searches with).

    image_encoder: the ONNX encoder for lines that name video files (None: such lines fail, each with a
    reason). queue: the Celery queue (default GRDR_INGEST_QUEUE). client: OpenSearch (default from GRDR_*).
    """
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from ingest.celery_app import app as celery_app

    # the broker (sending, asking workers) and the result backend (jobs, batch states): Redis by default
    unreachable = (OperationalError, RedisConnectionError, RedisTimeoutError)

    settings = get_ingest_settings()
    queue = queue or settings.queue
    client = client or get_settings().opensearch_client()
    router = APIRouter(tags=["ingest"], max_body_size=MAX_BODY_BYTES)  # the app's default is a search's

    def broker_down(exc: Exception) -> HTTPException:
        # no URL for clients (it may hold a password); the error's kind tells an operator where to look
        return HTTPException(503, f"the Celery broker or result backend did not answer ({type(exc).__name__}); "
                                  "retry later")

    @router.post("/videos", status_code=202, response_model=Accepted, openapi_extra={"requestBody": {
        "required": True, "description": f"catalog lines, one JSON object per line, at most {MAX_BODY_BYTES} bytes: "
                                         "`video_id` and either `features` ([D] or [F, D] numbers), `features_path` "
                                         "or `path` (a video file or http(s) URL the workers can read), plus any "
                                         "metadata (title, description, tags, duration_s, ...)",
        "content": {NDJSON_TYPES[0]: {"schema": {"type": "string"}, "example": EXAMPLE}}}},
        responses={409: {"description": "the alias now points at an index of another model", "content": ERROR_CONTENT}})
    def post_videos(response: Response, body: bytes = Depends(_ndjson_body)) -> Accepted:
        """Queue the lines for the ingest workers; 202 with the job to follow at GET /jobs/{job_id}."""
        plan = Plan(plan_lines(body, BODY_NAME, settings.video_batch_size))  # no lines: ValueError, 400
        try:
            require_worker(queue)
            target = prepare_target(client, alias, model_dir)
            sub = enqueue(plan, target, image_encoder=image_encoder, queue=queue)
            job = jobs.Job.of(sub)
            jobs.save(job, celery_app.backend)
        except NoWorkerError:  # the CLI's message names the broker's host; an HTTP client is told less
            raise HTTPException(503, f"no Celery worker consumes the ingest queue {queue!r}, so nothing was queued; "
                                     f"an operator starts one with `{worker_command(queue)}`") from None
        except FingerprintMismatch as exc:  # the alias was moved to another model's index after the server started
            raise HTTPException(409, str(exc)) from None
        except unreachable as exc:
            raise broker_down(exc) from None
        response.headers["Location"] = f"/jobs/{job.job_id}"
        return Accepted(job_id=job.job_id, videos=plan.videos, batches=len(plan.batches), index=target.index,
                        alias=target.alias)

    @router.get("/jobs/{job_id}", response_model=jobs.JobStatus, responses={
        404: {"description": "no such job (unknown, or its results expired)", "content": ERROR_CONTENT}})
    def get_job(job_id: UUID) -> jobs.JobStatus:
        """Progress of a job and the summary of its finished batches (per-record errors name line and field)."""
        try:
            job = jobs.load(str(job_id), celery_app.backend)
            if job is None:
                raise HTTPException(404, f"job_id: no job {job_id} (unknown, or its results expired)")
            return jobs.status(job, celery_app)
        except unreachable as exc:
            raise broker_down(exc) from None

    return router
