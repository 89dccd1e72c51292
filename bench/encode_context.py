"""What the query encoder costs after each kind of work: the same encode, timed while something else runs between
one query's encode and the next's.

    python -m bench.encode_context --model models/msrvtt --dataset ../shared/datasets/tvr-proxy/msrvtt \\
        --index bench-shards-msrvtt-100000-1 --hnsw-index bench-shards-msrvtt-100000-1-hnsw --queries 300

(`python -m bench.shards ... --shards 1 --keep` leaves both indices.)  Between two encodes (`encode_queries`, as a
GRDR search runs it): nothing; a 1 ms sleep; the query's decode; an HNSW request; a whole GRDR search; an exact
dense request.  On one machine the node shares the processor's last-level cache with the query process, so what
the node touches between two queries can push the encoder's weights out of it; a sleep shows whether idling alone
does.  Reported: encode p50 / p99 per kind, in ms, over `--rounds` passes, the kinds taking turns (bench.suite.turns).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable, Optional

from bench import defaults
from bench.baselines import exact_dense_request
from bench.output import add_json_flag, add_kept_catalog_flags, emit
from bench.suite import TOP_K, hnsw_body, kept_catalog, turns
from grdr_plugin.metrics import latency_summary
from grdr_plugin.runtime import Queries

SLEEP_S = 0.001  # about an HNSW request's round trip: the process idles as long as it waits on one

Between = Callable[[str, Queries], Any]  # what runs after a query's encode, before the next query's


def encode_after(encode: Callable[[str], Queries], between: dict[str, Between], texts: list[str], *,
                 rounds: int = defaults.ROUNDS, block: int = defaults.BLOCK) -> dict[str, dict[str, float]]:
    """Per kind of work, the latency of `encode` when that work runs after every encode, the kinds taking
    `turns` (the first encode of each turn, which follows another kind's work, not counted)."""
    ms: dict[str, list[float]] = {name: [] for name in between}
    for _, name, i, text in turns(list(between), texts, rounds=rounds, block=block):
        t0 = time.perf_counter()
        encoded = encode(text)
        if i:
            ms[name].append((time.perf_counter() - t0) * 1e3)
        between[name](text, encoded)
    return {name: {"samples": len(v), **latency_summary(v)} for name, v in ms.items()}


def run(model: Path, dataset: Path, index: str, hnsw_index: str, queries: int,
        rounds: int = defaults.ROUNDS) -> dict[str, Any]:
    searcher, texts = kept_catalog(model, dataset, index, queries)
    trie, client = searcher.store.snapshot, searcher.client
    between: dict[str, Between] = {
        "nothing": lambda text, q: None,
        "a 1 ms sleep": lambda text, q: time.sleep(SLEEP_S),
        "the query's decode": lambda text, q: searcher.decode(q, trie=trie),
        "an HNSW request": lambda text, q: client.search(index=hnsw_index, body=hnsw_body(defaults.DEFAULT_EF_SEARCH)(
            q.query_vec[0])),
        "a GRDR search": lambda text, q: searcher.search(text, k=TOP_K),
        "an exact dense request": lambda text, q: client.search(index=index, body=exact_dense_request(
            q.query_vec[0], k=TOP_K)),
    }
    encode = searcher.runtime.encode_queries
    encode_after(lambda text: encode([text]), between, texts[:2], rounds=1)  # warm-up
    return {"queries": len(texts), "rounds": rounds, "encoder": searcher.runtime.query_encoder,
            "encode_after": encode_after(lambda text: encode([text]), between, texts, rounds=rounds)}


def table(result: dict[str, Any]) -> str:
    rows = [f"| {name} | {s['p50_ms']} | {s['p99_ms']} |" for name, s in result["encode_after"].items()]
    return "\n".join(["| between two encodes | encode p50 ms | p99 ms |", "|---|---:|---:|", *rows])


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_kept_catalog_flags(ap, queries=300, dataset_help="its test queries are encoded")
    ap.add_argument("--rounds", type=int, default=defaults.ROUNDS, help="passes over the queries")
    add_json_flag(ap)
    args = ap.parse_args(argv)
    result = run(args.model, args.dataset, args.index, args.hnsw_index, args.queries, args.rounds)
    return emit(result, table(result), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
