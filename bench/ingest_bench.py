"""Measure ingest: videos/s with 1, 2, 4 ... worker processes from features, where the time goes, and task
success -> findable latency.

    python -m bench.ingest_bench --dataset ../shared/datasets/tvr-proxy/msrvtt --model MODEL_DIR --scale 100000 \\
        --workers 1,2,4

Builds a scaled copy of the dataset once (grdr_plugin.growth: rows tiled with noise and fresh video_ids, so IDs and
vectors differ). For each worker count it starts that many `celery -A ingest worker` processes (prefork, each
running --concurrency batches at once) on a private queue, ingests the copy into a fresh index, and reports
wall-clock videos/s, the workers' seconds per stage, the CPU seconds the workers, the OpenSearch node and Redis
spent, and the latency from a batch's success to (a) its IDs read back by a registry reader and (b) its video found
by a query on its semantic ID. Needs OpenSearch + Redis (`grdr cluster start`).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

import psutil

from grdr_plugin.growth import grow_dataset
from grdr_plugin.id_registry import REGISTRY_INDEX, RegistryReader
from grdr_plugin.index import ID_FIELD, drop_index
from grdr_plugin.metrics import per_second
from grdr_plugin.settings import Settings
from ingest.config import get_ingest_settings
from ingest.submit import Plan, enqueue, make_plan
from ingest.target import prepare_target
from ingest.worker_process import celery_workers

POLL_S = 0.01  # between searches for the new video: the resolution of the latency measured
BATCH_TIMEOUT_S = 3600  # per batch of the measured run: a stuck worker fails the run instead of hanging it
SINGLE_TIMEOUT_S = 600  # the warm-up batches and the held-back batch
DEFAULT_SCALE = 100_000  # videos: the catalog size docs/INGEST.md's measurements use
DEFAULT_CONCURRENCY = 2  # batches each worker process runs at once (prefork children)
WARMUP_VIDEOS = 200  # per pool process: loads the model and maps the dynamic fields, costs ~a second


def findable_latency(client, alias: str, submit_batch, dataset: Path, first_row: int) -> dict[str, float]:
    """Seconds from a batch's success to its first video being (a) known to a query process's registry
    reader that was following the alias already, and (b) found by a query on its semantic ID.

    submit_batch() enqueues the batch (of videos never ingested before) and returns its AsyncResult.
    """
    vid = json.loads((dataset / "catalog.jsonl").read_text().splitlines()[first_row])["video_id"]
    reader = RegistryReader(alias)
    reader.start_at_head(client)  # a running query process: knows everything published so far
    head_seq = reader.max_seq_no
    t0 = time.perf_counter()
    submit_batch().get(timeout=SINGLE_TIMEOUT_S)
    done = time.perf_counter()
    ids = set(client.get(index=alias, id=vid)["_source"][ID_FIELD])
    # IDs another video published earlier were known to the reader already.
    published_before = {"size": len(ids), "query": {"bool": {"filter": [
        {"term": {"alias": alias}}, {"terms": {"semantic_id": sorted(ids)}},
        {"range": {"_seq_no": {"lte": head_seq}}}]}}}
    known = {h["_source"]["semantic_id"]
             for h in client.search(index=REGISTRY_INDEX, body=published_before)["hits"]["hits"]}
    while not ids <= known:
        known |= set(reader.poll(client))
    registry = time.perf_counter() - done
    body = {"size": 1, "query": {"bool": {"filter": [{"terms": {ID_FIELD: sorted(ids)[:1]}},
                                                     {"ids": {"values": [vid]}}]}}}
    while client.search(index=alias, body=body)["hits"]["total"]["value"] < 1:
        time.sleep(POLL_S)
    return {"task_wait_s": done - t0, "success_to_registry_s": registry,
            "success_to_searchable_s": time.perf_counter() - done}


def local_processes(client, broker_url: str, worker_pids: list[int]) -> dict[str, list[psutil.Process]]:
    """The processes of this machine that do the work: the workers (with their pool children), the OpenSearch
    nodes the client reaches, Redis. A service on another machine is left out (its CPU is not ours to read)."""
    import redis

    def here(pid: int, marker: str) -> list[psutil.Process]:
        try:
            proc = psutil.Process(pid)
            return [proc] if marker in " ".join(proc.cmdline()) else []
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return []

    nodes = client.nodes.info(metric="process")["nodes"].values()
    workers = [psutil.Process(pid) for pid in worker_pids]
    return {"workers": workers + [c for w in workers for c in w.children(recursive=True)],
            "opensearch": [p for n in nodes for p in here(n["process"]["id"], "org.opensearch.bootstrap")],
            "redis": here(redis.Redis.from_url(broker_url).info("server")["process_id"], "redis-server")}


def cpu_seconds(groups: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """User + system CPU seconds each group of processes has spent so far."""
    def spent(proc: psutil.Process) -> float:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            return 0.0
        return t.user + t.system + t.children_user + t.children_system
    return {name: sum(spent(p) for p in procs) for name, procs in groups.items()}


def split_plan(data: Path, batch_size: int, warmup_batches: int) -> tuple[Plan, Plan, Plan]:
    """(warm-up, measured, held-back) batches of the grown copy: the last batch is held back to measure
    success -> findable on its own; the warm-up batches repeat the copy's first videos."""
    plan = make_plan(dataset=data, batch_size=batch_size)
    warm = make_plan(dataset=data, batch_size=min(batch_size, WARMUP_VIDEOS))
    return Plan(warm.batches[:warmup_batches]), Plan(plan.batches[:-1]), Plan(plan.batches[-1:])


