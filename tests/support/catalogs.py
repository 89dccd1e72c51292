"""Test catalogs ingested through the real path (a Celery worker on the module's queue) into the default node."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from grdr_plugin import index as gi
from ingest.submit import enqueue, make_plan, wait
from ingest.target import prepare_target

MSRVTT_VIDEOS = 1000


@contextmanager
def ingested(client, dataset: Path, model: Path, queue: str, prefix: str, videos: int = MSRVTT_VIDEOS) -> Iterator[str]:
    """`dataset` ingested into a fresh 1-shard index; yields its alias, dropped afterwards."""
    alias = f"{prefix}-{uuid.uuid4().hex[:8]}"
    target = prepare_target(client, alias, model, shards=1)
    summary, _ = wait(enqueue(make_plan(dataset=dataset, batch_size=500), target, queue=queue))
    assert (summary.indexed, summary.failed) == (videos, 0)
    try:
        yield alias
    finally:
        gi.drop_index(client, alias)
