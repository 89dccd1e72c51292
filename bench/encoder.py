"""Query-encoder latency of each variant a model folder holds, on the same queries.

  encoder  `ModelRuntime.query_vectors([text])`: tokenize + the text encoder graph, batch 1 (a search's
           query), what the variant changes
  encode   `ModelRuntime.encode_queries([text])`: the above + decoder_memory.onnx, a search's encode stage

    python -m bench.encoder --model models/msrvtt --dataset ../shared/datasets/tvr-proxy/msrvtt \\
        --encoder float int8 --queries 500

Each is timed as wall time and as the calling thread's CPU time (`*_cpu`: one onnxruntime thread runs
in the caller; on an idle machine the two agree, on a shared one wall time also waits for a core, and
both grow with the neighbours' use of caches). Each variant runs blocks of queries in a row, as a
process serving one variant does (alternating per query would evict each other's weights from the
caches: +0.25 ms for int8), and the variants take turns block by block, so background load hits them
alike. Also reported: tokens per query (batch 1 pads nothing) and each variant's query-vector cosine
to float's (min, mean).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, get_args

import numpy as np

from grdr_plugin.metrics import latency_summary
from grdr_plugin.model.config import QueryEncoder
from grdr_plugin.runtime import ModelRuntime

STAGES = ("encoder", "encode")
BLOCK = 100  # queries a variant runs in a row before the next takes its turn
TIMES = (*STAGES, *(f"{s}_cpu" for s in STAGES))


def _ms(fn: Callable[[list[str]], Any], text: str) -> tuple[float, float, Any]:
    """(wall ms, this thread's CPU ms, fn's result) of fn([text])."""
    t0, c0 = time.perf_counter(), time.thread_time()
    out = fn([text])
    return 1000 * (time.perf_counter() - t0), 1000 * (time.thread_time() - c0), out


def measure(runtimes: dict[str, ModelRuntime], texts: list[str], warmup: int = 5) -> dict[str, Any]:
    """Per-query latency of both stages for every variant, and the variants' vectors against float's.
    Each block starts with `warmup` untimed queries (its weights back into the caches)."""
    names = list(runtimes)
    ms: dict[str, dict[str, list[float]]] = {v: {t: [] for t in TIMES} for v in names}
    vecs: dict[str, list[np.ndarray]] = {v: [] for v in names}
    for b, start in enumerate(range(0, len(texts), BLOCK)):
        block = texts[start: start + BLOCK]
        for v in names[b % len(names):] + names[: b % len(names)]:
            rt = runtimes[v]
            for text in block[:warmup]:
                rt.encode_queries([text])
            for text in block:
                *enc, vec = _ms(rt.query_vectors, text)
                *all_, _ = _ms(rt.encode_queries, text)
                for stage, (wall, cpu) in zip(STAGES, (enc, all_)):
                    ms[v][stage].append(wall)
                    ms[v][f"{stage}_cpu"].append(cpu)
                vecs[v].append(vec[0])
    out: dict[str, Any] = {v: {t: latency_summary(ms[v][t], (50, 90, 99)) for t in TIMES} for v in names}
    if "float" in vecs:
        ref = np.stack(vecs["float"])
        for v in names:
            cos = (np.stack(vecs[v]) * ref).sum(1)  # both unit norm
            out[v]["cosine_to_float"] = {"min": round(float(cos.min()), 4), "mean": round(float(cos.mean()), 4)}
    return out


def setup(model: Path, dataset: Path, variants: list[str], n_queries: int, threads: int, seed: int = 0
          ) -> tuple[dict[str, ModelRuntime], list[str]]:
    from grdr_plugin.data import load_dataset

    runtimes = {v: ModelRuntime(model, threads=threads, encoder=v) for v in variants}
    served = {v: rt.query_encoder for v, rt in runtimes.items()}
    if len(set(served.values())) < len(served):  # a variant the folder lacks would time float twice
        raise SystemExit(f"--encoder: {model} serves {served}; write every variant with `grdr export --model {model}`")
    ds = load_dataset(dataset)
    rows = ds.test_queries()
    rows = np.sort(np.random.default_rng(seed).choice(rows, size=min(n_queries, len(rows)), replace=False))
    return runtimes, [ds.query_text[i] for i in rows]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Query-encoder latency (batch 1) of each variant: float, int8.")
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--dataset", required=True, type=Path)
    ap.add_argument("--encoder", nargs="+", default=list(get_args(QueryEncoder)), choices=get_args(QueryEncoder))
    ap.add_argument("--queries", type=int, default=500, help="test queries sampled (500: a stable p99)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (serving uses 1)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    runtimes, texts = setup(args.model, args.dataset, args.encoder, args.queries, args.threads)
    tok = next(iter(runtimes.values())).tokenizer
    tokens = [sum(e.attention_mask) for e in tok.encode_batch(texts)]  # the batch pads to its longest
    report = {"model": str(args.model), "queries": len(texts), "threads": args.threads,
              "tokens": {"p50": float(np.median(tokens)), "max": int(max(tokens))},
              "variants": measure(runtimes, texts)}
    if args.json:
        json.dump(report, sys.stdout)
        print()
        return 0
    print(f"{len(texts)} queries, {args.threads} thread(s), tokens p50 {report['tokens']['p50']:.0f} "
          f"max {report['tokens']['max']}; ms per query, batch 1, wall p50 / p90 / p99 (CPU p50)")
    for v, r in report["variants"].items():
        cells = ", ".join(f"{s} {r[s]['p50_ms']} / {r[s]['p90_ms']} / {r[s]['p99_ms']} ({r[s + '_cpu']['p50_ms']})"
                          for s in STAGES)
        cos = r.get("cosine_to_float")
        print(f"{v:6s} {cells}" + (f"; cosine to float min {cos['min']} mean {cos['mean']}" if cos else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