def run_one(client, settings: Settings, model: Path, data: Path, batch_size: int, processes: int, concurrency: int,
            log: Optional[Path] = None) -> dict:
    """Ingest the grown copy with `processes` worker processes of `concurrency` into a fresh index."""
    slots = processes * concurrency
    warm, plan, held_back = split_plan(data, batch_size, slots)
    alias = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    target = prepare_target(client, alias, model)
    try:
        with celery_workers(processes=processes, concurrency=concurrency, log_path=log) as workers:
            # Warm-up, one batch per pool process: model load, first connection, dynamic field mapping are one-off.
            for r in enqueue(warm, target, queue=workers.queue).results:
                r.get(timeout=SINGLE_TIMEOUT_S)
            groups = local_processes(client, settings.broker_url, workers.pids)
            cpu0 = cpu_seconds(groups)
            t0 = time.perf_counter()
            sub = enqueue(plan, target, queue=workers.queue)
            enqueued = time.perf_counter() - t0
            summaries = [r.get(timeout=BATCH_TIMEOUT_S) for r in sub.results]
            wall = time.perf_counter() - t0
            cpu = {k: v - cpu0[k] for k, v in cpu_seconds(groups).items()}
            latency = findable_latency(client, alias, lambda: enqueue(held_back, target, queue=workers.queue)
                                       .results[0], data, held_back.batches[0][0].first_row)
    finally:
        drop_index(client, alias)
        client.delete_by_query(index=REGISTRY_INDEX, body={"query": {"term": {"alias": alias}}},
                               ignore=[404], conflicts="proceed")
    stages: dict[str, float] = {}
    for s in summaries:
        for k, v in s["timings_s"].items():
            stages[k] = stages.get(k, 0.0) + v
    videos = sum(s["indexed"] + s["updated"] for s in summaries)
    return {"worker_processes": processes, "concurrency": concurrency, "videos": videos,
            "failed": sum(s["failed"] for s in summaries), "wall_s": round(wall, 3),
            "videos_per_s": per_second(videos, wall),
            "enqueue_s": round(enqueued, 3), "enqueue_batches_per_s": per_second(len(sub.results), enqueued),
            "worker_stage_s": {k: round(v, 3) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
            "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
            "cpu_share_of_machine": round(sum(cpu.values()) / (wall * (os.cpu_count() or 1)), 3),
            **{k: round(v, 4) for k, v in latency.items()}}


def run(dataset: Path, model: Path, scale: int, batch_size: int, workers: list[int],
        concurrency: int = DEFAULT_CONCURRENCY, log: Optional[Path] = None) -> dict:
    settings = Settings()
    client = settings.opensearch_client()
    with tempfile.TemporaryDirectory() as tmp:
        # One extra batch of new videos, held back to measure success -> findable on its own.
        data = grow_dataset(dataset, scale + batch_size, Path(tmp) / "data", keep_originals=False)
        runs = [run_one(client, settings, model, data, batch_size, n, concurrency, log) for n in workers]
    return {"videos": scale, "batch_size": batch_size, "bulk_chunk_size": get_ingest_settings().bulk_chunk_size,
            "cpus": os.cpu_count(), "runs": runs}


def _counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected worker counts like 1,2,4, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be >= 1, got {text!r}")
    return counts


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--scale", type=int, default=DEFAULT_SCALE)
    ap.add_argument("--batch-size", type=int, default=get_ingest_settings().batch_size)
    ap.add_argument("--workers", type=_counts, default=[1], help="worker processes per run, e.g. 1,2,4")
    ap.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                    help="batches each worker process runs at once (1: a solo-pool worker)")
    ap.add_argument("--worker-log", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.concurrency < 1:
        ap.error(f"--concurrency: must be >= 1, got {args.concurrency}")
    print(json.dumps(run(args.dataset, args.model, args.scale, args.batch_size, args.workers, args.concurrency,
                         log=args.worker_log)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
