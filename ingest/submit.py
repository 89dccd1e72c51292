"""The submitting side of a run (what `grdr ingest` does): plan batches, pick the index, enqueue, wait.

Batches go out as one Celery group; with --reindex as a chord whose callback swaps the alias,
so the swap happens when the last batch succeeded even if nobody waits for it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from ingest.config import get_ingest_settings
from ingest.schemas import IngestBatch, RecordError, Source, Summary, Target
from ingest.sources import plan_dataset, plan_videos

POLL_S = 0.1  # between checks of the batches' results: progress moves smoothly, Redis barely notices


@dataclass
class Plan:
    batches: list[tuple[Source, int]]

    @property
    def videos(self) -> int:
        return sum(n for _, n in self.batches)


def make_plan(*, dataset: Optional[Union[str, Path]] = None, videos: Optional[str] = None,
              batch_size: int, split: Optional[str] = None) -> Plan:
    if (dataset is None) == (videos is None):
        raise ValueError("give exactly one of --dataset DIR or --videos FILE_OR_GLOB")
    if dataset is not None:
        return Plan(plan_dataset(dataset, batch_size, split))
    if split is not None:
        raise ValueError("--split applies to --dataset only")
    return Plan(plan_videos(videos, batch_size))


@dataclass
class Submitted:
    target: Target
    results: list  # AsyncResult per batch, in plan order
    sizes: list[int]
    finisher: Optional[object] = None  # the chord's AsyncResult on --reindex
    group_id: Optional[str] = None


def enqueue(plan: Plan, target: Target, *, image_encoder: Optional[str] = None, reindex: bool = False,
            queue: Optional[str] = None) -> Submitted:
    """Send the batches (to `queue`, default GRDR_INGEST_QUEUE)."""
    from celery import chord, group

    from ingest.tasks import finish_reindex_task, ingest_batch

    queue = queue or get_ingest_settings().queue
    sigs = [ingest_batch.s(IngestBatch(target=target, source=src, size=n, image_encoder=image_encoder).model_dump()
                           ).set(queue=queue) for src, n in plan.batches]
    sizes = [n for _, n in plan.batches]
    if reindex:
        finisher = chord(sigs)(finish_reindex_task.s(target.model_dump()).set(queue=queue))
        header = finisher.parent
        return Submitted(target, list(header.results), sizes, finisher, header.id)
    res = group(sigs).apply_async()
    return Submitted(target, list(res.results), sizes, None, res.id)


def wait(sub: Submitted, *, on_progress: Callable[[int], None] = lambda n: None, poll_s: float = POLL_S,
         max_errors: Optional[int] = None) -> tuple[Summary, dict]:
    """Collect every batch's summary (a batch that failed for good counts its videos as failed).

    max_errors: per-record errors kept in the summary (default GRDR_INGEST_MAX_ERRORS_REPORTED).
    -> (summary, extra) where extra holds the reindex outcome when there is one.
    """
    if max_errors is None:
        max_errors = get_ingest_settings().max_errors_reported
    pending = dict(enumerate(sub.results))
    total = Summary()
    while pending:
        for i in [i for i, r in pending.items() if r.ready()]:
            r = pending.pop(i)
            if r.successful():
                part = Summary.model_validate(r.result)
            else:
                part = Summary(failed=sub.sizes[i], errors=[RecordError(
                    video_id=f"batch {i + 1} of {len(sub.results)}", reason=f"batch failed: {r.result!r}")])
            total = total.merge(part, max_errors)
            on_progress(sub.sizes[i])
        if pending:
            time.sleep(poll_s)
    extra: dict = {"index": sub.target.index, "alias": sub.target.alias}
    if sub.finisher is not None:
        try:
            out = sub.finisher.get(propagate=True, disable_sync_subtasks=False)
            extra.update(swapped=True, swapped_from=out.get("swapped_from"))
        except Exception as exc:  # noqa: BLE001 - reported, the alias stays where it was
            extra.update(swapped=False, swap_error=repr(exc))
    return total, extra
