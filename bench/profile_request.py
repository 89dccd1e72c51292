"""Where one search's OpenSearch time goes: GRDR's request beside HNSW's, from OpenSearch's `profile` API.

    python -m bench.profile_request --model models/msrvtt --dataset ../shared/datasets/tvr-proxy/msrvtt \\
        --index bench-shards-msrvtt-100000-1 --hnsw-index bench-shards-msrvtt-100000-1-hnsw --queries 100

(`python -m bench.shards ... --shards 1 --keep` leaves both indices.)  Per query: GRDR's request as the
Searcher plans it (default beam and recall budget), under the index's scorer and under the `knn_score`
script for the same pools, and the HNSW baseline's, each sent once plain (`took`) and once with
`"profile": true`.  Reported as p50 over the queries, in ms: the query phase split into matching the
`terms` filter (the pool's documents) and scoring them exactly, the fetch phase, and the pool size; for
exact dense the unfiltered scan of every video (the same exact scorer, reading the vectors in index order); for
HNSW the k-NN query (the graph search) and the fetch.  Beside them, each system's recall structure: GRDR's
trie as the Searcher holds it, HNSW's graph and vectors from the index's segment files.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from bench import defaults
from bench.baselines import exact_dense_request
from bench.output import add_json_flag, add_kept_catalog_flags, emit
from bench.suite import TOP_K, hnsw_body, hnsw_recall_bytes, kept_catalog, storage
from grdr_plugin.index import Scorer
from query.planner import first_round, plan_search
from query.results import recalled_total

NS_PER_MS = 1e6


def _shard_profile(response: dict[str, Any]) -> dict[str, Any]:
    shards = response["profile"]["shards"]
    if len(shards) != 1:
        raise SystemExit(f"--index: {len(shards)} shards answered; profile an index of one shard")
    return shards[0]


def query_split(response: dict[str, Any]) -> dict[str, float]:
    """One profiled response's query phase (ms): the top query's own scoring, its children's matching,
    and the fetch."""
    shard = _shard_profile(response)
    search = shard["searches"][0]
    top = search["query"][0]
    children = sum(c["time_in_nanos"] for c in top.get("children", []))
    fetch = sum(f["time_in_nanos"] for f in shard.get("fetch", []))
    return {"query": top["time_in_nanos"] / NS_PER_MS,
            # a knn query's children time overlaps its exact search; its own bitset_creation is the filter's
            "match": (top["breakdown"].get("bitset_creation") or children) / NS_PER_MS,
            # knn_score scores as the hits are collected; a knn query scores the whole pool while its
            # scorer is built (its exact search)
            "score": (top["breakdown"].get("exact_search") or top["breakdown"].get("score", 0)) / NS_PER_MS,
            "weight": top["breakdown"].get("create_weight", 0) / NS_PER_MS,
            "rewrite": search["rewrite_time"] / NS_PER_MS,
            "fetch": fetch / NS_PER_MS,
            # a knn query counts the documents its filter passed: the pool, exactly
            "cardinality": top["breakdown"].get("cardinality", 0)}


def profile(client, index: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """p50 of each part over `bodies`, with the plain request's `took` and the pool (hits' total)."""
    client.search(index=index, body=bodies[0])  # warm-up
    took, pool, parts = [], [], []
    for body in bodies:
        plain = client.search(index=index, body=body)
        took.append(plain["took"])
        parts.append(query_split(client.search(index=index, body={**body, "profile": True})))
        pool.append(parts[-1].pop("cardinality") or recalled_total(plain))
    p50: Callable[[list[float]], float] = lambda xs: round(float(np.median(xs)), 3)  # noqa: E731
    return {"took_ms": p50(took), "pool": p50(pool), **{f"{k}_ms": p50([p[k] for p in parts]) for k in parts[0]}}


def run(model: Path, dataset: Path, index: str, hnsw_index: str, queries: int,
        ef_search: int = defaults.DEFAULT_EF_SEARCH) -> dict[str, Any]:
    searcher, texts = kept_catalog(model, dataset, index, queries)
    trie = searcher.store.snapshot
    encoded = searcher.runtime.encode_queries(texts)
    codes, scores = searcher.decode(encoded, trie=trie)
    budget = searcher.recall_budget(trie=trie)
    # the index's own scorer, and the knn_score script (which reads any vector field) over the same pools
    scorers: list[Scorer] = list(dict.fromkeys([searcher.scorer, "knn_score"]))
    grdr = {}
    for scorer in scorers:
        plan = plan_search(texts, encoded.query_vec, codes, scores, trie, k=TOP_K, max_pool=budget, hybrid="off",
                           filters=[], levels=searcher.runtime.cfg.levels, scorer=scorer,
                           hit_doc_values=searcher.hit_doc_values)
        grdr[scorer] = profile(searcher.client, index, first_round(plan))
    dense = profile(searcher.client, index, [exact_dense_request(v, k=TOP_K) for v in encoded.query_vec])
    dense["pool"] = searcher.client.count(index=index)["count"]  # the scan scores every video
    hnsw = profile(searcher.client, hnsw_index, [hnsw_body(ef_search)(v) for v in encoded.query_vec])
    # the recall structures beside the time: GRDR's trie (in the query process) and HNSW's graph + vectors
    recall_bytes = {"grdr": searcher.store.memory_bytes(),
                    "hnsw": hnsw_recall_bytes(storage(searcher.client, hnsw_index)["parts"])}
    return {"queries": len(texts), "beam": searcher.beam_size(trie), "budget": budget, "ef_search": ef_search,
            "scorer": searcher.scorer, "grdr": grdr, "dense": dense, "hnsw": hnsw, "recall_bytes": recall_bytes}


def table(result: dict[str, Any]) -> str:
    g, d, h, mb = result["grdr"], result["dense"], result["hnsw"], result["recall_bytes"]
    cells: Callable[[str], str] = lambda key: " | ".join(f"{g[s][key]} ms" for s in g)  # noqa: E731
    return "\n".join([
        "| p50 per query | " + " | ".join(f"GRDR, {s}" for s in g) + " | exact dense | HNSW |",
        "|---|" + "---:|" * (len(g) + 2),
        f"| `took` (unprofiled) | {cells('took_ms')} | {d['took_ms']} ms | {h['took_ms']} ms |",
        "| videos scored (GRDR: the pool) | " + " | ".join(f"{g[s]['pool']:,.0f}" for s in g)
        + f" | {d['pool']:,.0f} | |",
        f"| query, whole | {cells('query_ms')} | {d['query_ms']} ms | {h['query_ms']} ms |",
        f"| · matching the `terms` filter | {cells('match_ms')} | | |",
        f"| · exact score of every video scored | {cells('score_ms')} | {d['score_ms']} ms | |",
        f"| · k-NN weight (HNSW: the graph search) |{' |' * (len(g) + 1)} {h['weight_ms']} ms |",
        f"| rewrite | {cells('rewrite_ms')} | {d['rewrite_ms']} ms | {h['rewrite_ms']} ms |",
        f"| fetch (k = {TOP_K}) | {cells('fetch_ms')} | {d['fetch_ms']} ms | {h['fetch_ms']} ms |",
        "| recall structure (GRDR: the trie; HNSW: graph + vectors) | "
        + " | ".join(f"{mb['grdr'] / 1e6:.2f} MB" for _ in g) + f" | none | {mb['hnsw'] / 1e6:.2f} MB |",
    ])


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_kept_catalog_flags(ap, queries=100, dataset_help="its test queries are profiled")
    add_json_flag(ap)
    args = ap.parse_args(argv)
    result = run(args.model, args.dataset, args.index, args.hnsw_index, args.queries)
    return emit(result, table(result), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
