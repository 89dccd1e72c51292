"""GRDR on one shard and on several, on the cluster GRDR_OPENSEARCH_URL names (e.g. three local nodes:
`grdr cluster start --nodes 3`): the same grown catalog in an index per shard count, its R@10 and latency, the
share of queries whose hits equal the first layout's, beside exact dense and HNSW with the same shard count.

    python -m bench.shards --dataset ../shared/datasets/tvr-proxy/msrvtt --model models/msrvtt \\
        --scale 100000 --shards 1,3 --queries 300 --grdr 300

The catalog is ingested once through the Celery workers (the first shard count); the other layouts are copies of
that index made by OpenSearch's `_reindex` (the same documents: what differs is only how they are split).
`--keep` leaves the indices; `--reuse` measures those a kept run left instead of building them again, and leaves
them too.  On each layout the systems are timed together, taking turns a block of queries each
(bench.suite.measure).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from bench import defaults
from bench.baselines import exact_dense_request
from bench.output import add_json_flag, emit, int_list
from bench.suite import FORCEMERGE_TIMEOUT_S, TOP_K, build_hnsw, grdr_fn, hnsw_body, ingest_corpus, measure, vector_fn
from grdr_plugin.data import load_dataset
from grdr_plugin.growth import grow_dataset
from grdr_plugin.index import alias_target, drop_index
from grdr_plugin.metrics import share_of
from grdr_plugin.settings import Settings
from ingest.config import get_ingest_settings
from ingest.target import prepare_target
from query.searcher import Searcher

REINDEX_TIMEOUT_S = 3600  # copying 1M documents with their vectors takes many minutes on a small cluster
REINDEX_POLL_S = 2.0  # a reindex of 100k documents runs for a minute or more: a poll every 2 s is plenty


def copy_layout(client, source_alias: str, alias: str, model: Path, shards: int) -> str:
    """A new catalog index of `shards` primaries behind `alias`, holding `source_alias`'s documents."""
    drop_index(client, alias)
    target = prepare_target(client, alias, model, shards=shards)
    # as a task: a waited-for reindex answers with a Warning header per batch, past http.client's 100 headers
    task = client.reindex(body={"source": {"index": alias_target(client, source_alias)},
                                "dest": {"index": target.index}}, wait_for_completion=False)["task"]
    deadline = time.monotonic() + REINDEX_TIMEOUT_S
    while not (done := client.tasks.get(task_id=task))["completed"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reindex into {target.index} still running after {REINDEX_TIMEOUT_S} s (task {task})")
        time.sleep(REINDEX_POLL_S)
    failures = done.get("response", {}).get("failures") or done.get("error")
    if failures:
        raise RuntimeError(f"reindex into {target.index} failed: {failures}")
    client.indices.refresh(index=target.index)
    return target.index


# (beam, budget, recall level); None: the model's default for the catalog's size
GrdrSetting = tuple[Optional[int], Optional[int], Optional[int]]


def _settings(text: str) -> list[GrdrSetting]:
    """"300,100:3000,1000:20000:2,-" -> [(beam, budget, level), ...]; a budget or level left out, or any of the
    three "-": the model's default."""
    def value(parts: list[str], i: int) -> Optional[int]:
        return int(parts[i]) if len(parts) > i and parts[i] != "-" else None

    try:
        items = [item.split(":") for item in text.split(",")]
        if any(len(parts) > 3 for parts in items):
            raise ValueError
        return [(value(parts, 0), value(parts, 1), value(parts, 2)) for parts in items]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: beam[:budget[:level]], comma-separated, e.g. "
                                         "300,100:3000,1000:20000:2") from None


def holds(client, name: str, videos: int) -> bool:
    """Whether index or alias `name` exists and holds exactly `videos` documents (what `--reuse` measures)."""
    return bool(client.indices.exists(index=name)) and client.count(index=name)["count"] == videos


