"""The Celery app: `celery -A ingest worker` (broker and result backend from GRDR_BROKER_URL / GRDR_RESULT_BACKEND).

Reliability settings apply to every ingest task: a batch is acknowledged only after it ran
(acks_late) and is redelivered if its worker died mid-batch (reject_on_worker_lost). Both are
safe because a batch is idempotent: video_id is the document _id.
"""
from __future__ import annotations

from typing import Optional

from celery import Celery

from grdr_plugin.settings import Settings
from ingest.config import IngestSettings, get_ingest_settings

# Tries of a result-backend read or write: with Celery's backoff (10 ms doubling to 10 s) 40 tries ride out
# a Redis restart of ~3 minutes.
RESULT_BACKEND_RETRIES = 40
RESULT_TTL_S = 7 * 24 * 3600  # a run's summaries stay readable for a week (`grdr ingest` without --wait)


def restore_interval_s(visibility_timeout_s: int) -> int:
    """Seconds between sweeps for unacknowledged batches: a tenth of the timeout, within [1, 100] (kombu's own
    sweep is every 100 s)."""
    return max(1, min(100, visibility_timeout_s // 10))


def make_app(settings: Optional[Settings] = None, ingest: Optional[IngestSettings] = None) -> Celery:
    s = settings or Settings()
    i = ingest or get_ingest_settings()
    app = Celery("grdr-ingest", broker=s.broker_url, backend=s.result_backend, include=["ingest.tasks"])
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=i.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # With acks_late a prefetched batch waits behind the running one; take one at a time so idle
        # workers get the work.
        worker_prefetch_multiplier=1,
        task_track_started=True,
        result_expires=RESULT_TTL_S,
        result_extended=True,
        broker_connection_retry_on_startup=True,
        # Redis redelivers an unacknowledged batch (its worker died) after visibility_timeout_s. kombu
        # looks for such batches every interval * throttle seconds (10 * 10 by default); sweep ten times
        # per timeout instead, so that a short timeout really means a fast redelivery.
        broker_transport_options={"visibility_timeout": i.visibility_timeout_s,
                                  "unacked_restore_interval": restore_interval_s(i.visibility_timeout_s),
                                  "unacked_restore_throttle": 1},
        result_backend_transport_options={"visibility_timeout": i.visibility_timeout_s},
        # Reading and storing results survive a Redis restart: without this a waiting `grdr ingest --wait`
        # dies on the first ConnectionError.
        result_backend_always_retry=True,
        result_backend_max_retries=RESULT_BACKEND_RETRIES,
        worker_hijack_root_logger=False,
    )
    return app


app = make_app()
