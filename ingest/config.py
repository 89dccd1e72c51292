"""The ingest workers' knobs, in one place: batch sizes, retries, queue, error index (``GRDR_INGEST_*``).

Broker, result backend and OpenSearch come from ``grdr_plugin.settings.Settings`` (every layer
shares them); model, index and cluster code never read what is here.
"""
from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings

from grdr_plugin.settings import env_names


class IngestSettings(BaseSettings):
    model_config = env_names("GRDR_INGEST_")

    queue: str = Field("grdr-ingest", description="Celery queue the ingest tasks go to")
    errors_index: str = Field("grdr-ingest-errors", description="index that keeps every per-record failure")
    # A summary travels through the result backend: a bounded list keeps a batch of bad records from bloating it.
    max_errors_reported: int = Field(
        1000, ge=0, description="per-record errors returned in a summary (all are in the errors index)")
    # 5000 videos per task and 2500 documents per bulk request: the pair docs/INGEST.md measured and recommends
    # (bigger tasks amortise the refresh and the registry publish); a task must finish well inside
    # visibility_timeout_s.
    batch_size: int = Field(5000, ge=1, description="videos per Celery task")
    # read from GRDR_BULK_CHUNK_SIZE (no INGEST_ in the name), the documented variable
    bulk_chunk_size: int = Field(2500, ge=1, validation_alias="GRDR_BULK_CHUNK_SIZE",
                                 description="documents per bulk request (GRDR_BULK_CHUNK_SIZE)")
    # Video files are decoded and embedded frame by frame (seconds per video on a CPU): small tasks spread a
    # run over every worker and keep a retried task short.
    video_batch_size: int = Field(16, ge=1, description="videos per Celery task when ingesting video files")
    # Retries of one bulk request inside a task, before Celery retries the whole task: 5 retries with full-jitter
    # backoff from 0.5 s (doubling, each pause capped at bulk_max_backoff_s) wait up to ~15 s in all, enough
    # for a write queue to drain; a longer outage is left to the task's own retries.
    bulk_max_retries: int = Field(5, ge=0)
    bulk_initial_backoff_s: float = Field(0.5, gt=0)
    bulk_max_backoff_s: float = Field(30.0, gt=0)
    # Celery-level retries of a whole batch (idempotent: video_id is the document _id). Celery waits up to
    # 1, 2, 4, 8, 16 s (full jitter) between them; task_backoff_max_s caps that wait if more retries are set.
    task_max_retries: int = Field(5, ge=0)
    task_backoff_max_s: int = Field(120, ge=1)
    # A batch whose worker died (SIGKILL, OOM, lost machine) is redelivered by Redis after this long
    # without an ack. It must exceed the slowest batch, or a batch still running is delivered twice
    # (harmless, the batch is idempotent, but the work is done again).
    visibility_timeout_s: int = Field(3600, ge=1, description="seconds before Redis redelivers an unacknowledged batch")
    # One thread per process: workers scale by processes, and more threads each would oversubscribe the cores.
    onnx_threads: int = Field(1, ge=1, description="onnxruntime threads per worker process")
    # 64 frames (4 videos of 16) per call amortise onnxruntime's per-call cost; at 224 px that is ~40 MB of pixels.
    image_batch_size: int = Field(64, ge=1, description="frames per image-encoder call when ingesting video files")
    # Vector components are written with this many significant digits (float32 carries ~7): half the
    # bytes of repr() and formatted in C by numpy, which is what keeps ingest above 2,000 videos/s.
    vector_digits: int = Field(7, ge=3, le=9)
    # `grdr ingest --wait` asks the broker whether a worker is still there once no batch has finished for this
    # long: soon enough that a run whose workers are gone stops instead of sitting at 0 %, rare enough that the
    # one-second question costs nothing.
    worker_wait_s: float = Field(30.0, gt=0, description="seconds without a finished batch before `grdr ingest "
                                                         "--wait` checks that a worker is still there")
    # `grdr ingest --wait` sends a batch again (same task id: a batch is idempotent) when no batch has finished for
    # this long, nothing waits in the queue and no live worker holds it: the broker lost it (a machine crash before
    # its write reached disk, a failover, a purge). Two minutes: a broker restart and the workers' reconnect (seconds)
    # are over before anything is judged lost, and a busy `-P solo` worker, which cannot say what it holds, rarely
    # runs one batch that long (its batch would run twice, harmlessly); it is the most a lost batch delays a run.
    resend_after_s: float = Field(120.0, gt=0, description="seconds without a finished batch before `grdr ingest "
                                                           "--wait` sends again the batches the broker lost")


@lru_cache(maxsize=1)
def get_ingest_settings() -> IngestSettings:
    return IngestSettings()
