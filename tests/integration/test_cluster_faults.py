"""A 3-node cluster (replicas 1) losing a node: mid-ingest, under query load, and while IDs are being published.

One LocalCluster of this module's own (HTTP 9270-9272, transport 9370-9372, Redis 6392). Every grdr process it
runs (the Celery worker, `grdr ingest`, `grdr serve`, the registry follower) gets all three node URLs in
GRDR_OPENSEARCH_URL, as a deployment would. Each test SIGKILLs one node mid-run, starts it again with `grdr cluster
start --nodes 3`, and ends with the cluster green and nothing lost; each prints its numbers (pytest -s), which
docs/RELIABILITY.md#node-loss quotes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

import pytest
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError

from bench.loadtest import LoadConfig, LoadReport, read_texts, run_load
from grdr_plugin.cluster.paths import node_name
from grdr_plugin.growth import grow_dataset
from grdr_plugin.id_registry import REGISTRY_INDEX, publish_ids, read_head
from grdr_plugin.settings import Settings
from ingest.worker_process import celery_worker
from tests.conftest import shared_dataset
from tests.faults import assert_indexed_once_and_searchable
from tests.support.multinode import GRDR, REPO, LocalCluster
from tests.support.serve_process import grdr_serve

NODES = 3
VIDEOS = 10_000
BATCH = 250
KILL_AFTER = VIDEOS // 10  # videos indexed before the node is killed: mid-run, with most of the run still to go
INGEST_TIMEOUT_S = 600.0  # 10,000 videos through one solo worker beside 3 nodes on 2 shared cores, with slack
HEALTH_TIMEOUT_S = 240  # the returned node recovers its shard copies (ops-based: seconds) before green; slack
REROUTE_TIMEOUT_S = 90.0  # a SIGKILLed node's sockets close at once; an election (if it led) takes seconds
POLL_S = 0.1  # health and count polls while a fault lands

CLIENTS, LOAD_S, WARMUP_S = 8, 60.0, 5.0  # test_load.py's clients and warm-up, for long enough to span the kill
KILL_INTO_LOAD_S = 10.0  # load before the kill: every client warm, the server's pools filled
RETURN_LOAD_S = 15.0  # load right after the node rejoined, while it recovers its shard copies
ASKED_AGAIN = "asking OpenSearch again"  # query.executor's log line for each retried _msearch

PUBLISHERS = 4  # threads publishing at once, each its own IDs
IDS_PER_PUBLISH = 20  # small publishes: hundreds of counter bumps, some in flight when the primary dies
# publishing goes on before the kill (the follower in step) and long past the re-route (IDs of the new term)
PUBLISH_BEFORE_KILL_S, PUBLISH_AFTER_KILL_S = 5.0, 12.0
PUBLISH_GIVE_UP_S = 60.0  # a publish retried this long without success fails the test (ingest would retry on)
ARRIVAL_BOUND_S = 2.0  # the bound: an ID reaches every query process within 2 s of its publish returning


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster(http=9270, transport=9370, redis=6392)
    try:
        c.start(NODES)
        yield c
    finally:
        c.remove()


@pytest.fixture(scope="module")
def env(cluster) -> dict[str, str]:
    """The cluster's variables with every node in GRDR_OPENSEARCH_URL."""
    return {**cluster.env(), "GRDR_OPENSEARCH_URL": ",".join(f"http://127.0.0.1:{cluster.http + i}"
                                                              for i in range(NODES))}


@pytest.fixture(scope="module")
def nodes(env):
    """A client of every node, built as every grdr process builds one."""
    return Settings(opensearch_url=env["GRDR_OPENSEARCH_URL"]).opensearch_client()


@pytest.fixture(scope="module")
def worker_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("worker") / "worker.log"


@pytest.fixture(scope="module")
def worker_queue(env, worker_log):
    with celery_worker(log_path=worker_log, extra_env=env) as queue:
        yield queue


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, set[str]]:
    root = grow_dataset(shared_dataset("msrvtt"), VIDEOS, tmp_path_factory.mktemp("nodeloss") / "msrvtt-10k")
    ids = {json.loads(line)["video_id"] for line in (root / "catalog.jsonl").open()}
    assert len(ids) == VIDEOS
    return root, ids


def _ingest(env, queue: str, dataset: Path, model: Path, alias: str, logs: Path) -> subprocess.Popen:
    """`grdr ingest --wait --json` of `dataset` into a new 3-shard, 1-replica catalog, in the background."""
    out, err = open(logs / "ingest.out", "w"), open(logs / "ingest.err", "w")
    with out, err:
        return subprocess.Popen([*GRDR, "ingest", "--dataset", str(dataset), "--model", str(model), "--index", alias,
                                 "--shards", "3", "--replicas", "1", "--batch-size", str(BATCH), "--wait", "--json"],
                                env={**env, "GRDR_INGEST_QUEUE": queue}, stdout=out, stderr=err, cwd=REPO)


