"""Faults during the ingest of 10,000 videos: real OpenSearch, Redis and Celery workers, no mocks.

Each test ingests msrvtt grown to 10,000 videos in 40 batches of 250 through real worker subprocesses, injects
its fault once some batches succeeded and before all did, and ends with: the summary accounts for every video
(0 failed, 0 lost), the index holds each video exactly once, and each is found by a query on its own IDs.
The SIGKILLs of Redis (restarted on its AOF, or with its files lost) and of the OpenSearch node happen on this
module's own one-node cluster (HTTP 9280, transport 9380, Redis 6393, started once), driven by the real
`grdr ingest --wait` and two prefork workers of two.
Each prints one line (pytest -s) with its wall time and what happened.
"""
import json
import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest
import redis

from grdr_plugin.cluster import procs, redis_server
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.growth import grow_dataset
from grdr_plugin.index import drop_index
from grdr_plugin.settings import Settings
from ingest.submit import Plan, enqueue, make_plan, wait
from ingest.target import prepare_target
from ingest.worker_process import celery_worker, celery_workers
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
# The producer's bound in these tests (default 2 minutes): a lost batch is sent again soon after the others are done.
RESEND_AFTER_S = 5
# Two prefork worker processes of two: several workers at once, as in production.
PROCESSES, CONCURRENCY = 2, 2
# After a SIGKILL the node replays its translog and restarts in up to a minute or two on this shared 2-core machine;
# the default 5 Celery retries of a batch (about a minute of backoff with the in-task bulk retries) may not cover it.
NODE_DOWN_TASK_RETRIES = 10
POLL_S = 0.02  # between reads of the index's count while waiting for the fault's moment


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = grow_dataset(shared_dataset("msrvtt"), VIDEOS, tmp_path_factory.mktemp("faults") / "msrvtt-10k")
    plan = make_plan(dataset=root, batch_size=BATCH)
    ids = {json.loads(line)["video_id"] for line in (root / "catalog.jsonl").open()}
    assert plan.videos == len(ids) == VIDEOS
    return root, plan, ids


@pytest.fixture
def local(settings):
    """The default cluster's services, which the first three tests stop, restart and kill workers of."""
    require_local_services(settings)


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


def test_opensearch_stopped_mid_run_and_started_again_loses_no_video(local, settings, client, ingest_alias,
                                                                      tiny_model_dir, corpus, tmp_path):
    _, plan, ids = corpus
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


def test_a_worker_killed_mid_batch_has_its_batch_redelivered_once(local, settings, client, ingest_alias,
                                                                  tiny_model_dir, corpus, tmp_path):
    _, plan, ids = corpus
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


def test_redis_restarted_mid_run_workers_and_producer_reconnect(local, settings, client, ingest_alias, tiny_model_dir,
                                                                corpus, tmp_path):
    _, plan, ids = corpus
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


def test_a_batch_the_broker_lost_is_sent_again_by_the_producer(local, settings, client, ingest_alias, tiny_model_dir,
                                                               corpus, tmp_path):
    """A queued batch vanishes from Redis (what a machine crash before its write reached the disk, a failover or a
    purge does): no worker will ever run it, so wait() sends it again under its task id once the run is quiet."""
    _, plan, ids = corpus
    t0 = time.monotonic()
    queue = f"grdr-ingest-lost-{os.getpid()}"
    sub = enqueue(plan, prepare_target(client, ingest_alias, tiny_model_dir), queue=queue)
    # kombu pushes on the left and workers pop on the right: the left end is the last batch
    lost = json.loads(redis.Redis.from_url(settings.broker_url).lpop(queue))["headers"]["id"]
    assert lost == sub.results[-1].id
    with celery_workers(queue, processes=PROCESSES, concurrency=CONCURRENCY, log_path=tmp_path / "workers.log"):
        summary, extra = wait(sub, resend_after_s=RESEND_AFTER_S)
    assert extra["resent"] == 1 and sub.results[-1].successful()
    assert (summary.failed, summary.indexed + summary.updated) == (0, VIDEOS), summary.errors[:5]
    assert_indexed_once_and_searchable(client, ingest_alias, ids)
    print(f"\n[faults] lost batch: {seconds_since(t0)} s wall, 1 of {len(sub.results)} batches removed from the queue, "
          f"sent again after {RESEND_AFTER_S} s without progress; {summary.indexed} indexed, {summary.updated} updated")


# ---- SIGKILL of Redis and of the node, on this module's own cluster ----

