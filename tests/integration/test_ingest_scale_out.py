"""Many workers at once: two `celery -A ingest worker` processes, each a prefork worker of two, on one queue of the
real Redis, writing to the real node. One catalog ingested by all of them, and every batch delivered twice at once,
each end with the exact document count, no video twice, and every video found by a query on its own IDs (which
are all in the registry). Each prints one line (pytest -s) with what happened."""
import json
import threading
import time

import pytest

from grdr_plugin.growth import grow_dataset
from ingest.schemas import Summary
from ingest.submit import Plan, enqueue, make_plan, wait
from ingest.target import prepare_target
from ingest.worker_process import celery_workers
from tests.conftest import shared_dataset
from tests.faults import assert_indexed_once_and_searchable, seconds_since

PROCESSES, CONCURRENCY = 2, 2
VIDEOS = 10_000
BATCH = 250  # 40 batches: every one of the 4 slots takes several
DUPLICATED_VIDEOS = 4_000
DUPLICATED_BATCH = 500  # 8 batches sent twice: long enough (~1 s each here) for both copies to run side by side
POLL_S = 0.01  # between looks at which batches run: a batch takes hundreds of milliseconds


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = grow_dataset(shared_dataset("msrvtt"), VIDEOS, tmp_path_factory.mktemp("scale-out") / "msrvtt-10k")
    ids = [json.loads(line)["video_id"] for line in (root / "catalog.jsonl").open()]
    assert len(set(ids)) == VIDEOS
    return root, ids


class Running:
    """Watches a run's batches from another thread: which ran at the same moment, and on which worker process."""

    def __init__(self, results: list):
        self.results = results
        self.seen: dict[str, tuple[str, int]] = {}  # task id -> (worker hostname, pid) while it ran
        self.together: set[frozenset[str]] = set()  # pairs of task ids seen running at the same moment
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "Running":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._stop.is_set():
            now = {}
            for r in self.results:
                meta = r.backend.get_task_meta(r.id)  # STARTED carries the pid and hostname of the process running it
                if meta["status"] == "STARTED":
                    now[r.id] = (meta["result"]["hostname"], meta["result"]["pid"])
            self.seen.update(now)
            self.most = max(self.most, len(now))
            self.together |= {frozenset((a, b)) for a in now for b in now if a < b}
            time.sleep(POLL_S)


def test_two_worker_processes_of_two_ingest_one_catalog_exactly_once(client, ingest_alias, tiny_model_dir, catalog,
                                                                      tmp_path):
    root, ids = catalog
    plan = make_plan(dataset=root, batch_size=BATCH)
    t0 = time.monotonic()
    with celery_workers(processes=PROCESSES, concurrency=CONCURRENCY, log_path=tmp_path / "workers.log") as workers:
        sub = enqueue(plan, prepare_target(client, ingest_alias, tiny_model_dir), queue=workers.queue)
        with Running(sub.results) as running:
            summary, extra = wait(sub)
    wall = seconds_since(t0)
    assert (summary.failed, summary.indexed, summary.updated, extra["resent"]) == (0, VIDEOS, 0, 0), \
        summary.errors[:5]
    assert_indexed_once_and_searchable(client, ingest_alias, set(ids))
    hosts = {r.backend.get_task_meta(r.id)["worker"].split("@")[0] for r in sub.results}
    assert hosts == {f"{workers.queue}-{i + 1}" for i in range(PROCESSES)}, hosts  # both processes took batches
    pids = {pid for _, pid in running.seen.values()}
    assert running.most > CONCURRENCY and len(pids) > PROCESSES, (running.most, pids)  # both ran batches at once
    print(f"\n[scale-out] {PROCESSES} worker processes x {CONCURRENCY}: {VIDEOS} videos in {wall} s, "
          f"{len(pids)} pool processes ran batches, up to {running.most} seen running in one look; "
          f"{summary.indexed} indexed once")


def test_each_batch_delivered_to_two_workers_at_once_leaves_one_copy_of_each_video(client, ingest_alias,
                                                                                    tiny_model_dir, catalog, tmp_path):
    root, ids = catalog
    once = make_plan(dataset=root, batch_size=DUPLICATED_BATCH)
    once.batches = once.batches[:DUPLICATED_VIDEOS // DUPLICATED_BATCH]
    twice = Plan([batch for batch in once.batches for _ in range(2)])  # each batch's two copies queued side by side
    t0 = time.monotonic()
    with celery_workers(processes=PROCESSES, concurrency=CONCURRENCY, log_path=tmp_path / "workers.log") as workers:
        sub = enqueue(twice, prepare_target(client, ingest_alias, tiny_model_dir), queue=workers.queue)
        with Running(sub.results) as running:
            summary, _ = wait(sub)
    assert (summary.failed, summary.indexed, summary.updated) == (0, DUPLICATED_VIDEOS, DUPLICATED_VIDEOS)
    for (first, second), (_, size) in zip(zip(sub.results[::2], sub.results[1::2]), once.batches):
        a, b = Summary.model_validate(first.result), Summary.model_validate(second.result)
        # whichever copy wrote a video first created it, the other overwrote it: never two documents
        assert (a.indexed + b.indexed, a.updated + b.updated) == (size, size), (a, b)
    pairs = [frozenset((x.id, y.id)) for x, y in zip(sub.results[::2], sub.results[1::2])]
    at_once = [p for p in pairs if p in running.together and len({running.seen[t] for t in p}) == 2]
    assert at_once, "no batch ran in two worker processes at the same moment"
    assert_indexed_once_and_searchable(client, ingest_alias, set(ids[:DUPLICATED_VIDEOS]))
    print(f"\n[scale-out] every batch sent twice: {len(pairs)} batches of {DUPLICATED_BATCH} in "
          f"{seconds_since(t0)} s, {len(at_once)} of them run by two pool processes at the same moment; "
          f"{summary.indexed} created + {summary.updated} overwritten = one copy of each of {DUPLICATED_VIDEOS} videos")
