"""The submitting side of a run (what `grdr ingest` does): plan batches, pick the index, enqueue, wait.

Batches go out as one Celery group; with --reindex as a chord whose callback swaps the alias,
so the swap happens when the last batch succeeded even if nobody waits for it. The waiting side sends again,
under its own task id, a batch the broker lost (a batch is idempotent: video_id is the document _id).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from celery import states

from grdr_plugin.cluster.remote import Check
from ingest.config import get_ingest_settings
from ingest.schemas import IngestBatch, RecordError, Source, Summary, Target
from ingest.sources import plan_dataset, plan_videos

POLL_S = 0.1  # between checks of the batches' results: progress moves smoothly, Redis barely notices
# A live worker answers a control message in milliseconds (a prefork worker's main process answers while its
# children run batches); a second leaves room for a remote broker. Every check waits this long.
WORKER_REPLY_S = 1.0

log = logging.getLogger(__name__)


class NoWorkerError(LookupError):
    """No live worker consumes the ingest queue: batches sent now would wait, unseen, until one starts."""


def live_workers(queue: Optional[str] = None, timeout_s: float = WORKER_REPLY_S) -> list[str]:
    """Names of the live workers that consume `queue` (default GRDR_INGEST_QUEUE), asked over the broker."""
    from ingest.celery_app import app

    queue = queue or get_ingest_settings().queue
    replies = app.control.inspect(timeout=timeout_s).active_queues() or {}
    return sorted(name for name, queues in replies.items() if any(q.get("name") == queue for q in queues))


def worker_command(queue: str) -> str:
    """The command that starts a worker for `queue` and logs each batch it takes (-l info)."""
    return f"celery -A ingest worker -Q {queue} -l info"


def broker_location() -> str:
    """GRDR_BROKER_URL with any password masked, for messages."""
    from kombu.utils.url import maybe_sanitize_url

    from grdr_plugin.settings import get_settings

    return maybe_sanitize_url(get_settings().broker_url)


def require_worker(queue: Optional[str] = None) -> None:
    """Raise NoWorkerError, saying how to start a worker, unless one consumes `queue` (call it before queuing)."""
    queue = queue or get_ingest_settings().queue
    if not live_workers(queue):
        raise NoWorkerError(f"no Celery worker consumes the ingest queue {queue!r} on {broker_location()}, so "
                            f"nothing was queued; start one with `{worker_command(queue)}` "
                            "(with the same GRDR_* settings)")


def broker_errors() -> tuple[type[BaseException], ...]:
    """What asking the broker raises while it is down or restarting: kombu's OperationalError, and the transport's
    own connection errors (a pooled Redis connection that predates a restart raises redis-py's on first use)."""
    from kombu.exceptions import OperationalError

    from ingest.celery_app import app

    with app.connection_for_write() as conn:  # the error classes only: no connection is made
        return (OperationalError, *conn.connection_errors)


def _anyone_there(workers: Callable[[], list[str]]) -> bool:
    """Whether a worker consumes the queue; an unreachable broker counts as yes (its outage is not our verdict,
    and reading results already rides it out)."""
    try:
        return bool(workers())
    except broker_errors():
        return True


def broker_checks(queue: Optional[str] = None) -> list[Check]:
    """`grdr doctor`: the Celery broker answers, and a worker consumes `queue` (default GRDR_INGEST_QUEUE)."""
    from kombu.exceptions import OperationalError

    queue = queue or get_ingest_settings().queue
    try:
        workers = live_workers(queue)
    except OperationalError as exc:
        return [Check("broker", "fail", f"cannot reach the Celery broker at {broker_location()}: {exc}",
                      "check GRDR_BROKER_URL; `grdr cluster start` runs a local Redis")]
    found = Check("worker", "ok", f"{len(workers)} on queue {queue!r}: {', '.join(workers)}") if workers else \
        Check("worker", "warn", f"no worker consumes queue {queue!r}: `grdr ingest` refuses to queue",
              f"start one with `{worker_command(queue)}` (with the same GRDR_* settings)")
    return [Check("broker", "ok", f"{broker_location()} answers"), found]


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


def refuse_videos_without_encoder(plan: Plan, searched: Path) -> None:
    """Raise, before anything is queued, when the plan holds video files (no features) and no image encoder was
    given or found (at `searched`): every one of them would fail in the worker."""
    from ingest.sources import Record, read_records

    videos = [str(r.path) for src, _ in plan.batches for r in read_records(src)
              if isinstance(r, Record) and r.path is not None and r.features is None and r.features_path is None]
    if videos:
        raise ValueError(f"--image-encoder: {len(videos)} records are video files (e.g. {videos[0]}) and no image "
                         f"encoder was given or found at {searched}; pass "
                         "--image-encoder PATH (an ONNX file or a Hugging Face CLIP folder). Nothing was queued")


@dataclass
class Submitted:
    target: Target
    results: list  # AsyncResult per batch, in plan order
    sizes: list[int]
    finisher: Optional[object] = None  # the chord's AsyncResult on --reindex
    group_id: Optional[str] = None
    queue: Optional[str] = None  # where the batches went (default GRDR_INGEST_QUEUE)
    sent: list = field(default_factory=list)  # each batch's signature as sent (its task id fixed), for resend()

    def resend(self, i: int) -> None:
        """Send batch i again, as it was sent: same task id, group and chord (a chord counts each batch once)."""
        self.sent[i].apply_async(group_id=self.group_id)


def send(sigs: list, sizes: list[int], target, queue: str, callback=None) -> Submitted:
    """Send batch signatures as one group, or with `callback` as a chord (the callback runs once every batch
    succeeded). Frozen before sending, so the signatures kept for resend() carry the task ids that were sent."""
    from celery import chord, group

    if callback is None:
        batches = group(sigs)
        batches.freeze()
        res = batches.apply_async()
        return Submitted(target, list(res.results), sizes, None, res.id, queue, list(batches.tasks))
    run = chord(sigs, callback)
    run.freeze()
    finisher = run.apply_async()
    header = finisher.parent
    return Submitted(target, list(header.results), sizes, finisher, header.id, queue, list(run.tasks.tasks))


def enqueue(plan: Plan, target: Target, *, image_encoder: Optional[str] = None, reindex: bool = False,
            queue: Optional[str] = None) -> Submitted:
    """Send the batches (to `queue`, default GRDR_INGEST_QUEUE)."""
    from ingest.tasks import finish_reindex_task, ingest_batch

    queue = queue or get_ingest_settings().queue
    sigs = [ingest_batch.s(IngestBatch(target=target, source=src, size=n, image_encoder=image_encoder).model_dump()
                           ).set(queue=queue) for src, n in plan.batches]
    callback = finish_reindex_task.s(target.model_dump()).set(queue=queue) if reindex else None
    return send(sigs, [n for _, n in plan.batches], target, queue, callback)


def batch_summary(result, i: int, batches: int, size: int) -> Summary:
    """The summary of batch i (of batches) once its result is ready; a batch that failed for good counts its
    size videos as failed."""
    if result.successful():
        return Summary.model_validate(result.result)
    return Summary(failed=size, errors=[RecordError(video_id=f"batch {i + 1} of {batches}",
                                                    reason=f"batch failed: {result.result!r}")])


def stalled_message(sub: Submitted, queued: list[int], stall_s: float) -> str:
    """What a run nobody works on leaves behind: `queued`, the batches no worker has taken."""
    queue = sub.queue or get_ingest_settings().queue
    done = len(sub.results) - len(queued)
    return (f"no batch of this run finished in {stall_s:g} s and no worker consumes the ingest queue {queue!r}; "
            f"start one with `{worker_command(queue)}` (with the same GRDR_* settings). {done} of "
            f"{len(sub.results)} batches are done (group {sub.group_id}, index {sub.target.index}); {len(queued)} "
            f"batches ({sum(sub.sizes[i] for i in queued)} videos) stay queued on {queue!r} and a worker that starts "
            f"will ingest them (to drop them instead: `celery -A ingest purge -Q {queue}`, which drops everything "
            "queued there)")


@dataclass(frozen=True)
class BrokerView:
    """What the broker and the live workers say about a run's unfinished batches."""

    queued: int  # messages waiting in the run's queue (this run's or others')
    held: frozenset[str]  # task ids a live worker holds: running, prefetched, or counting down to a retry


def broker_view(queue: Optional[str], task_ids: list[str], timeout_s: float = WORKER_REPLY_S) -> BrokerView:
    """Ask the broker how many messages wait in `queue` (default GRDR_INGEST_QUEUE), then the workers which of
    `task_ids` they hold (in this order: a batch taken from the queue in between is then seen by both)."""
    from ingest.celery_app import app

    queue = queue or get_ingest_settings().queue
    with app.connection_for_read() as conn:
        try:
            queued = conn.default_channel.queue_declare(queue=queue, passive=True).message_count
        except conn.channel_errors:  # Redis keeps no empty queue: nothing waits
            queued = 0
    replies = app.control.inspect(timeout=timeout_s).query_task(*task_ids) or {}
    return BrokerView(queued, frozenset(tid for held in replies.values() for tid in held))


def lost_batches(pending: dict[int, str], view: BrokerView) -> list[int]:
    """The unfinished batches (position -> task id) the broker lost: none waits in the queue (it is empty) and no
    live worker holds them. With messages queued, any of them may be one of ours: nothing is judged lost."""
    if view.queued:
        return []
    return sorted(i for i, task_id in pending.items() if task_id not in view.held)


def _resend_lost(sub: Submitted, pending: dict, view: Callable[[list[str]], BrokerView], quiet_s: float) -> list[int]:
    """Send again each batch of `pending` (position -> AsyncResult) the broker lost; -> their positions."""
    errors = broker_errors()
    task_ids = [r.id for r in pending.values()]
    resent: list[int] = []
    try:
        try:
            seen = view(task_ids)
        except errors:  # a pooled connection from before a broker restart fails once: the second try reconnects
            seen = view(task_ids)
        for i in lost_batches({i: r.id for i, r in pending.items()}, seen):
            if pending[i].ready():  # finished while the workers were asked
                continue
            sub.resend(i)
            resent.append(i)
            log.warning("batch %d of %d (%d videos, task %s) sent again: no batch finished for %.0f s, none is "
                        "queued and no worker holds it", i + 1, len(sub.results), sub.sizes[i], pending[i].id, quiet_s)
    except errors as exc:  # the broker is down: nothing more can be judged or sent now; look again later
        log.warning("cannot look for lost batches: %r", exc)
    return resent


def wait(sub: Submitted, *, on_progress: Callable[[int], None] = lambda n: None, poll_s: float = POLL_S,
         max_errors: Optional[int] = None, stall_s: Optional[float] = None, resend_after_s: Optional[float] = None,
         workers: Optional[Callable[[], list[str]]] = None,
         broker: Optional[Callable[[list[str]], BrokerView]] = None) -> tuple[Summary, dict]:
    """Collect every batch's summary (a batch that failed for good counts its videos as failed).

    max_errors: per-record errors kept in the summary (default GRDR_INGEST_MAX_ERRORS_REPORTED).
    stall_s: when no batch has finished for this long (default GRDR_INGEST_WORKER_WAIT_S) and none is running,
    ask whether a worker still consumes the queue; none: NoWorkerError saying what stays queued. A running batch
    (its worker may be a busy `-P solo` one, which cannot answer) or busy workers: wait on.
    resend_after_s: when no batch has finished for this long (default GRDR_INGEST_RESEND_AFTER_S), send again
    each unfinished batch the broker lost (`lost_batches`), once per such period.
    workers: () -> the live workers of the queue (default: asked over the broker).
    broker: task ids -> BrokerView (default: `broker_view`, asked over the broker).
    -> (summary, extra): extra holds `resent` (batches sent again) and the reindex outcome when there is one.
    """
    settings = get_ingest_settings()
    max_errors = settings.max_errors_reported if max_errors is None else max_errors
    stall_s = settings.worker_wait_s if stall_s is None else stall_s
    resend_after_s = settings.resend_after_s if resend_after_s is None else resend_after_s
    workers = workers or (lambda: live_workers(sub.queue))
    broker = broker or (lambda task_ids: broker_view(sub.queue, task_ids))
    pending = dict(enumerate(sub.results))
    moved = asked = judged = time.monotonic()  # last finished batch, last worker check, last look for lost batches
    total = Summary()
    resent = 0
    while pending:
        for i in [i for i, r in pending.items() if r.ready()]:
            total = total.merge(batch_summary(pending.pop(i), i, len(sub.results), sub.sizes[i]), max_errors)
            on_progress(sub.sizes[i])
            moved = time.monotonic()
        if pending and time.monotonic() - max(moved, asked) > stall_s:
            queued = [i for i, r in pending.items() if r.state == states.PENDING]
            if len(queued) == len(pending) and not _anyone_there(workers):
                raise NoWorkerError(stalled_message(sub, queued, stall_s))
            asked = time.monotonic()  # a batch runs, or workers are busy with others' batches: look again later
        quiet_s = time.monotonic() - max(moved, judged)
        if pending and sub.sent and quiet_s > resend_after_s:
            resent += len(_resend_lost(sub, pending, broker, quiet_s))
            judged = time.monotonic()
        if pending:
            time.sleep(poll_s)
    extra: dict = {"index": sub.target.index, "alias": sub.target.alias, "resent": resent}
    if sub.finisher is not None:
        try:
            out = sub.finisher.get(propagate=True, disable_sync_subtasks=False)
            extra.update(swapped=True, swapped_from=out.get("swapped_from"))
        except Exception as exc:  # noqa: BLE001 - reported, the alias stays where it was
            extra.update(swapped=False, swap_error=repr(exc))
    return total, extra
