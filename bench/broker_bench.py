"""Measure what the local Redis's fsync policy costs ingest: enqueue rate and videos/s per GRDR_REDIS_APPENDFSYNC.

    python -m bench.broker_bench --dataset ../shared/datasets/tvr-proxy/msrvtt --model MODEL_DIR \\
        --scale 20000 --batch-size 50 --appendfsync everysec,always

For each policy it starts a Redis of its own (AOF on, that policy, a temporary folder, --port) the way
`grdr cluster start` does, runs `bench.ingest_bench` (one worker process) with the broker and result backend
pointed at it and OpenSearch where the GRDR_* settings say, and stops it. Small batches stress the broker:
each batch is a handful of Redis writes (enqueue, delivery, started, result, ack).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, get_args

from grdr_plugin.cluster import redis_server
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.settings import Settings

POLICIES = get_args(Settings.model_fields["redis_appendfsync"].annotation)  # what GRDR_REDIS_APPENDFSYNC accepts
COMPARED = ("everysec", "always")  # the default, and the one that fsyncs every write
DEFAULT_PORT = 6393  # clear of the default cluster's Redis (6379)
DEFAULT_SCALE = 20_000  # videos: 400 batches of 50, enough broker traffic to time
DEFAULT_BATCH = 50  # videos per batch: small, so that broker writes are a visible share of the work


def measure(policy: str, port: int, dataset: Path, model: Path, scale: int, batch_size: int) -> dict:
    """One policy: its own Redis, then bench.ingest_bench against it; -> the ingest run's numbers."""
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), redis_port=port, redis_appendfsync=policy)
        paths = ClusterPaths.from_settings(settings)
        if redis_server.start(settings, paths).already_running:
            raise SystemExit(f"--port {port}: a Redis already answers there; pick a free port")
        try:
            url = f"redis://127.0.0.1:{port}"
            env = {**os.environ, "GRDR_BROKER_URL": f"{url}/0", "GRDR_RESULT_BACKEND": f"{url}/1"}
            proc = subprocess.run([sys.executable, "-m", "bench.ingest_bench", "--dataset", str(dataset),
                                   "--model", str(model), "--scale", str(scale), "--batch-size", str(batch_size),
                                   "--workers", "1"], env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"bench.ingest_bench failed ({proc.returncode}): {proc.stderr[-2000:]}")
        finally:
            redis_server.stop(settings, paths)
    (run,) = json.loads(proc.stdout.strip().splitlines()[-1])["runs"]
    return {"appendfsync": policy, **{k: run[k] for k in ("videos", "videos_per_s", "wall_s", "enqueue_s",
                                                         "enqueue_batches_per_s", "cpu_s")}}


def _policies(text: str) -> list[str]:
    policies = text.split(",")
    bad = [p for p in policies if p not in POLICIES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown policy {bad[0]!r}: choose from {', '.join(POLICIES)}")
    return policies


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--scale", type=int, default=DEFAULT_SCALE)
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    ap.add_argument("--appendfsync", type=_policies, default=list(COMPARED), help="policies to compare, e.g. "
                    "everysec,always")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = ap.parse_args(argv)
    runs = [measure(p, args.port, args.dataset, args.model, args.scale, args.batch_size) for p in args.appendfsync]
    print(json.dumps({"batch_size": args.batch_size, "runs": runs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
