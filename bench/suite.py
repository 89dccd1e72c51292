"""`grdr bench`: GRDR vs exact dense (every video scored exactly) vs HNSW (lucene), side by side.

One corpus per scale (grown from a real dataset by grdr_plugin.growth, ingested through the real
Celery path), one query set (the dataset's test queries), three systems with the same rerank
vectors. Reports quality, latency per stage, throughput with 1 and N clients, storage per index
and per Lucene structure, and the RAM of each recall structure; and beside the real dataset, every
corpus's nearest-neighbour cosines (bench.neighbours) and exact dense R@10, to judge the growth.
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
from opensearchpy import helpers
from pydantic import BaseModel, Field, model_validator

from bench import defaults
from bench.baselines import exact_dense_request, hnsw_index_body
from bench.neighbours import corpus_neighbours
from grdr_plugin.data import load_dataset
from grdr_plugin.evaluation import evaluate
from grdr_plugin.growth import DEFAULT_NOISE, grow_dataset
from grdr_plugin.index import VECTOR_FIELD, alias_target, drop_index
from grdr_plugin.metrics import TAIL_PERCENTILES, latency_summary, overlap_at, per_second, rank_of, recall_at
from grdr_plugin.pool import DEFAULT_BEAM
from grdr_plugin.runtime import ModelRuntime
from grdr_plugin.settings import Settings
from query.searcher import Searcher

TOP_K = 10  # hits per query: R@10 and overlap@10 read the top 10
# Copying the GRDR index's vectors into the HNSW baseline: documents per scroll page read and per bulk
# request written. A bulk request of 1000 256-d vectors as JSON is a few MB, far under the 100 MB limit.
COPY_SCAN_PAGE = 2000
COPY_BULK_CHUNK = 1000
BULK_TIMEOUT_S = 600  # one bulk page into an index building its HNSW graph can take minutes on a busy node
FORCEMERGE_TIMEOUT_S = 3600  # merging a 1M-video index to one segment (and its graph) takes tens of minutes
# Lucene file extensions -> the structure they hold (for the storage breakdown).
LUCENE_PARTS = {
    "terms dictionary + index (keyword/text fields, incl. grdr_ids)": (".tim", ".tip", ".tmd"),
    "postings": (".doc", ".pos", ".pay", ".psm"),
    "flat vectors": (".vec", ".vemf", ".veq", ".vemq"),
    "HNSW graph": (".vex", ".vem"),
    "stored fields (_source)": (".fdt", ".fdx", ".fdm"),
    "doc values": (".dvd", ".dvm"),
    "points / norms / other": (),
}


class BenchConfig(BaseModel):
    dataset: Path
    model: Path
    scales: list[int] = Field(default_factory=lambda: list(defaults.SCALES))
    # at least 10: with fewer queries one hit moves a recall by more than 10 points
    queries: int = Field(defaults.QUERIES, ge=10, description="test queries per system and setting")
    clients: list[int] = Field(default_factory=lambda: list(defaults.CLIENTS))
    throughput_queries: int = Field(defaults.THROUGHPUT_QUERIES, ge=10)
    beams: list[int] = Field(default_factory=lambda: list(defaults.BEAMS))
    max_pool: Optional[int] = None  # the recall budget; None: the query layer's default for each catalog
    # extra recall budgets, measured at each of pool_beams
    pools: list[int] = Field(default_factory=list)
    pool_beams: list[int] = Field(default_factory=lambda: [DEFAULT_BEAM],
                                  description="beams the extra budgets are measured at")
    hnsw_m: int = defaults.HNSW_M
    hnsw_ef_construction: int = defaults.HNSW_EF_CONSTRUCTION
    ef_search: list[int] = Field(default_factory=lambda: list(defaults.EF_SEARCH))
    default_ef_search: int = defaults.DEFAULT_EF_SEARCH
    rounds: int = Field(defaults.ROUNDS, ge=1, description="timed passes over the queries (measure)")
    block: int = Field(defaults.BLOCK, ge=1, description="queries a system runs before the next one's turn (measure)")
    noise: float = DEFAULT_NOISE  # see grdr_plugin.growth
    batch_size: Optional[int] = None  # videos per ingest task; None: GRDR_INGEST_BATCH_SIZE
    keep_indices: bool = False
    # where the grown catalogs are written (a temporary folder in it, removed after ingest)
    work_dir: Optional[Path] = None

    @model_validator(mode="after")
    def _headline_settings_are_measured(self) -> "BenchConfig":
        """The report's HNSW row is the default ef_search: it must be in the sweep (GRDR's headline row is the
        model's defaults at each catalog, measured on its own)."""
        if self.default_ef_search not in self.ef_search:
            raise ValueError(f"ef_search (--ef-search): must include the default {self.default_ef_search}")
        return self


