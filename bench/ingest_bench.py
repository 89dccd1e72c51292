"""Measure ingest: videos/s of one worker process from features, and task success -> findable latency.

    python -m bench.ingest_bench --dataset ../shared/datasets/tvr-proxy/msrvtt --model MODEL_DIR --scale 40000

Builds a scaled copy of the dataset (bench.scale: rows tiled with noise and fresh video_ids,
so IDs and vectors differ), starts one solo `celery -A ingest worker` on a private queue, ingests into a fresh
index, and reports wall-clock videos/s, the worker's seconds per stage, and the latency from a
batch's success to (a) its IDs read back by a registry reader and (b) its video found by a query
on its semantic ID. Needs OpenSearch + Redis (`grdr cluster start`).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

from bench.scale import grow_dataset
from grdr_plugin.id_registry import REGISTRY_INDEX, RegistryReader
from grdr_plugin.index import ID_FIELD, drop_index
from grdr_plugin.metrics import per_second
from grdr_plugin.settings import Settings
from ingest.config import get_ingest_settings
from ingest.submit import enqueue, make_plan
from ingest.target import prepare_target
from ingest.worker_process import celery_worker

POLL_S = 0.01  # between searches for the new video: the resolution of the latency measured
BATCH_TIMEOUT_S = 3600  # per batch of the measured run: a stuck worker fails the run instead of hanging it
SINGLE_TIMEOUT_S = 600  # the warm-up batch and the held-back batch, one task each
DEFAULT_SCALE = 40_000  # videos: the catalog size docs/INGEST.md's measurements use
WARMUP_VIDEOS = 200  # enough to load the model and map the dynamic fields, small enough to cost ~a second


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


def run(dataset: Path, model: Path, scale: int, batch_size: int, keep_index: bool = False,
        log: Optional[Path] = None) -> dict:
    settings = Settings()
    client = settings.opensearch_client()
    alias = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        # One extra batch of new videos, held back to measure success -> findable on its own.
        data = grow_dataset(dataset, scale + batch_size, Path(tmp) / "data", keep_originals=False)
        plan = make_plan(dataset=data, batch_size=batch_size)
        held_back = make_plan(dataset=data, batch_size=batch_size)
        plan.batches, held_back.batches = plan.batches[:-1], plan.batches[-1:]
        target = prepare_target(client, alias, model)
        try:
            with celery_worker(log_path=log) as queue:
                # Warm-up batch: model load, first connection, mapping of dynamic fields are one-off costs.
                warm = make_plan(dataset=data, batch_size=min(batch_size, WARMUP_VIDEOS))
                warm.batches = warm.batches[:1]
                enqueue(warm, target, queue=queue).results[0].get(timeout=SINGLE_TIMEOUT_S)
                t0 = time.perf_counter()
                sub = enqueue(plan, target, queue=queue)
                summaries = [r.get(timeout=BATCH_TIMEOUT_S) for r in sub.results]
                wall = time.perf_counter() - t0
                latency = findable_latency(client, alias, lambda: enqueue(held_back, target, queue=queue).results[0],
                                           data, held_back.batches[0][0].first_row)
        finally:
            if not keep_index:
                drop_index(client, alias)
                client.delete_by_query(index=REGISTRY_INDEX, body={"query": {"term": {"alias": alias}}},
                                       ignore=[404], conflicts="proceed")
    stages: dict[str, float] = {}
    for s in summaries:
        for k, v in s["timings_s"].items():
            stages[k] = stages.get(k, 0.0) + v
    videos = sum(s["indexed"] + s["updated"] for s in summaries)
    return {"videos": videos, "failed": sum(s["failed"] for s in summaries), "batch_size": batch_size,
            "bulk_chunk_size": get_ingest_settings().bulk_chunk_size, "wall_s": round(wall, 3),
            "videos_per_s": per_second(videos, wall),
            "worker_stage_s": {k: round(v, 3) for k, v in stages.items()},
            "worker_busy_videos_per_s": per_second(videos, sum(stages.values())),
            **{k: round(v, 4) for k, v in latency.items()}}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--scale", type=int, default=DEFAULT_SCALE)
    ap.add_argument("--batch-size", type=int, default=get_ingest_settings().batch_size)
    ap.add_argument("--worker-log", type=Path, default=None)
    args = ap.parse_args(argv)
    print(json.dumps(run(args.dataset, args.model, args.scale, args.batch_size, log=args.worker_log)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
