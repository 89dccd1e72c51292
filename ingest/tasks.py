"""Celery tasks: thin wrappers that validate the payload, reuse per-process resources, run the pipeline.

Per worker process we keep one OpenSearch client, one ModelRuntime per model folder and one
image encoder per ONNX file (loading them per batch would cost more than the batch).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from celery.signals import worker_process_init

from grdr_plugin.index import check_fingerprint
from grdr_plugin.runtime import ModelRuntime
from grdr_plugin.settings import Settings
from ingest.backfill import BackfillBatch, run_backfill_batch
from ingest.celery_app import app
from ingest.config import get_ingest_settings
from ingest.image_encoder import ImageEncoder
from ingest.pipeline import PublishedIds, Resources, run_batch
from ingest.refit import Refit, finish_refit
from ingest.retry import TransientOpenSearchError, is_retryable
from ingest.schemas import IngestBatch, Summary, Target
from ingest.target import finish_reindex

_ingest = get_ingest_settings()
_published = PublishedIds()


@lru_cache(maxsize=1)
def _settings() -> Settings:
    return Settings()


@lru_cache(maxsize=1)
def _client():
    return _settings().opensearch_client()


@lru_cache(maxsize=4)
def _runtime(model_dir: str) -> ModelRuntime:
    return ModelRuntime(model_dir, threads=_ingest.onnx_threads)


@lru_cache(maxsize=4)
def _image_encoder(path: str) -> ImageEncoder:
    return ImageEncoder(path, threads=_ingest.onnx_threads, batch_size=_ingest.image_batch_size)


@lru_cache(maxsize=64)
def _checked(index: str, fingerprint: str, alias: str, model_dir: str) -> bool:
    """Check the index's fingerprint once per process (an index's _meta never changes)."""
    check_fingerprint(_client(), index, fingerprint, alias=alias, model_dir=model_dir)
    return True


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    # A prefork child must not share the parent's HTTP connections.
    _client.cache_clear()


def resources_for(target: Target, *, check_index: bool = True) -> Resources:
    """check_index: refuse an index of another model (a backfill's was checked when it was queued: an
    attached index under refit still names the old model until the switch)."""
    runtime = _runtime(target.model_dir)
    if runtime.fingerprint != target.fingerprint:
        raise ValueError(f"model {target.model_dir} changed since the batch was queued "
                         f"({runtime.fingerprint[:12]} != {target.fingerprint[:12]})")
    if check_index:
        _checked(target.index, target.fingerprint, target.alias, target.model_dir)
    return Resources(client=_client(), runtime=runtime, settings=_ingest, image_encoder=_image_encoder,
                     published=_published)


# A batch is idempotent (video_id is the _id), so it is acknowledged only after it ran, redelivered when its
# worker died, and retried with backoff while OpenSearch is overloaded or unreachable.
# A chord callback (the alias swap after every batch succeeded) retries the same way, with Celery's own backoff cap.
_CALLBACK_TASK = dict(bind=True, acks_late=True, reject_on_worker_lost=True, autoretry_for=(TransientOpenSearchError,),
                      retry_backoff=True, retry_jitter=True, max_retries=_ingest.task_max_retries)
_BATCH_TASK = {**_CALLBACK_TASK, "retry_backoff_max": _ingest.task_backoff_max_s}


def _run(work: Callable[[], Any]) -> Any:
    """The task's work; OpenSearch overloaded or unreachable -> TransientOpenSearchError (which Celery retries)."""
    try:
        return work()
    except TransientOpenSearchError:
        raise
    except Exception as exc:
        if is_retryable(exc):
            raise TransientOpenSearchError(repr(exc)) from exc
        raise


def _merged(summaries: list[dict]) -> dict:
    """The batches' summaries as one (errors capped as in every summary)."""
    total = Summary()
    for s in summaries:
        total = total.merge(Summary.model_validate(s), _ingest.max_errors_reported)
    return total.model_dump()


@app.task(name="grdr.ingest.batch", **_BATCH_TASK)
def ingest_batch(self, payload: dict) -> dict:
    """Ingest one batch (an IngestBatch as JSON); returns its Summary as JSON."""
    batch = IngestBatch.model_validate(payload)
    return _run(lambda: run_batch(batch, resources_for(batch.target), task_id=self.request.id or "")).model_dump()


@app.task(name="grdr.ingest.finish_reindex", **_CALLBACK_TASK)
def finish_reindex_task(self, summaries: list[dict], target: dict) -> dict:
    """Chord callback of --reindex: after every batch succeeded, swap the alias to the new index."""
    t = Target.model_validate(target)
    old = _run(lambda: finish_reindex(_client(), t))
    return {**_merged(summaries), "swapped_from": old, "index": t.index}


@app.task(name="grdr.backfill.batch", **_BATCH_TASK)
def backfill_batch(self, payload: dict) -> dict:
    """Backfill one batch (a BackfillBatch as JSON): grdr's fields by partial update; returns its Summary as JSON."""
    batch = BackfillBatch.model_validate(payload)
    return _run(lambda: run_backfill_batch(batch, resources_for(batch.target, check_index=False),
                                           task_id=self.request.id or "")).model_dump()


@app.task(name="grdr.backfill.finish_refit", **_CALLBACK_TASK)
def finish_refit_task(self, summaries: list[dict], refit: dict) -> dict:
    """Chord callback of a refit: after every batch succeeded, switch clients to the new model."""
    r = Refit.model_validate(refit)
    left = _run(lambda: finish_refit(_client(), r))
    return {**_merged(summaries), "swapped_from": left, "index": r.target_index}