def machine() -> dict[str, Any]:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpus": os.cpu_count(), "ram_gib": round(mem / 2**30, 1), "python": platform.python_version(),
            "platform": platform.platform()}


# ---- building the corpus ----

def ingest_corpus(client, data: Path, model: Path, alias: str, batch_size: int,
                  shards: Optional[int] = None) -> dict[str, Any]:
    """Through the real path: a Celery worker process, batches, bulk, registry. Returns throughput.
    shards: the index's primary shards (None: grdr's default)."""
    from ingest.submit import enqueue, make_plan, wait
    from ingest.target import prepare_target
    from ingest.worker_process import celery_worker

    drop_index(client, alias)
    target = prepare_target(client, alias, model, shards=shards)
    plan = make_plan(dataset=data, batch_size=batch_size)
    with celery_worker() as queue:
        t0 = time.perf_counter()
        summary, _ = wait(enqueue(plan, target, queue=queue))
        wall = time.perf_counter() - t0
    if summary.failed:
        raise RuntimeError(f"ingest failed for {summary.failed} videos: {summary.errors[:3]}")
    n = summary.indexed + summary.updated
    return {"videos": n, "seconds": round(wall, 2), "videos_per_s": per_second(n, wall), "batch_size": batch_size}


def build_hnsw(client, source_alias: str, name: str, dim: int, m: int, ef_construction: int,
               ef_search: int, shards: int = 1) -> dict[str, Any]:
    """The HNSW baseline: the very vectors of the GRDR index, in a lucene-engine graph."""
    if client.indices.exists(index=name):
        client.indices.delete(index=name)
    client.indices.create(index=name, body=hnsw_index_body(dim, m=m, ef_construction=ef_construction,
                                                           ef_search=ef_search, shards=shards))
    docs = helpers.scan(client, index=source_alias, query={"_source": ["video_id", VECTOR_FIELD]}, size=COPY_SCAN_PAGE)
    actions = ({"_index": name, "_id": d["_id"],
                "_source": {"video_id": d["_id"], VECTOR_FIELD: d["_source"][VECTOR_FIELD]}} for d in docs)
    t0 = time.perf_counter()
    ok, _ = helpers.bulk(client, actions, chunk_size=COPY_BULK_CHUNK, request_timeout=BULK_TIMEOUT_S)
    client.indices.refresh(index=name)
    client.indices.forcemerge(index=name, max_num_segments=1, request_timeout=FORCEMERGE_TIMEOUT_S)
    return {"videos": ok, "build_seconds": round(time.perf_counter() - t0, 1)}


# ---- storage ----

