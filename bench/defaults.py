"""Defaults of `grdr bench` and `grdr loadtest`, owned here: the CLI reads them at start-up, and
bench.suite / bench.loadtest (which load numpy, OpenSearch and the query layer) build their configs on them."""
from __future__ import annotations

from pathlib import Path

# ---- grdr bench ----
SCALES = (100_000,)  # the smallest corpus size the product's scale targets are set for
QUERIES = 500  # test queries per system and setting: R@10 to about ±2 points (one standard error)
CLIENTS = (1, 4)  # 1: latency without queueing; 4: throughput on a small machine without starving the node
# Timing (bench.suite.measure): ROUNDS passes over the queries, each pass taking them BLOCK at a time and every
# system running a block in turn, so a slow spell of a shared machine falls on all systems alike; a block is long
# enough that each system runs warm, as on a node serving it alone, and not after another system's cache misses.
ROUNDS = 3
BLOCK = 30
THROUGHPUT_QUERIES = 200  # queries per throughput run: a few seconds per system and client count
BEAMS = (20, 50, 100, 200, 300)  # from the fast end of the curve to the default beam (grdr_plugin.pool)
EF_SEARCH = (10, 32, 100, 256)  # HNSW's recall/latency curve around its headline setting
DEFAULT_EF_SEARCH = 100  # the headline HNSW row: the k-NN plugin's default ef_search
HNSW_M = 16  # graph degree of the HNSW baseline: the lucene engine's default
HNSW_EF_CONSTRUCTION = 128  # build-time beam of the HNSW baseline: above lucene's default 100, for recall
REPORT_DIR = Path("bench-report")  # a run's report, in the working directory; docs/ holds the published run

# ---- grdr loadtest ----
LOAD_URL = "http://127.0.0.1:8080"  # where `grdr serve` listens by default
LOAD_CLIENTS = 8  # concurrent clients: enough to keep a few serving threads busy on a small machine
LOAD_DURATION_S = 60.0  # a minute: enough RSS samples after the warm-up for a meaningful slope
LOAD_K = 10  # hits per query, as `grdr search` and the search page ask for
LOAD_WARMUP_S = 5.0  # sessions, arenas and caches settle in the first seconds; left out of the memory fit