@pytest.fixture(scope="module")
def own_cluster():
    from tests.support.multinode import LocalCluster

    cluster = LocalCluster(http=9280, transport=9380, redis=6393)
    cluster.start(1)
    yield cluster
    cluster.remove()


class Producer:
    """`grdr ingest --wait --json` as a subprocess on the cluster (what a user runs), and the index it fills."""

    def __init__(self, cluster, dataset: Path, model_dir: Path, alias: str, queue: str, log: Path):
        from tests.support.multinode import GRDR, REPO

        env = {**cluster.env(), "GRDR_INGEST_QUEUE": queue, "GRDR_INGEST_RESEND_AFTER_S": str(RESEND_AFTER_S)}
        self.alias, self.client, self.log = alias, cluster.client(), log
        self.stderr = open(log, "wb")
        self.proc = subprocess.Popen([*GRDR, "ingest", "--dataset", str(dataset), "--model", str(model_dir),
                                      "--index", alias, "--batch-size", str(BATCH), "--wait", "--json"],
                                     env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=self.stderr)

    def count(self) -> int:
        if not self.client.indices.exists(index=self.alias):
            return 0
        return self.client.count(index=self.alias)["count"]

    def until(self, videos: int, timeout_s: float, count: Optional[Callable[[], int]] = None) -> int:
        """Poll count() (default: the index's documents) until it is at least `videos`; -> that count."""
        count = count or self.count
        deadline = time.monotonic() + timeout_s
        while (n := count()) < videos:
            assert self.proc.poll() is None, f"grdr ingest exited early: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"only {n} of {VIDEOS} videos done after {timeout_s:.0f} s"
            time.sleep(POLL_S)
        return n

    def result(self, timeout_s: float) -> dict:
        out, _ = self.proc.communicate(timeout=timeout_s)
        assert self.proc.returncode == 0, (self.proc.returncode, out[-2000:], self.log.read_text()[-4000:])
        return json.loads(out.decode().strip().splitlines()[-1])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


@contextmanager
def _cluster_run(cluster, dataset, model_dir, tmp_path, worker_env=None) -> Iterator[Producer]:
    """Two prefork workers of two on the cluster, and `grdr ingest` filling a fresh alias there."""
    alias = f"faults-{os.getpid()}-{int(time.monotonic() * 1000)}"
    queue = f"grdr-ingest-{alias}"
    with celery_workers(queue, processes=PROCESSES, concurrency=CONCURRENCY, log_path=tmp_path / "workers.log",
                        extra_env={**cluster.env(), **(worker_env or {})}):
        producer = Producer(cluster, dataset, model_dir, alias, queue, tmp_path / "ingest.log")
        try:
            yield producer
        finally:
            producer.close()
    drop_index(cluster.client(), alias)


def _sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + procs.KILL_WAIT_S
    while procs.alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert not procs.alive(pid), f"pid {pid} survived SIGKILL"


def _acknowledged(cluster, alias: str, rows: list[str]) -> set[str]:
    """The videos of every batch that has succeeded so far (bulk acknowledged, refreshed, IDs published), read
    from the batches' results in the cluster's result backend (each names its catalog rows; rows[i] is the
    video_id of row i)."""
    backend = redis.Redis.from_url(cluster.env()["GRDR_RESULT_BACKEND"])
    videos: set[str] = set()
    for key in backend.scan_iter("celery-task-meta-*"):
        meta = json.loads(backend.get(key) or "{}")
        if meta.get("status") != "SUCCESS" or meta.get("name") != "grdr.ingest.batch":
            continue
        (batch,) = meta["args"]
        if batch["target"]["alias"] == alias:
            first = batch["source"]["first_row"]
            videos.update(rows[first:first + batch["size"]])
    return videos


def _finish_on_cluster(producer: Producer, client, alias: str, ids: set[str], at_fault: int) -> dict:
    assert 0 < at_fault < VIDEOS, f"the fault must land mid-run, not after {at_fault} of {VIDEOS} videos"
    out = producer.result(RUN_TIMEOUT_S)
    assert (out["failed"], out["indexed"] + out["updated"]) == (0, VIDEOS), out["errors"][:5]
    assert_indexed_once_and_searchable(client, alias, ids)
    return {k: out[k] for k in ("indexed", "updated", "failed", "resent", "seconds")}


