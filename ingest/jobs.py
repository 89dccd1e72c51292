"""Ingest jobs started over HTTP: a job is the Celery group of one request's batches.

What a job is (its batches, their sizes, where it writes) is kept in the Celery result backend beside
the batches' own results, so any `grdr serve` process answers for any job, across restarts, for as
long as the results live (celery_app.RESULT_TTL_S). Progress is read from the batches' states.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal, Optional

from pydantic import BaseModel, Field

from ingest.config import get_ingest_settings
from ingest.schemas import Summary
from ingest.submit import Submitted, batch_summary

KEY_PREFIX = "grdr-ingest-job-"  # beside Celery's own celery-task-meta-* keys

JobState = Literal["queued", "running", "done"]


class JobBatch(BaseModel):
    task_id: str
    videos: int = Field(ge=0, description="records in the batch")


class Job(BaseModel):
    """What POST /videos queued: stored when the batches are sent."""

    job_id: str
    index: str
    alias: str
    videos: int = Field(ge=0)
    batches: list[JobBatch]
    submitted_at: datetime

    @classmethod
    def of(cls, sub: Submitted) -> "Job":
        batches = [JobBatch(task_id=r.id, videos=n) for r, n in zip(sub.results, sub.sizes)]
        return cls(job_id=sub.group_id, index=sub.target.index, alias=sub.target.alias, videos=sum(sub.sizes),
                   batches=batches, submitted_at=datetime.now(timezone.utc))


class BatchCounts(BaseModel):
    queued: int = Field(description="not taken by a worker yet")
    running: int = Field(description="taken by a worker (or waiting to be retried)")
    succeeded: int
    failed: int = Field(description="failed for good: their videos count as failed")


class JobStatus(BaseModel):
    """GET /jobs/{id}: progress, and the summary of the batches done so far (as `grdr ingest --wait --json`)."""

    job_id: str
    state: JobState = Field(description="queued: no batch taken yet; running; done: every batch finished")
    videos: int = Field(description="records in the request")
    videos_done: int = Field(description="records of finished batches (indexed, updated or failed)")
    batches: BatchCounts
    index: str
    alias: str
    submitted_at: datetime
    summary: Summary


def save(job: Job, backend) -> None:
    """Store the job in the Celery result backend (it expires with the batches' results)."""
    backend.set(KEY_PREFIX + job.job_id, job.model_dump_json())


def load(job_id: str, backend) -> Optional[Job]:
    raw = backend.get(KEY_PREFIX + job_id)
    return None if raw is None else Job.model_validate_json(raw)


def status(job: Job, app, max_errors: Optional[int] = None) -> JobStatus:
    """Read each batch's state from the result backend; finished batches' summaries are merged in plan order.

    max_errors: per-record errors kept (default GRDR_INGEST_MAX_ERRORS_REPORTED; all are in the errors index).
    """
    from celery.result import AsyncResult

    if max_errors is None:
        max_errors = get_ingest_settings().max_errors_reported
    counts = dict(queued=0, running=0, succeeded=0, failed=0)
    total, done = Summary(), 0
    for i, batch in enumerate(job.batches):
        result = AsyncResult(batch.task_id, app=app)
        if result.ready():
            counts["succeeded" if result.successful() else "failed"] += 1
            total = total.merge(batch_summary(result, i, len(job.batches), batch.videos), max_errors)
            done += batch.videos
        else:
            counts["queued" if result.state == "PENDING" else "running"] += 1
    finished = counts["succeeded"] + counts["failed"]
    state: JobState = ("done" if finished == len(job.batches)
                       else "queued" if counts["queued"] == len(job.batches) else "running")
    return JobStatus(job_id=job.job_id, state=state, videos=job.videos, videos_done=done,
                     batches=BatchCounts(**counts), index=job.index, alias=job.alias,
                     submitted_at=job.submitted_at, summary=total)