def _ingest_summary(proc: subprocess.Popen, logs: Path, timeout_s: float) -> dict:
    code = proc.wait(timeout=timeout_s)
    out = (logs / "ingest.out").read_text()
    assert code == 0, out + (logs / "ingest.err").read_text()[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _wait_until(what: str, check: Callable[[], bool], timeout_s: float,
                alive: Optional[subprocess.Popen] = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert alive is None or alive.poll() is None, f"the process exited ({alive.returncode}) before {what}"
        assert time.monotonic() < deadline, f"not {what} after {timeout_s:.0f} s"
        time.sleep(POLL_S)


def _count(client, index: str) -> int:
    try:
        return client.count(index=index)["count"]
    except TransportError:  # not created yet
        return 0


def _primary_holder(client, index: str) -> int:
    """The node (0-based) that holds the primary of shard 0 of `index`."""
    rows = client.cat.shards(index=index, format="json", h="shard,prirep,state,node")
    (name,) = [r["node"] for r in rows if r["shard"] == "0" and r["prirep"] == "p" and r["state"] == "STARTED"]
    return [node_name(i) for i in range(NODES)].index(name)


def _cluster_manager(client) -> int:
    """The elected cluster manager (0-based); with 3 shards x 2 copies on 3 nodes it holds shard copies too."""
    (row,) = client.cat.cluster_manager(format="json")
    return [node_name(i) for i in range(NODES)].index(row["node"])


def _kill(pids: list[Optional[int]], node: int) -> float:
    """SIGKILL node `node` (pids: LocalCluster.node_pids(), read beforehand: it takes a CLI call); -> time.time()."""
    assert pids[node] is not None, f"{node_name(node)} does not run"
    os.kill(pids[node], signal.SIGKILL)
    return time.time()


def _rerouted(client) -> float:
    """time.time() once the cluster has dropped the killed node and every primary is active again (health yellow
    or green on NODES - 1 nodes): replicas promoted, requests routed to live copies only."""
    found: list[float] = []

    def check() -> bool:
        try:
            h = client.cluster.health(request_timeout=2)
        except (OpenSearchConnectionError, TransportError):  # the node was the cluster manager: an election runs
            return False
        if h["number_of_nodes"] == NODES - 1 and h["status"] in ("yellow", "green"):
            found.append(time.time())
        return bool(found)

    _wait_until("re-routed", check, REROUTE_TIMEOUT_S)
    return found[0]


def _green(client) -> str:
    h = client.cluster.health(wait_for_status="green", wait_for_nodes=str(NODES), timeout=f"{HEALTH_TIMEOUT_S}s",
                              request_timeout=HEALTH_TIMEOUT_S + 30)
    return h["status"]


def _in_background(fn: Callable[[], object]) -> tuple[threading.Thread, dict]:
    """fn() in a thread; the dict gets its "result" or "error" and the time.time() it "ended"."""
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            out["error"] = exc
        out["ended"] = time.time()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _joined(thread: threading.Thread, out: dict, timeout_s: float):
    thread.join(timeout_s)
    assert not thread.is_alive(), f"still running after {timeout_s:.0f} s"
    if "error" in out:
        raise out["error"]
    return out["result"]


def test_a_node_sigkilled_mid_ingest_loses_no_video(cluster, env, nodes, worker_queue, worker_log, tiny_model_dir,
                                                     corpus, tmp_path):
    dataset, ids = corpus
    alias = f"nodeloss-ingest-{uuid.uuid4().hex[:6]}"
    pids, retries_before = cluster.node_pids(), worker_log.read_text().count("bulk retry")
    t0 = time.time()
    proc = _ingest(env, worker_queue, dataset, tiny_model_dir, alias, tmp_path)
    try:
        _wait_until(f"{KILL_AFTER} videos indexed", lambda: _count(nodes, alias) >= KILL_AFTER, INGEST_TIMEOUT_S, proc)
        victim = _primary_holder(nodes, alias)
        t_kill = _kill(pids, victim)
        at_kill = _count(nodes, alias)
        rerouted = _rerouted(nodes) - t_kill
        # The run goes on with two nodes; the killed one comes back while it still runs, or after.
        _wait_until("half the videos indexed", lambda: _count(nodes, alias) >= VIDEOS // 2, INGEST_TIMEOUT_S, proc)
        cluster.start(NODES)
        down = time.time() - t_kill
        summary = _ingest_summary(proc, tmp_path, INGEST_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 0 < at_kill < VIDEOS, f"the kill must land mid-run, not after {at_kill} of {VIDEOS} videos"
    lost = VIDEOS - (summary["indexed"] + summary["updated"])
    assert (summary["failed"], lost) == (0, 0), summary
    assert_indexed_once_and_searchable(nodes, alias, ids)  # exact count, once each, found by its own IDs
    assert _green(nodes) == "green"
    bulk_retries = worker_log.read_text().count("bulk retry") - retries_before
    print(f"\n[node loss] ingest: {time.time() - t0:.1f} s wall; {node_name(victim)} SIGKILLed after "
          f"{at_kill}/{VIDEOS} videos, re-routed {rerouted:.1f} s later, back after {down:.1f} s; {bulk_retries} "
          f"in-task bulk retries; summary indexed {summary['indexed']} updated {summary['updated']} failed "
          f"{summary['failed']}, lost {lost}, duplicates 0; green")


def _error_window(report: LoadReport, t_kill: float) -> str:
    if report.error_window_s is None:
        return "none"
    first, last = (report.started_at + s - t_kill for s in report.error_window_s)
    return f"sent {first:+.1f} s .. {last:+.1f} s from the kill ({last - first:.1f} s)"


def test_a_node_sigkilled_under_query_load_costs_no_error_once_re_routed(cluster, env, nodes, worker_queue,
                                                                           tiny_model_dir, tmp_path):
    alias = f"nodeloss-load-{uuid.uuid4().hex[:6]}"
    msrvtt = shared_dataset("msrvtt")
    summary = _ingest_summary(_ingest(env, worker_queue, msrvtt, tiny_model_dir, alias, tmp_path), tmp_path,
                              INGEST_TIMEOUT_S)
    assert summary["failed"] == 0 and summary["indexed"] > 0
    texts = read_texts(None, msrvtt)
    pids = cluster.node_pids()
    with grdr_serve(tiny_model_dir, alias, tmp_path / "serve.log", env=env) as (url, _):
        cfg = LoadConfig(url=url, texts=texts, clients=CLIENTS, duration_s=LOAD_S, warmup_s=WARMUP_S)
        load, load_out = _in_background(lambda: run_load(cfg))
        time.sleep(KILL_INTO_LOAD_S)
        victim = _cluster_manager(nodes)  # the hardest node to lose: an election comes before the re-routing
        assert any(r["node"] == node_name(victim) for r in nodes.cat.shards(index=alias, format="json"))
        t_kill = _kill(pids, victim)
        t_rerouted = _rerouted(nodes)
        # The node starts again at once, and whatever of its return falls in the load is covered by it.
        back, back_out = _in_background(lambda: cluster.start(NODES))
        report: LoadReport = _joined(load, load_out, LOAD_S + 120)
        _joined(back, back_out, HEALTH_TIMEOUT_S)
        recovering = nodes.cluster.health()["status"]
        after = run_load(cfg.model_copy(update={"duration_s": RETURN_LOAD_S}))  # the node is back, recovering
    status = _green(nodes)
    failed = sum(report.errors.values())
    # searches that came back partial (a shard's copy gone mid-request) or failed, and were asked again
    asked_again = (tmp_path / "serve.log").read_text().count(ASKED_AGAIN)
    print(f"\n[node loss] under load: {CLIENTS} clients x {report.duration_s:.0f} s, {report.requests} requests, "
          f"{failed} errors {report.errors} (window: {_error_window(report, t_kill)}), {asked_again} _msearch retries "
          f"in the server; {node_name(victim)} (the elected cluster manager) SIGKILLed "
          f"{t_kill - report.started_at:.1f} s in, re-routed {t_rerouted - t_kill:.1f} s after the kill, back "
          f"{back_out['ended'] - t_kill:.1f} s after it; then {after.duration_s:.0f} s more from its return "
          f"(health {recovering}): {after.requests} requests, {sum(after.errors.values())} errors; {status}")
    assert report.ok > 0 and report.requests == report.ok + failed
    if report.error_window_s is not None:
        last_sent = report.started_at + report.error_window_s[1]
        assert last_sent <= t_rerouted, (f"a request sent {last_sent - t_rerouted:.1f} s after the cluster re-routed "
                                         f"failed: {report.error_examples}")
    assert after.ok > 0 and after.errors == {}, after.error_examples
    assert status == "green"


def _publisher(client, alias: str, worker: int, stop: threading.Event, done: list, retries: list,
               gave_up: list) -> None:
    """Publish IDS_PER_PUBLISH new IDs (first level: the worker) at a time until `stop`; a failed publish is
    retried, as an ingest batch would be. done gets (ids, time.time() its publish returned)."""
    n = 0
    while not stop.is_set():
        ids = [f"{worker}-{(n + i) // 128}-{(n + i) % 128}" for i in range(IDS_PER_PUBLISH)]
        n += IDS_PER_PUBLISH
        give_up = time.monotonic() + PUBLISH_GIVE_UP_S
        while True:
            try:
                publish_ids(client, alias, ids)
                break
            except (OpenSearchConnectionError, TransportError) as exc:
                retries.append(repr(exc)[:200])
                if time.monotonic() > give_up:
                    gave_up.append(f"publishing {ids[0]}.. failed for {PUBLISH_GIVE_UP_S:.0f} s: {exc!r}")
                    return
                time.sleep(POLL_S)
        done.append((ids, time.time()))


def test_ids_published_across_a_registry_fail_over_reach_another_process_within_2_s(cluster, env, nodes, tmp_path):
    alias = f"nodeloss-registry-{uuid.uuid4().hex[:6]}"
    base = f"{alias}-base"  # an empty catalog: every ID the follower learns comes from the registry
    nodes.indices.create(index=base, body={"mappings": {"properties": {"grdr_ids": {"type": "keyword"}}}})
    publish_ids(nodes, alias, ["127-127-127"])  # the registry and this alias's counter exist before anyone follows
    term_before = read_head(nodes, alias).primary_term
    err = open(tmp_path / "follower.err", "w")
    follower = subprocess.Popen([*GRDR[:1], "-m", "tests.support.registry_follower", alias, base, "--levels", "3",
                                 "--codebook-size", "128"], env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                                cwd=REPO)
    seen: dict[str, float] = {}
    reader = threading.Thread(target=lambda: seen.update(
        (sid, float(t)) for t, sid in (line.split() for line in follower.stdout if line.strip() != "ready")),
        daemon=True)
    stop = threading.Event()
    done: list[tuple[list[str], float]] = []
    retries: list[str] = []
    gave_up: list[str] = []
    try:
        assert follower.stdout.readline().strip() == "ready", "the follower did not start: see follower.err"
        reader.start()
        victim = _primary_holder(nodes, REGISTRY_INDEX)
        pids = cluster.node_pids()
        threads = [threading.Thread(target=_publisher, args=(nodes, alias, w, stop, done, retries, gave_up),
                                    daemon=True) for w in range(PUBLISHERS)]
        for t in threads:
            t.start()
        time.sleep(PUBLISH_BEFORE_KILL_S)
        t_kill = _kill(pids, victim)
        rerouted = _rerouted(nodes) - t_kill
        time.sleep(PUBLISH_AFTER_KILL_S)
        stop.set()
        for t in threads:
            t.join(PUBLISH_GIVE_UP_S + 10)
        time.sleep(ARRIVAL_BOUND_S + 1)  # what was published last has had its time to arrive
    finally:
        stop.set()
        follower.kill()
        follower.wait()
        err.close()
    reader.join(10)
    term_after = read_head(nodes, alias).primary_term
    cluster.start(NODES)
    status = _green(nodes)

    published = {sid: t for ids, t in done for sid in ids}
    after_kill = {sid for sid, t in published.items() if t > t_kill}
    missing = sorted(set(published) - set(seen))
    late = {sid: round(seen[sid] - t, 3) for sid, t in published.items()
            if sid in seen and seen[sid] - t > ARRIVAL_BOUND_S}
    worst = max((seen[s] - t for s, t in published.items() if s in seen), default=0.0)
    worst_after = max((seen[s] - published[s] for s in after_kill if s in seen), default=0.0)
    refresh_failures = (tmp_path / "follower.err").read_text().count("\n")
    print(f"\n[node loss] registry: {len(published)} IDs in {len(done)} publishes by {PUBLISHERS} threads; registry "
          f"primary on {node_name(victim)} SIGKILLed, re-routed {rerouted:.1f} s later, primary term {term_before} -> "
          f"{term_after}; {len(after_kill)} IDs published after the kill; {len(retries)} publish retries; slowest "
          f"arrival {worst:.2f} s ({worst_after:.2f} s after the kill); {refresh_failures} follower refresh failures; "
          f"{status}")
    assert not gave_up, gave_up
    assert term_after > term_before, "no replica was promoted: the kill missed the registry's primary"
    assert after_kill, "nothing was published after the fail-over"
    assert not missing, f"{len(missing)} published IDs never reached the other process: {missing[:10]}"
    assert not late, f"{len(late)} IDs arrived later than {ARRIVAL_BOUND_S} s: {dict(list(late.items())[:10])}"
    assert status == "green"
