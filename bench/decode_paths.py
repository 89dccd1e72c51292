"""Decode time of the two constrained decoders of one model folder, on the same queries and trie.

  masks      `ModelRuntime.beam_search` through decoder_search.onnx: the whole search of a query in one
             onnxruntime call, the trie as dense validity masks (C**n x C per level, built once outside
             the clock, as the trie store keeps them); only folders whose per-prefix tables fit have it
  trie_walk  `grdr_plugin.decoding.beam_search_by_steps`: decoder_level{n}.onnx once per level, numpy
             walking the trie's valid children per prefix (the prefix tables) in between; what serves
             ID spaces too large for masks, here timed on a folder that has both, and searches recalled at
             prefixes (`--recall-level`: that path alone)

    python -m bench.decode_paths --model models/msrvtt --dataset ../shared/datasets/tvr-proxy/msrvtt \\
        --beam 20 100 300 --queries 200

The trie holds every ID the model gives the dataset's videos (what an index of that catalog holds).
Timed: decoding one query per call; its text encoding and decoder memory run before, untimed, and
the two paths alternate which goes first. Also reported: whether both return the same IDs in the
same order, and their largest score difference.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from grdr_plugin.decoding import beam_search_by_steps, prefix_tables, validity_masks
from grdr_plugin.metrics import latency_summary
from grdr_plugin.runtime import ModelRuntime, Queries

PATHS = ("masks", "trie_walk")


def _decode(runtime: ModelRuntime, path: str, q: Queries, tables: list[np.ndarray], masks: list[np.ndarray],
            beam: int) -> tuple[float, np.ndarray, np.ndarray]:
    t0 = time.perf_counter()
    if path == "masks":
        codes, scores = runtime.beam_search(q, tables, beam, masks=masks)
    else:
        codes, scores = beam_search_by_steps(runtime, q, tables, beam)
    return 1000 * (time.perf_counter() - t0), codes, scores


def measure(runtime: ModelRuntime, texts: list[str], tables: list[np.ndarray], beam: int,
            warmup: int = 5) -> dict[str, Any]:
    """Per-query decode latency of each path the folder has, and how far the two agree."""
    whole = len(tables) == runtime.cfg.levels  # the search graph decodes whole IDs only
    paths = PATHS if whole and runtime.search_session is not None else PATHS[1:]
    masks = validity_masks(tables, runtime.cfg.codebook_size) if "masks" in paths else []
    ms: dict[str, list[float]] = {p: [] for p in paths}
    same, diff = [], 0.0
    for i, text in enumerate(texts[:warmup] + texts):
        q = runtime.encode_queries([text])
        order = paths[i % len(paths):] + paths[: i % len(paths)]
        out = {p: _decode(runtime, p, q, tables, masks, beam) for p in order}
        if i < warmup:
            continue
        for p in paths:
            ms[p].append(out[p][0])
        if len(paths) == 2:
            (_, a, sa), (_, b, sb) = out["masks"], out["trie_walk"]
            same.append(bool(np.array_equal(a, b)))
            finite = np.isfinite(sa)
            diff = max(diff, float(np.abs(sa[finite] - sb[finite]).max(initial=0.0)))
    row: dict[str, Any] = {"beam": beam, "queries": len(texts),
                           **{p: latency_summary(ms[p], (50, 99)) for p in paths}}
    if same:
        row["same_ids_share"] = round(float(np.mean(same)), 4)
        row["max_score_diff"] = diff
    return row


def setup(model: Path, dataset: Path, n_queries: int, threads: int, seed: int = 0
          ) -> tuple[ModelRuntime, list[np.ndarray], list[str]]:
    from grdr_plugin.data import load_dataset

    runtime = ModelRuntime(model, threads=threads)
    ds = load_dataset(dataset)
    codes, _ = runtime.encode_videos(ds.frames, ds.features)
    tables = prefix_tables(codes.reshape(-1, runtime.cfg.levels), runtime.cfg.codebook_size)
    rows = ds.test_queries()
    rows = np.sort(np.random.default_rng(seed).choice(rows, size=min(n_queries, len(rows)), replace=False))
    return runtime, tables, [ds.query_text[i] for i in rows]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Decode time: dense-mask search graph vs level graphs + trie walk.")
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--dataset", required=True, type=Path)
    ap.add_argument("--beam", type=int, nargs="+", default=[20, 100, 300])
    ap.add_argument("--queries", type=int, default=200, help="test queries sampled (200: a stable p99)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (serving uses 1)")
    ap.add_argument("--recall-level", type=int, default=None,
                    help="decode prefixes of this many codes (the trie walk alone); default: whole IDs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    runtime, tables, texts = setup(args.model, args.dataset, args.queries, args.threads)
    cfg = runtime.cfg
    if args.recall_level is not None:
        if not 1 <= args.recall_level <= cfg.levels:
            ap.error(f"--recall-level: between 1 and the model's {cfg.levels} levels")
        tables = tables[:args.recall_level]
    report = {"model": str(args.model), "codebook_size": cfg.codebook_size, "levels": cfg.levels,
              "recall_level": len(tables),
              "valid_ids": int(tables[-1].size), "threads": args.threads,
              "runs": [measure(runtime, texts, tables, b) for b in args.beam]}
    if args.json:
        json.dump(report, sys.stdout)
        print()
        return 0
    print(f"{report['valid_ids']} valid IDs or prefixes, C={cfg.codebook_size}, L={cfg.levels}, decoded to level "
          f"{len(tables)}, {len(texts)} queries, "
          f"{args.threads} thread(s); ms per query decode")
    for r in report["runs"]:
        cells = ", ".join(f"{p} p50 {r[p]['p50_ms']} / p99 {r[p]['p99_ms']}" for p in PATHS if p in r)
        agree = (f"; same IDs in the same order for {r['same_ids_share']:.0%} of queries, max score diff "
                 f"{r['max_score_diff']:.1e}") if "same_ids_share" in r else ""
        print(f"beam {r['beam']}: {cells}{agree}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
