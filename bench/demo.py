"""`make demo`: the main job end to end on a running local cluster.

train (or load) the model -> ingest the catalog through a Celery worker -> sample searches with
timings -> test-query R@1/5/10 measured through OpenSearch, next to the in-process numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.evaluate import HYBRID_OF_MODE

console = Console()
SAMPLES = 5  # sample searches shown: a screenful of tables
SAMPLE_HITS = 5  # hits per sample search
TITLE_CHARS = 50  # a title column that keeps each table row on one line
DEMO_MODES = (*HYBRID_OF_MODE, "bm25")


def grdr(*args: str, env: dict[str, str] | None = None) -> dict:
    """Run a `grdr` command, streaming its progress; returns its --json object."""
    cmd = [sys.executable, "-m", "cli.main", *args, "--json"]
    console.print(f"[bold]$ grdr {' '.join(args)}[/bold]")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"`grdr {' '.join(args)}` failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--queries", type=int, default=0, help="test queries for the recall table (0 = all)")
    ap.add_argument("--modes", default=",".join(DEMO_MODES), help=f"comma-separated, of {', '.join(DEMO_MODES)}")
    a = ap.parse_args(argv)
    modes = tuple(m for m in a.modes.split(",") if m)
    if not modes or set(modes) - set(DEMO_MODES):
        ap.error(f"--modes: choose from {', '.join(DEMO_MODES)}")

    t0 = time.perf_counter()
    if (a.model / "config.json").is_file():
        console.print(f"model: {a.model} (already trained; delete it to retrain)")
    else:
        grdr("train", "--dataset", str(a.dataset), "--out", str(a.model))

    from grdr_plugin.data import load_dataset
    from grdr_plugin.index import alias_target, fingerprint_of
    from grdr_plugin.model.artifacts import read_config
    from grdr_plugin.settings import get_settings
    from ingest.worker_process import celery_worker

    client = get_settings().opensearch_client()
    current = alias_target(client, a.index)
    fingerprint = read_config(a.model).fingerprint
    # Same model: re-ingest overwrites in place. Another model: build a new index and swap the alias.
    reindex = current is not None and fingerprint_of(client.indices.get_mapping(index=current)) != fingerprint
    with celery_worker(log_path=Path(".grdr") / "demo-worker.log") as queue:
        console.print(f"Celery worker up (queue {queue})")
        summary = grdr("ingest", "--dataset", str(a.dataset), "--model", str(a.model), "--index", a.index,
                       "--wait", *(["--reindex"] if reindex else []), env={"GRDR_INGEST_QUEUE": queue})
    console.print(f"ingested: {summary['indexed']} new, {summary['updated']} updated, {summary['failed']} failed")

    from bench.evaluate import evaluate_through_opensearch
    from query.searcher import Searcher

    ds = load_dataset(a.dataset)
    searcher = Searcher(a.model, a.index)
    rows = ds.test_queries()
    for r in rows[:: max(1, len(rows) // SAMPLES)][:SAMPLES]:
        res = searcher.search(ds.query_text[r], k=SAMPLE_HITS)
        table = Table(title=f"{ds.query_text[r]!r} (truth: {ds.video_ids[ds.query_video[r]]})", title_justify="left")
        for col in ("#", "video_id", "score", "matched_id", "title"):
            table.add_column(col)
        for i, h in enumerate(res.hits, 1):
            mark = " ✓" if h.video_id == ds.video_ids[ds.query_video[r]] else ""
            title = (h.title or "")[:TITLE_CHARS]
            table.add_row(str(i), h.video_id + mark, f"{h.score:.4f}", h.matched_id or "", title)
        console.print(table)
        console.print("  " + "  ".join(f"{k} {v:.1f} ms" for k, v in res.timings_ms.items()))

    console.print("\n[bold]test queries through OpenSearch[/bold]")
    res = evaluate_through_opensearch(ds, searcher, modes=modes, limit=a.queries or None)
    table = Table(title=f"{ds.name}: {res['queries']} test queries, {res['videos']} videos")
    for col in ("mode", "R@1", "R@5", "R@10", "p50 ms", "p99 ms"):
        table.add_column(col)
    for mode in modes:
        m = res[mode]
        lat = m.get("stages_ms", {}).get("total", {})
        table.add_row(mode, str(m["R@1"]), str(m["R@5"]), str(m["R@10"]), str(lat.get("p50_ms", "")),
                      str(lat.get("p99_ms", "")))
    console.print(table)
    console.print(f"demo done in {time.perf_counter() - t0:.0f} s")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