def run(dataset: Path, model: Path, scale: int, shard_counts: list[int], queries: int,
        grdr_settings: list[GrdrSetting], ef_search: int = defaults.DEFAULT_EF_SEARCH,
        keep: bool = False, rounds: int = defaults.ROUNDS, block: int = defaults.BLOCK,
        reuse: bool = False) -> dict[str, Any]:
    """reuse: measure the catalogs and HNSW baselines an earlier `keep` run left, where each holds the grown
    catalog's videos, instead of ingesting and building them again (a 1M catalog takes about 16 minutes); what a run
    reused it keeps (`leaves_indices`)."""
    settings = Settings()
    client = settings.opensearch_client()
    src = load_dataset(dataset)
    n = max(scale, src.n_videos)
    aliases = {s: f"bench-shards-{src.name}-{n}-{s}" for s in shard_counts}
    first = shard_counts[0]
    if reuse and all(holds(client, alias, n) for alias in aliases.values()):
        ingest: dict[str, Any] = {"videos": n, "reused": True}
    else:
        with tempfile.TemporaryDirectory(prefix="grdr-bench-shards-") as work:
            data = dataset if scale <= src.n_videos else grow_dataset(dataset, scale, Path(work) / "data")
            ingest = ingest_corpus(client, data, model, aliases[first], get_ingest_settings().batch_size,
                                   shards=first)
        for s in shard_counts[1:]:
            copy_layout(client, aliases[first], aliases[s], model, s)
        client.cluster.health(wait_for_status="green", request_timeout=REINDEX_TIMEOUT_S)
        for alias in aliases.values():  # one segment per shard, as the HNSW baseline is built: the same footing
            client.indices.forcemerge(index=alias, max_num_segments=1, request_timeout=FORCEMERGE_TIMEOUT_S)
            client.indices.refresh(index=alias)

    keep = leaves_indices(keep, ingest)
    rows = src.test_queries()[:queries]
    texts = [src.query_text[r] for r in rows]
    truth = [src.video_ids[src.query_video[r]] for r in rows]
    out: dict[str, Any] = {"videos": n, "queries": len(texts), "nodes": len(client.nodes.info()["nodes"]),
                           "ingest": ingest, "layouts": {}}
    reference: dict[GrdrSetting, list[list[str]]] = {}
    for s in shard_counts:
        searcher = Searcher(model, aliases[s], settings=settings, client=client).connect()
        hnsw_name = f"{aliases[s]}-hnsw"
        build = ({"videos": n, "reused": True} if ingest.get("reused") and holds(client, hnsw_name, n) else
                 build_hnsw(client, aliases[s], hnsw_name, searcher.runtime.cfg.rerank_dim, defaults.HNSW_M,
                            defaults.HNSW_EF_CONSTRUCTION, ef_search, shards=s))
        at_level = {level: searcher if level is None else Searcher(model, aliases[s], settings=settings, client=client,
                                                                   recall_level=level).connect()
                    for _, _, level in grdr_settings}
        fns = {"dense": vector_fn(searcher, aliases[s], lambda q: exact_dense_request(q, k=TOP_K)),
               **{f"grdr {(beam, pool, level)}": grdr_fn(at_level[level], beam, pool)
                  for beam, pool, level in grdr_settings},
               "hnsw": vector_fn(searcher, hnsw_name, hnsw_body(ef_search))}
        measured = measure(fns, texts, truth, reference="dense", rounds=rounds, block=block)
        layout: dict[str, Any] = {"dense_exact": measured["dense"][0], "grdr": [],
                                  "hnsw": {"ef_search": ef_search, "build": build, **measured["hnsw"][0]}}
        for beam, pool, level in grdr_settings:
            m, hits = measured[f"grdr {(beam, pool, level)}"]
            same = reference.setdefault((beam, pool, level), hits)
            m["identical_to_first_layout"] = sum(a == b for a, b in zip(hits, same)) / len(hits)
            served = at_level[level]
            layout["grdr"].append({"beam": beam or served.beam_size(), "max_pool": served.recall_budget(pool),
                                   "recall_level": served.recall_level(), **m})
        out["layouts"][str(s)] = layout
        if not keep:
            client.indices.delete(index=hnsw_name, ignore=[404])
    if not keep:
        for alias in aliases.values():
            drop_index(client, alias)
    return out


def leaves_indices(keep: bool, ingest: dict[str, Any]) -> bool:
    """Whether a run leaves its indices: asked to (`--keep`), or measuring the catalogs a kept run left, which a
    later `--reuse` run will want again."""
    return keep or bool(ingest.get("reused"))


def table(result: dict[str, Any]) -> str:
    """The Markdown table docs/CLUSTER.md shows."""
    lines = ["| shards | system | setting | R@10 | % of dense | identical hits | p50 ms | p99 ms |",
             "|---:|---|---|---:|---:|---:|---:|---:|"]
    for s, layout in result["layouts"].items():
        dense = layout["dense_exact"]
        rows = [("exact dense", "", dense, "")]
        rows += [("GRDR", f"level {g['recall_level']}, beam {g['beam']} / budget {g['max_pool']}", g,
                  f"{100 * g['identical_to_first_layout']:.1f} %") for g in layout["grdr"]]
        rows.append(("HNSW", f"ef_search {layout['hnsw']['ef_search']}", layout["hnsw"], ""))
        for system, setting, m, same in rows:
            share = share_of(m["R@10"], dense["R@10"])
            lines.append(f"| {s} | {system} | {setting} | {m['R@10']:.2f} | {share:.1f} | {same} | "
                         f"{m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--scale", type=int, default=100_000)
    ap.add_argument("--shards", type=int_list, default=[1, 3])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--grdr", type=_settings, default=[(None, None, None)],
                    help="beam[:budget[:level]], comma-separated (left out or '-': the model's default for the "
                         "catalog's size; a list that starts with '-' is written --grdr=-,...)")
    ap.add_argument("--keep", action="store_true", help="keep the indices afterwards")
    ap.add_argument("--reuse", action="store_true",
                    help="measure (and leave) the indices a --keep run left (when they hold the catalog's videos) "
                         "instead of ingesting and building them again")
    ap.add_argument("--rounds", type=int, default=defaults.ROUNDS, help="timed passes over the queries")
    ap.add_argument("--block", type=int, default=defaults.BLOCK,
                    help="queries a system runs before the next system's turn")
    add_json_flag(ap)
    args = ap.parse_args(argv)
    result = run(args.dataset, args.model, args.scale, args.shards, args.queries, args.grdr, keep=args.keep,
                 rounds=args.rounds, block=args.block, reuse=args.reuse)
    return emit(result, table(result), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
