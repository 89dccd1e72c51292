"""The set of valid semantic IDs of one catalog, kept in step with ingest.

* base: a marisa-trie of every ID in the index, built from OpenSearch itself (a partitioned
  terms aggregation over `grdr_ids`, so any query host can build it), saved and memory-mapped,
  with the number of videos behind each ID (used to cap the recalled pool);
* delta: IDs published by ingest since the base was built (grdr_plugin.id_registry), polled
  at most every `poll_interval_s`; folded into a new base once it grows past `fold_at`.

The decoder needs prefix tables (sorted base-C integers per level); they are derived from
base + delta whenever either changes.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Optional

import marisa_trie
import numpy as np

from grdr_plugin.decoding import prefix_tables, validity_masks
from grdr_plugin.id_registry import RegistryReader
from grdr_plugin.index import ID_FIELD, alias_target
from grdr_plugin.model.ids import children_pattern, parse_ids


def id_counts(client, index: str, page: int = 50_000) -> list[tuple[str, int]]:
    """(ID, number of videos) for every ID in the index.  A terms aggregation split into hash
    partitions of at most `page` IDs each (`search.max_buckets` caps it; OpenSearch's default is
    65,535), sized by a cardinality estimate: each partition is one pass over the ID doc values.
    A composite aggregation reading the same IDs is far slower on an index of many segments, its
    page size aside (`python -m bench.trie_bench --videos 1000000 --vector-dim 256`: 262,144 IDs
    in 28 segments, 3.27 s for the whole build vs 75.31 s for one composite pass).  A partition
    whose IDs did not all come back (the estimate was low, or a shard's share overflowed) is read
    again with twice as many partitions."""
    estimate = client.search(index=index, body={"size": 0, "aggs": {"n": {"cardinality": {"field": ID_FIELD}}}},
                             request_timeout=300)["aggregations"]["n"]["value"]
    parts = max(1, -(-int(estimate * 1.25) // page))
    while True:
        pairs: list[tuple[str, int]] = []
        for part in range(parts):
            terms = {"field": ID_FIELD, "size": page, "shard_size": page,
                     "include": {"partition": part, "num_partitions": parts}}
            agg = client.search(index=index, body={"size": 0, "aggs": {"ids": {"terms": terms}}},
                                request_timeout=300)["aggregations"]["ids"]
            if agg["sum_other_doc_count"] or agg.get("doc_count_error_upper_bound"):
                break  # this partition holds more IDs than one page: split finer
            pairs.extend((b["key"], int(b["doc_count"])) for b in agg["buckets"])
        else:
            return pairs
        parts *= 2


class TrieStore:
    """Valid IDs of one alias for one query process (thread-safe refresh)."""

    def __init__(self, client, alias: str, *, levels: int, codebook_size: int,
                 cache_dir: Optional[Path] = None, poll_interval_s: float = 0.5, fold_at: int = 50_000):
        self.client, self.alias = client, alias
        self.levels, self.codebook_size = levels, codebook_size
        self.cache_dir = Path(cache_dir or os.path.join(tempfile.gettempdir(), "grdr-tries"))
        self.poll_interval_s, self.fold_at = poll_interval_s, fold_at
        self._lock = threading.Lock()
        self._reader = RegistryReader(alias)
        self.delta: dict[str, int] = {}
        self.base = marisa_trie.Trie()
        self.base_counts = np.zeros(0, dtype=np.int64)
        self._tables: list[np.ndarray] = []
        self._masks: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])  # (the tables they are of, masks)
        self._last_poll = 0.0
        self.build_seconds = 0.0

    # ---- building ----

    def build(self) -> "TrieStore":
        """Build the base from the index (after marking the registry head, so nothing slips between)."""
        t0 = time.perf_counter()
        self._reader.start_at_head(self.client)
        index = alias_target(self.client, self.alias) or self.alias
        pairs = id_counts(self.client, index)
        self._install_base(index, [p[0] for p in pairs], [p[1] for p in pairs])
        self.delta.clear()
        self._rebuild_tables()
        self._last_poll = time.monotonic()
        self.build_seconds = time.perf_counter() - t0
        return self

    def _install_base(self, name: str, ids: list[str], counts: Iterable[int]) -> None:
        trie = marisa_trie.Trie(ids)
        by_key = np.zeros(len(trie), dtype=np.int64)
        for sid, n in zip(ids, counts):
            by_key[trie.key_id(sid)] = n
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        stem = self.cache_dir / f"{name}.{os.getpid()}.{time.time_ns()}"
        trie.save(f"{stem}.marisa")
        np.save(f"{stem}.counts.npy", by_key)
        mapped = marisa_trie.Trie()
        mapped.mmap(f"{stem}.marisa")  # memory-mapped: pages are shared and loaded on demand
        old = getattr(self, "_base_stem", None)
        self.base, self.base_counts, self._base_stem = mapped, np.load(f"{stem}.counts.npy", mmap_mode="r"), stem
        if old is not None:  # the old files are no longer used by this process
            for suffix in (".marisa", ".counts.npy"):
                Path(f"{old}{suffix}").unlink(missing_ok=True)

    def _rebuild_tables(self) -> None:
        ids = self.base.keys() + [k for k in self.delta if k not in self.base]
        self._tables = prefix_tables(parse_ids(ids, self.levels), self.codebook_size)

    # ---- keeping up with ingest ----

    def refresh(self, force: bool = False) -> int:
        """Poll the registry when due; returns how many new IDs were added."""
        now = time.monotonic()
        if not force and now - self._last_poll < self.poll_interval_s:
            return 0
        with self._lock:
            self._last_poll = now
            fresh = [s for s in self._reader.poll(self.client) if s not in self.base and s not in self.delta]
            if not fresh:
                return 0
            parse_ids(fresh, self.levels)  # refuse malformed IDs before they reach the tables
            for s in fresh:
                self.delta[s] = 1
            if len(self.delta) >= self.fold_at:
                self.fold()
            else:
                self._rebuild_tables()
            return len(fresh)

    def fold(self) -> None:
        """Merge delta into a new base trie (marisa tries are immutable)."""
        ids = self.base.keys()
        counts = [int(self.base_counts[self.base.key_id(k)]) for k in ids]
        extra = [k for k in self.delta if k not in self.base]
        self._install_base(self._base_stem.name.split(".")[0], ids + extra, counts + [self.delta[k] for k in extra])
        self.delta.clear()
        self._rebuild_tables()

    # ---- reading ----

    @property
    def tables(self) -> list[np.ndarray]:
        return self._tables

    @property
    def masks(self) -> list[np.ndarray]:
        """`tables` as the dense validity masks decoder_search.onnx reads (built on first use after
        each change: a query process without that graph never holds them)."""
        tables = self._tables
        if self._masks[0] is not tables:
            self._masks = (tables, validity_masks(tables, self.codebook_size))
        return self._masks[1]

    def __contains__(self, sid: str) -> bool:
        return sid in self.base or sid in self.delta

    def __len__(self) -> int:
        return len(self.base) + len(self.delta)

    def video_count(self, sid: str) -> int:
        if sid in self.base:
            return int(self.base_counts[self.base.key_id(sid)])
        return self.delta.get(sid, 0)

    def prefix_count(self, prefix: str) -> int:
        """Videos (with multiplicity) behind every ID that starts with `prefix`."""
        head = children_pattern(prefix)
        base = sum(int(self.base_counts[self.base.key_id(k)]) for k in self.base.keys(head))
        return base + sum(n for k, n in self.delta.items() if k.startswith(head))

    def memory_bytes(self) -> int:
        """Bytes of the recall structure: trie file + counts + prefix tables + validity masks (once
        built) + delta strings."""
        trie_bytes = os.path.getsize(f"{self._base_stem}.marisa") if getattr(self, "_base_stem", None) else 0
        return (trie_bytes + int(self.base_counts.nbytes) + sum(int(t.nbytes) for t in self._tables)
                + sum(int(m.nbytes) for m in self._masks[1]) + sum(len(k) + 8 for k in self.delta))