def test_redis_sigkilled_mid_run_restarts_on_its_aof_and_loses_no_video(own_cluster, tiny_model_dir, corpus,
                                                                          tmp_path):
    root, _, ids = corpus
    paths = ClusterPaths.from_settings(Settings(home=own_cluster.home))
    t0 = time.monotonic()
    with _cluster_run(own_cluster, root, tiny_model_dir, tmp_path) as producer:
        at_fault = producer.until(FAULT_AFTER, RUN_TIMEOUT_S)
        pid = procs.read_int(paths.redis_pid)
        assert procs.alive(pid, "redis-server")
        _sigkill(pid)
        t_down = time.monotonic()
        time.sleep(REDIS_DOWN_S)
        own_cluster.start(1)  # Redis from its AOF; the node runs on
        outage = seconds_since(t_down)
        outcome = _finish_on_cluster(producer, own_cluster.client(), producer.alias, ids, at_fault)
    # The queue came back from the AOF: at most what the workers held at the kill needed sending again (a Redis
    # restarted without its files has the producer send every batch still queued: the next test).
    assert outcome["resent"] <= PROCESSES * CONCURRENCY, outcome
    print(f"\n[faults] redis SIGKILL: {seconds_since(t0)} s wall, Redis down {outage} s after {at_fault}/{VIDEOS} "
          f"videos indexed (AOF, appendfsync everysec), {outcome}")


def test_redis_sigkilled_and_its_files_lost_the_producer_sends_every_lost_batch_again(own_cluster, tiny_model_dir,
                                                                                     corpus, tmp_path):
    """What a Redis without persistence, or a new one in its place, does to a run: the queue, the results and the
    workers' unacknowledged batches are gone. `grdr ingest --wait` still ends with every video, exactly once."""
    root, _, ids = corpus
    paths = ClusterPaths.from_settings(Settings(home=own_cluster.home))
    t0 = time.monotonic()
    with _cluster_run(own_cluster, root, tiny_model_dir, tmp_path) as producer:
        at_fault = producer.until(FAULT_AFTER, RUN_TIMEOUT_S)
        _sigkill(procs.read_int(paths.redis_pid))
        shutil.rmtree(paths.redis / redis_server.AOF_DIR)
        (paths.redis / redis_server.RDB_FILE).unlink(missing_ok=True)
        own_cluster.start(1)  # an empty Redis
        outcome = _finish_on_cluster(producer, own_cluster.client(), producer.alias, ids, at_fault)
    assert outcome["resent"] > PROCESSES * CONCURRENCY, outcome  # more than the workers held: the queue was lost
    print(f"\n[faults] redis SIGKILL, files lost: {seconds_since(t0)} s wall, after {at_fault}/{VIDEOS} videos "
          f"indexed, {outcome}")


def test_the_node_sigkilled_mid_run_keeps_what_it_acknowledged_and_the_rest_is_retried(own_cluster, tiny_model_dir,
                                                                                      corpus, tmp_path):
    root, _, ids = corpus
    t0 = time.monotonic()
    (pid,) = own_cluster.node_pids()  # asked first: `grdr cluster status` takes seconds, a run not many more
    env = {"GRDR_INGEST_TASK_MAX_RETRIES": str(NODE_DOWN_TASK_RETRIES)}
    with _cluster_run(own_cluster, root, tiny_model_dir, tmp_path, worker_env=env) as producer:
        rows = [json.loads(line)["video_id"] for line in (root / "catalog.jsonl").open()]
        # documents show up before their batch succeeds (OpenSearch refreshes every second): wait for successes
        producer.until(FAULT_AFTER, RUN_TIMEOUT_S, lambda: len(_acknowledged(own_cluster, producer.alias, rows)))
        acknowledged = _acknowledged(own_cluster, producer.alias, rows)
        at_fault = len(acknowledged)
        _sigkill(pid)
        t_down = time.monotonic()
        own_cluster.start(1)
        outage = seconds_since(t_down)
        client = own_cluster.client()
        kept = client.count(index=producer.alias, body={"query": {"ids": {"values": sorted(acknowledged)}}})["count"]
        assert kept == len(acknowledged), f"{len(acknowledged) - kept} acknowledged videos lost by the SIGKILL"
        outcome = _finish_on_cluster(producer, client, producer.alias, ids, at_fault)
    log = (tmp_path / "workers.log").read_text()
    bulk_retries, task_retries = log.count("bulk retry"), log.count("retry: Retry in")
    assert bulk_retries + task_retries > 0, "the outage never reached the workers"
    print(f"\n[faults] node SIGKILL: {seconds_since(t0)} s wall, node down {outage} s after {at_fault}/{VIDEOS} "
          f"videos acknowledged (all {kept} there after the restart), {bulk_retries} in-task bulk retries, "
          f"{task_retries} Celery task retries, {outcome}")
