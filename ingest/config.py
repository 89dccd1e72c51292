"""Knobs of the ingest workers that are not shared with the rest of grdr (``GRDR_INGEST_*``).

Broker, result backend, OpenSearch and batch sizes come from ``grdr_plugin.settings.Settings``;
this holds what only ingest needs (queue name, retry policy, error index).
"""
from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRDR_INGEST_", extra="ignore")

    queue: str = Field("grdr-ingest", description="Celery queue the ingest tasks go to")
    errors_index: str = Field("grdr-ingest-errors", description="index that keeps every per-record failure")
    max_errors_reported: int = Field(1000, ge=0, description="per-record errors returned in a summary (all are in the errors index)")
    # Retries of one bulk request inside a task (before the task itself is retried by Celery).
    bulk_max_retries: int = Field(5, ge=0)
    bulk_initial_backoff_s: float = Field(0.5, gt=0)
    bulk_max_backoff_s: float = Field(30.0, gt=0)
    # Celery-level retries of a whole batch (idempotent: video_id is the document _id).
    task_max_retries: int = Field(5, ge=0)
    task_backoff_max_s: int = Field(120, ge=1)
    # A batch whose worker died (SIGKILL, OOM, lost machine) is redelivered by Redis after this long
    # without an ack. It must exceed the slowest batch, or a batch still running is delivered twice
    # (harmless, the batch is idempotent, but the work is done again).
    visibility_timeout_s: int = Field(3600, ge=1, description="seconds before Redis redelivers an unacknowledged batch")
    onnx_threads: int = Field(1, ge=1, description="onnxruntime threads per worker process")
    image_batch_size: int = Field(64, ge=1, description="frames per image-encoder call when ingesting video files")
    # Vector components are written with this many significant digits (float32 carries ~7): half the
    # bytes of repr() and formatted in C by numpy, which is what keeps ingest above 2,000 videos/s.
    vector_digits: int = Field(7, ge=3, le=9)


@lru_cache(maxsize=1)
def get_ingest_settings() -> IngestSettings:
    return IngestSettings()