def lucene_parts(file_sizes: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Bytes per Lucene structure from `_stats` segment file sizes (per extension, files inside
    compound segments included: small indices are stored as .cfs)."""
    sizes = {part: 0 for part in LUCENE_PARTS}
    for ext, entry in file_sizes.items():
        part = next((p for p, exts in LUCENE_PARTS.items() if f".{ext}" in exts), "points / norms / other")
        sizes[part] += int(entry["size_in_bytes"])
    return sizes


def storage(client, index: str) -> dict[str, Any]:
    client.indices.forcemerge(index=index, max_num_segments=1, request_timeout=FORCEMERGE_TIMEOUT_S)
    client.indices.refresh(index=index)
    stats = client.indices.stats(index=index, metric="store,docs,segments",
                                 params={"include_segment_file_sizes": "true"})["indices"][index]["primaries"]
    n = stats["docs"]["count"]
    size = stats["store"]["size_in_bytes"]
    return {"index_bytes": size, "bytes_per_video": round(size / max(n, 1), 1),
            "parts": lucene_parts(stats["segments"].get("file_sizes", {}))}


def hnsw_recall_bytes(parts: dict[str, int]) -> int:
    """What HNSW keeps in RAM to recall: its graph and the vectors it walks (an HNSW index's `storage` parts)."""
    return parts.get("HNSW graph", 0) + parts.get("flat vectors", 0)


# ---- running queries ----

def kept_catalog(model: Path, dataset: Path, index: str, queries: int) -> tuple[Searcher, list[str]]:
    """A connected Searcher on a catalog `bench.shards --keep` left, and the dataset's first `queries` test queries:
    what the benches over such a catalog start from."""
    src = load_dataset(dataset)
    return Searcher(model, index).connect(), [src.query_text[r] for r in src.test_queries()[:queries]]


QueryFn = Callable[[str], tuple[list[str], dict[str, float]]]


def grdr_fn(searcher: Searcher, beam: Optional[int], max_pool: Optional[int] = None) -> QueryFn:
    def run(text: str):
        res = searcher.search(text, k=TOP_K, beam_size=beam, max_pool=max_pool)
        return [h.video_id for h in res.hits], res.timings_ms
    return run


def vector_fn(searcher: Searcher, index: str, body_of: Callable[[np.ndarray], dict]) -> QueryFn:
    """Dense baselines: the same text encoder, then one OpenSearch request."""
    def run(text: str):
        t0 = time.perf_counter()
        qvec = searcher.runtime.query_vectors([text])
        t1 = time.perf_counter()
        hits = searcher.client.search(index=index, body=body_of(qvec[0]))["hits"]["hits"]
        t2 = time.perf_counter()
        return [h["_id"] for h in hits], {"encode": (t1 - t0) * 1e3, "opensearch": (t2 - t1) * 1e3,
                                          "total": (t2 - t0) * 1e3}
    return run


def hnsw_body(ef: int) -> Callable[[np.ndarray], dict]:
    def body(q: np.ndarray) -> dict:
        return {"size": TOP_K, "_source": False, "query": {"knn": {VECTOR_FIELD: {
            "vector": q.tolist(), "k": TOP_K, "method_parameters": {"ef_search": ef}}}}}
    return body


def turns(names: list[str], texts: list[str], *, rounds: int = defaults.ROUNDS,
          block: int = defaults.BLOCK) -> Iterator[tuple[int, str, int, str]]:
    """The order systems run in when timed together: `rounds` passes, each over the queries `block` at a time,
    every system running a block in turn (the order rotated from block to block and pass to pass), so that a slow
    spell of the machine falls on all systems alike.  -> (pass, system, position in its block, query text)."""
    if rounds < 1 or block < 1:
        raise ValueError("rounds, block: at least 1")
    blocks = [texts[i:i + block] for i in range(0, len(texts), block)]
    for r in range(rounds):
        for b, queries in enumerate(blocks):
            turn = (b + r) % len(names)
            for name in names[turn:] + names[:turn]:
                for i, text in enumerate(queries):
                    yield r, name, i, text


def measure(fns: dict[str, QueryFn], texts: list[str], truth: list[str], *, reference: Optional[str] = None,
            rounds: int = defaults.ROUNDS, block: int = defaults.BLOCK) -> dict[str, tuple[dict, list]]:
    """Every system over the same queries, taking `turns`, so that their ratios hold within one run.  -> per system
    (R@k and the latency of every stage over all passes, its hit lists); the answers of the first pass count (they
    do not change), overlap@10 against the system named `reference`."""
    names = list(fns)
    for fn in fns.values():
        fn(texts[0])  # warm-up (sessions, caches)
    results: dict[str, list] = {name: [] for name in names}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for r, name, _, text in turns(names, texts, rounds=rounds, block=block):
        ids, timing = fns[name](text)
        if r == 0:
            results[name].append(ids)
        for k, v in timing.items():
            stages[name].setdefault(k, []).append(v)
    out = {}
    for name in names:
        m = recall_at([rank_of(got, t) for got, t in zip(results[name], truth)])
        if reference is not None and name != reference:
            m["overlap@10"] = overlap_at(results[name], results[reference], k=TOP_K)
        m.update(latency_summary(stages[name]["total"], TAIL_PERCENTILES))
        m["stages_ms"] = {k: latency_summary(v) for k, v in stages[name].items()}
        out[name] = (m, results[name])
    return out


def throughput(fn: QueryFn, texts: list[str], clients: int) -> float:
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(fn, texts[:clients]))  # warm each thread
        t0 = time.perf_counter()
        list(pool.map(fn, texts))
        return per_second(len(texts), time.perf_counter() - t0)


# ---- the corpora ----

def real_corpus(cfg: BenchConfig, encoder: ModelRuntime) -> dict[str, Any]:
    """The dataset as it is, what the grown corpora are read against: its nearest-neighbour profile and
    exact dense R@10 on the bench's test queries (in process: the cosine ranking knn_score makes)."""
    src = load_dataset(cfg.dataset)
    rows = src.test_queries()[: cfg.queries]
    return {"videos": src.n_videos, "queries": len(rows),
            "dense_exact": evaluate(src, encoder, ("dense",), query_rows=rows)["dense"],
            "nn_cosine": corpus_neighbours(encoder, src.features, src.frames)}


def grown_arrays(folder: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A grown catalog's pooled features and frames (None without frames.npy), memory-mapped."""
    frames = folder / "frames.npy"
    return (np.load(folder / "features.npy", mmap_mode="r"),
            np.load(frames, mmap_mode="r") if frames.is_file() else None)


# ---- one scale ----

def bench_scale(cfg: BenchConfig, scale: int, settings: Settings, encoder: ModelRuntime,
                log: Callable[[str], None]) -> dict[str, Any]:
    """encoder: the video side's runtime for the corpus's nearest-neighbour profile."""
    from ingest.config import get_ingest_settings

    client = settings.opensearch_client()
    src = load_dataset(cfg.dataset)
    n = max(scale, src.n_videos)
    alias, hnsw_name = f"bench-{src.name}-{n}", f"bench-{src.name}-{n}-hnsw"
    # the grown catalog (5 GB of frames at 1M) is only read by the ingest: gone once it is indexed
    with tempfile.TemporaryDirectory(prefix="grdr-bench-", dir=cfg.work_dir) as work:
        data = cfg.dataset if scale <= src.n_videos else grow_dataset(cfg.dataset, scale, Path(work) / f"data-{scale}",
                                                                       noise=cfg.noise)
        log(f"[{n:,}] ingesting through Celery")
        ingest = ingest_corpus(client, data, cfg.model, alias, cfg.batch_size or get_ingest_settings().batch_size)
        log(f"[{n:,}] nearest-neighbour cosines")
        arrays = (src.features, src.frames) if data == cfg.dataset else grown_arrays(data)
        neighbours = corpus_neighbours(encoder, *arrays)
    log(f"[{n:,}] {ingest['videos_per_s']} videos/s; building the HNSW baseline")
    searcher = Searcher(cfg.model, alias, settings=settings, client=client, max_pool=cfg.max_pool)
    hnsw = build_hnsw(client, alias, hnsw_name, searcher.runtime.cfg.rerank_dim, cfg.hnsw_m, cfg.hnsw_ef_construction,
                      cfg.default_ef_search)
    target = alias_target(client, alias)
    store = {"grdr": storage(client, target), "hnsw": storage(client, hnsw_name)}

    rows = src.test_queries()[: cfg.queries]
    texts = [src.query_text[r] for r in rows]
    truth = [src.video_ids[src.query_video[r]] for r in rows]
    dense_fn = vector_fn(searcher, alias, lambda q: exact_dense_request(q, k=TOP_K))
    pools = sorted(set(cfg.pools) - {searcher.recall_budget()})
    # GRDR's headline: the beam the model serves this catalog with (at its recall level and budget, as every
    # beam of the sweep), measured once, in the sweep or beside it
    served_beam = searcher.beam_size()
    fns: dict[str, QueryFn] = {
        "dense": dense_fn,
        **{f"grdr {beam}": grdr_fn(searcher, beam) for beam in sorted({*cfg.beams, served_beam})},
        **{f"grdr {beam} {pool}": grdr_fn(searcher, beam, pool) for beam in cfg.pool_beams for pool in pools},
        **{f"hnsw {ef}": vector_fn(searcher, hnsw_name, hnsw_body(ef)) for ef in cfg.ef_search}}
    log(f"[{n:,}] {len(texts)} queries x {len(fns)} systems and settings, {cfg.rounds} passes in turns of "
        f"{cfg.block} queries")
    measured = measure(fns, texts, truth, reference="dense", rounds=cfg.rounds, block=cfg.block)
    dense = measured["dense"][0]
    curves: dict[str, list[dict]] = {
        "grdr": [{"beam": beam, "max_pool": searcher.recall_budget(), **measured[f"grdr {beam}"][0]}
                 for beam in cfg.beams],
        "grdr_pool": [{"beam": beam, "max_pool": pool, **measured[f"grdr {beam} {pool}"][0]}
                      for beam in cfg.pool_beams for pool in pools],
        "hnsw": [{"ef_search": ef, **measured[f"hnsw {ef}"][0]} for ef in cfg.ef_search]}
    grdr = {"recall_level": searcher.recall_level(), "beam": served_beam, "max_pool": searcher.recall_budget(),
            **measured[f"grdr {served_beam}"][0]}
    hnsw_default = next(c for c in curves["hnsw"] if c["ef_search"] == cfg.default_ef_search)

    log(f"[{n:,}] throughput with {cfg.clients} clients")
    tq = texts[: cfg.throughput_queries]
    headline = {"grdr": fns[f"grdr {served_beam}"], "dense_exact": dense_fn,
                "hnsw": fns[f"hnsw {cfg.default_ef_search}"]}
    qps = {name: {str(c): throughput(fn, tq, c) for c in cfg.clients} for name, fn in headline.items()}

    hnsw_ram = hnsw_recall_bytes(store["hnsw"]["parts"])
    systems = {
        "grdr": {**grdr, "qps": qps["grdr"], "index_bytes": store["grdr"]["index_bytes"],
                 "recall_ram_bytes": searcher.store.memory_bytes(),
                 "trie_build_s": round(searcher.store.build_seconds, 3),
                 "ids": len(searcher.store)},
        "dense_exact": {**dense, "qps": qps["dense_exact"], "index_bytes": store["grdr"]["index_bytes"],
                        # the catalog's flat vectors (no graph): what every exact query scans
                        "recall_ram_bytes": store["grdr"]["parts"]["flat vectors"]},
        "hnsw": {**hnsw_default, "qps": qps["hnsw"], "index_bytes": store["hnsw"]["index_bytes"],
                 "recall_ram_bytes": hnsw_ram, "build": hnsw, "m": cfg.hnsw_m,
                 "ef_construction": cfg.hnsw_ef_construction},
    }
    if not cfg.keep_indices:
        drop_index(client, alias)
        client.indices.delete(index=hnsw_name, ignore=[404])
    return {"videos": n, "queries": len(texts), "systems": systems, "curves": curves, "storage": store,
            "ingest": ingest, "ingest_videos_per_s": ingest["videos_per_s"], "nn_cosine": neighbours}


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print,
              settings: Optional[Settings] = None) -> dict[str, Any]:
    settings = settings or Settings()
    t0 = time.perf_counter()
    # the video side for the neighbour profiles and the query side for the real corpus's dense R@10 (the
    # Searcher's query encoder); it runs alone, before each scale's queries, so on every core
    encoder = ModelRuntime(cfg.model, threads=os.cpu_count() or 1, encoder=settings.query_encoder)
    log("real corpus: nearest-neighbour cosines, exact dense in process")
    real = real_corpus(cfg, encoder)
    per_scale = [bench_scale(cfg, s, settings, encoder, log) for s in cfg.scales]
    largest = max(per_scale, key=lambda r: r["videos"])
    return {"videos": largest["videos"], "systems": largest["systems"],
            "ingest_videos_per_s": largest["ingest_videos_per_s"], "dataset": str(cfg.dataset),
            "machine": machine(), "seconds": round(time.perf_counter() - t0, 1),
            "real_corpus": real, "growth_noise": cfg.noise, "scales": {str(r["videos"]): r for r in per_scale}}
