"""Faults during the ingest of 10,000 videos (issue 7): real OpenSearch, Redis and Celery workers, no mocks.

Each test ingests msrvtt grown to 10,000 videos in 40 batches of 250 through a real worker subprocess, injects
its fault once some batches succeeded and before all did, and ends with: the summary accounts for every video
(0 failed, 0 lost), the index holds each video exactly once, and each is found by a query on its own IDs.
Each prints one line (pytest -s) with its wall time and what happened.
"""
import json
import os
import signal
import time
from contextlib import contextmanager
from typing import Iterator

import pytest

from bench.scale import grow_dataset
from ingest.submit import Plan, enqueue, make_plan
from ingest.target import prepare_target
from ingest.worker_process import celery_worker
from tests.conftest import shared_dataset
from tests.faults import (
    BackgroundWait,
    assert_indexed_once_and_searchable,
    held_batches,
    require_local_services,
    restart_redis,
    seconds_since,
    services_restored,
    start_opensearch,
    stop_opensearch,
)

VIDEOS = 10_000
BATCH = 250
FAULT_AFTER = VIDEOS // 10  # videos done before the fault lands
RUN_TIMEOUT_S = 240.0
# The SIGKILL test's workers: Redis redelivers a dead worker's batch after this many seconds (default 1 h).
SHORT_VISIBILITY_S = 8
# Long enough for the running batch (~0.5 s) to finish while Redis is down: its result and ack wait.
REDIS_DOWN_S = 2.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, settings):
    require_local_services(settings)
    root = grow_dataset(shared_dataset("msrvtt"), VIDEOS, tmp_path_factory.mktemp("faults") / "msrvtt-10k")
    plan = make_plan(dataset=root, batch_size=BATCH)
    ids = {json.loads(line)["video_id"] for line in (root / "catalog.jsonl").open()}
    assert plan.videos == len(ids) == VIDEOS
    return plan, ids


@contextmanager
def _ingest(plan: Plan, client, alias, model_dir, queue) -> Iterator[tuple[list, BackgroundWait]]:
    """Enqueue the run; -> (AsyncResult per batch, wait() going on in a thread)."""
    sub = enqueue(plan, prepare_target(client, alias, model_dir), queue=queue)
    with BackgroundWait(sub) as run:
        yield sub.results, run


def _finish(run: BackgroundWait, client, alias, ids, at_fault: int) -> dict:
    assert 0 < at_fault < VIDEOS, f"the fault must land mid-run, not after {at_fault} of {VIDEOS} videos"
    summary, _ = run.result(RUN_TIMEOUT_S)
    lost = VIDEOS - summary.done
    assert (summary.failed, lost, summary.indexed + summary.updated) == (0, 0, VIDEOS), summary.errors[:5]
    assert_indexed_once_and_searchable(client, alias, ids)
    return {"indexed": summary.indexed, "updated": summary.updated, "failed": summary.failed, "lost": lost}


def _running(results: list) -> tuple[str, int]:
    """(task id, worker pid) of a batch running now: task_track_started stores the pid with the STARTED state."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for r in results:
            meta = r.backend.get_task_meta(r.id)  # one read: state and pid from the same moment
            if meta["status"] == "STARTED":
                return r.id, meta["result"]["pid"]
        time.sleep(0.01)
    raise TimeoutError("no batch was running")


def test_opensearch_stopped_mid_run_and_started_again_loses_no_video(settings, client, ingest_alias, tiny_model_dir,
                                                                      corpus, tmp_path):
    plan, ids = corpus
    t0 = time.monotonic()
    with services_restored(settings), celery_worker(log_path=tmp_path / "worker.log") as queue, \
            _ingest(plan, client, ingest_alias, tiny_model_dir, queue) as (results, run):
        run.until(FAULT_AFTER, RUN_TIMEOUT_S)
        t_down = time.monotonic()
        stop_opensearch(settings)
        at_fault = run.done
        start_opensearch(settings)
        outage = seconds_since(t_down)
        outcome = _finish(run, client, ingest_alias, ids, at_fault)
        retries = [r.retries or 0 for r in results]
        task_retries = sum(retries)
    bulk_retries = (tmp_path / "worker.log").read_text().count("bulk retry")
    assert task_retries + bulk_retries > 0, "the outage never reached the worker"
    print(f"\n[faults] opensearch stop/start: {seconds_since(t0)} s wall, node down {outage} s after "
          f"{at_fault}/{VIDEOS} videos, {bulk_retries} in-task bulk retries, {task_retries} Celery task retries "
          f"(at most {max(retries)} of one batch), {outcome}")


def test_a_worker_killed_mid_batch_has_its_batch_redelivered_once(settings, client, ingest_alias, tiny_model_dir,
                                                                  corpus, tmp_path):
    plan, ids = corpus
    env = {"GRDR_INGEST_VISIBILITY_TIMEOUT_S": str(SHORT_VISIBILITY_S)}
    t0 = time.monotonic()
    with celery_worker(log_path=tmp_path / "worker-1.log", extra_env=env) as queue, \
            _ingest(plan, client, ingest_alias, tiny_model_dir, queue) as (results, run):
        run.until(FAULT_AFTER, RUN_TIMEOUT_S)
        _, pid = _running(results)
        at_fault = run.done
        os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        held = held_batches(settings, queue)
        # The dead worker's batch stays unacknowledged in Redis until the visibility timeout; a fresh worker gets it.
        assert held, "the killed worker held no batch"
        interrupted = [r.id for r in results if r.id in held and r.state == "STARTED"]
        with celery_worker(queue=queue, log_path=tmp_path / "worker-2.log", extra_env=env):
            outcome = _finish(run, client, ingest_alias, ids, at_fault)
        assert all(r.successful() for r in results if r.id in held)
    print(f"\n[faults] worker SIGKILL: {seconds_since(t0)} s wall, killed after {at_fault}/{VIDEOS} videos, "
          f"{len(held)} batch(es) held by the dead worker ({len(interrupted)} mid-run) redelivered "
          f"(visibility timeout {SHORT_VISIBILITY_S} s), run done {seconds_since(t_kill)} s after the kill, {outcome}")


def test_redis_restarted_mid_run_workers_and_producer_reconnect(settings, client, ingest_alias, tiny_model_dir, corpus,
                                                                tmp_path):
    plan, ids = corpus
    t0 = time.monotonic()
    with services_restored(settings), celery_worker(log_path=tmp_path / "worker.log") as queue, \
            _ingest(plan, client, ingest_alias, tiny_model_dir, queue) as (results, run):
        run.until(FAULT_AFTER, RUN_TIMEOUT_S)
        running, _ = _running(results)
        at_fault = run.done
        t_down = time.monotonic()
        restart_redis(settings, REDIS_DOWN_S)
        outage = seconds_since(t_down)
        outcome = _finish(run, client, ingest_alias, ids, at_fault)
        left = held_batches(settings, queue)
    # The batch that ran through the outage was acknowledged: none waits for a redelivery an hour later.
    assert next(r for r in results if r.id == running).successful() and not left, left
    print(f"\n[faults] redis restart: {seconds_since(t0)} s wall, Redis down {outage} s after "
          f"{at_fault}/{VIDEOS} videos with a batch running, {outcome}")
