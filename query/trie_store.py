"""The set of valid semantic IDs of one catalog, kept in step with ingest.

* base: a marisa-trie of every ID in the index, built from OpenSearch itself (a partitioned
  terms aggregation over `grdr_ids`, so any query host can build it), saved and memory-mapped,
  with the number of videos behind each ID (used to cap the recalled pool);
* delta: IDs published by ingest since the base was built (grdr_plugin.id_registry), polled
  at most every `poll_interval_s`; folded into a new base once it grows past `fold_at`.

The decoder needs prefix tables (sorted base-C integers per level); they are derived from
base + delta whenever either changes.  All of it is one immutable `TrieSnapshot`: a refresh
builds the next one and publishes it with one assignment, so a search that took a snapshot
reads the same IDs, counts and tables throughout, whatever other threads refresh meanwhile.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Optional, Sequence

import marisa_trie
import numpy as np

from grdr_plugin.decoding import prefix_tables, validity_masks
from grdr_plugin.id_registry import RegistryReader
from grdr_plugin.index import ID_FIELD, alias_target
from grdr_plugin.model.ids import children_pattern, encode_prefix, parse_ids

# IDs per terms-aggregation partition: under OpenSearch's default search.max_buckets (65,535) with
# room for the cardinality estimate's error, and large, since each partition is one pass over the doc values.
ID_PAGE = 50_000
# Delta size at which it folds into a new base: each widening prefix scans the delta (~2.6 ms at 50k
# IDs) and each refresh copies it, while a fold (a new trie: ~0.1 s for 250k IDs) is paid once.
FOLD_AT = 50_000


def id_counts(client, index: str, page: int = ID_PAGE, field: str = ID_FIELD) -> list[tuple[str, int]]:
    """(ID, number of videos) for every ID in the index.  A terms aggregation split into hash
    partitions of at most `page` IDs each (`search.max_buckets` caps it; OpenSearch's default is
    65,535), sized by a cardinality estimate: each partition is one pass over the ID doc values.
    A composite aggregation reading the same IDs is far slower on an index of many segments, its
    page size aside (`python -m bench.trie_bench --videos 1000000 --vector-dim 256`: 262,144 IDs
    in 28 segments, 3.27 s for the whole build vs 75.31 s for one composite pass).  A partition
    whose IDs did not all come back (the estimate was low, or a shard's share overflowed) is read
    again with twice as many partitions."""
    estimate = client.search(index=index, body={"size": 0, "aggs": {"n": {"cardinality": {"field": field}}}},
                             request_timeout=300)["aggregations"]["n"]["value"]
    parts = max(1, -(-int(estimate * 1.25) // page))
    while True:
        pairs: list[tuple[str, int]] = []
        for part in range(parts):
            terms = {"field": field, "size": page, "shard_size": page,
                     "include": {"partition": part, "num_partitions": parts}}
            agg = client.search(index=index, body={"size": 0, "aggs": {"ids": {"terms": terms}}},
                                request_timeout=300)["aggregations"]["ids"]
            if agg["sum_other_doc_count"] or agg.get("doc_count_error_upper_bound"):
                break  # this partition holds more IDs than one page: split finer
            pairs.extend((b["key"], int(b["doc_count"])) for b in agg["buckets"])
        else:
            return pairs
        parts *= 2


def indexed_videos(client, index: str, field: str = ID_FIELD) -> int:
    """Documents holding at least one semantic ID: the videos `id_counts` describes."""
    return int(client.count(index=index, body={"query": {"exists": {"field": field}}})["count"])


@dataclass(frozen=True, eq=False)
class TrieSnapshot:
    """The valid IDs at one moment: never changed once published (a refresh publishes a new one)."""

    base: marisa_trie.Trie
    base_counts: np.ndarray  # videos behind each base ID, by trie key id
    delta: Mapping[str, int]  # IDs published since the base was built (read-only view)
    tables: list[np.ndarray]  # the decoder's prefix tables of base + delta
    codebook_size: int
    trie_bytes: int = 0  # the base's file size (the file may be gone: a fold replaced it)

    @classmethod
    def of(cls, base: marisa_trie.Trie, base_counts: np.ndarray, delta: Mapping[str, int], *, levels: int,
           codebook_size: int, trie_bytes: int = 0) -> "TrieSnapshot":
        ids = base.keys() + [k for k in delta if k not in base]
        return cls(base=base, base_counts=base_counts, delta=MappingProxyType(dict(delta)),
                   tables=prefix_tables(parse_ids(ids, levels), codebook_size), codebook_size=codebook_size,
                   trie_bytes=trie_bytes)

    @cached_property
    def masks(self) -> list[np.ndarray]:
        """`tables` as the dense validity masks decoder_search.onnx reads (built on first use: a
        query process without that graph never holds them; two threads racing build equal ones)."""
        return validity_masks(self.tables, self.codebook_size)

    def __contains__(self, sid: str) -> bool:
        return sid in self.base or sid in self.delta

    def __len__(self) -> int:
        return len(self.base) + len(self.delta)

    def video_count(self, sid: str) -> int:
        if sid in self.base:
            return int(self.base_counts[self.base.key_id(sid)])
        return self.delta.get(sid, 0)

    @cached_property
    def postings(self) -> int:
        """(video, ID) pairs behind every valid ID: what the default recall budget is a share of (summed once
        per snapshot, not per search)."""
        return int(self.base_counts.sum()) + sum(self.delta.values())

    @cached_property
    def _prefix_counts(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per prefix length l = 1 .. L-1: the distinct prefixes (base-C integers, sorted) and the videos behind each,
        with multiplicity (built on first use: only searches recalled at a shorter level read it)."""
        ids = self.base.keys() + list(self.delta)
        counts = np.array([int(self.base_counts[self.base.key_id(k)]) for k in ids[:len(self.base)]]
                          + list(self.delta.values()), dtype=np.int64)
        codes = parse_ids(ids, len(self.tables))
        out = []
        for length in range(1, len(self.tables)):
            keys = encode_prefix(codes[:, :length], self.codebook_size)
            order = np.argsort(keys, kind="stable")
            keys, first = np.unique(keys[order], return_index=True)
            out.append((keys, np.add.reduceat(counts[order], first) if keys.size else counts[:0]))
        return out

    def prefix_counts(self, codes: np.ndarray) -> np.ndarray:
        """`prefix_count` of many prefixes of one length, shorter than an ID, given as codes [M, l] (a decoder's
        beams, or parse_ids of prefix strings), at once."""
        counts = np.zeros(len(codes), dtype=np.int64)
        length = codes.shape[-1]
        if not 1 <= length < len(self.tables):
            raise ValueError(f"prefixes: {length} codes each, not shorter than an ID of {len(self.tables)} levels")
        if not len(codes):
            return counts
        keys, per_key = self._prefix_counts[length - 1]
        wanted = encode_prefix(codes, self.codebook_size)
        at = np.searchsorted(keys, wanted)
        found = at < keys.size
        found[found] = keys[at[found]] == wanted[found]
        counts[found] = per_key[at[found]]
        return counts

    def prefix_count(self, prefix: str) -> int:
        """Videos (with multiplicity) behind every ID that starts with `prefix`."""
        head = children_pattern(prefix)
        base = sum(int(self.base_counts[self.base.key_id(k)]) for k in self.base.keys(head))
        return base + sum(n for k, n in self.delta.items() if k.startswith(head))

    def memory_bytes(self) -> int:
        """Bytes of the recall structure: trie file + counts + prefix tables + validity masks and prefix counts (once
        built) + delta strings."""
        masks = self.__dict__.get("masks", [])  # cached_property's slot: only masks already built count
        by_prefix = self.__dict__.get("_prefix_counts", [])
        return (self.trie_bytes + int(self.base_counts.nbytes) + sum(int(t.nbytes) for t in self.tables)
                + sum(int(m.nbytes) for m in masks) + sum(int(k.nbytes + n.nbytes) for k, n in by_prefix)
                + sum(len(k) + 8 for k in self.delta))


class TrieStore:
    """Valid IDs of one alias for one query process: `snapshot` is the current `TrieSnapshot`;
    `build`, `refresh` and `fold` replace it under one lock (readers never wait)."""

    def __init__(self, client, alias: str, *, levels: int, codebook_size: int,
                 cache_dir: Optional[Path] = None, poll_interval_s: float = 0.5, fold_at: int = FOLD_AT,
                 index: Optional[str] = None, id_field: str = ID_FIELD):
        """alias: the registry key new IDs are published under; index: the index or alias the base is read
        from (default: the alias's target); id_field: where that index keeps the semantic IDs."""
        self.client, self.alias = client, alias
        self.source, self.id_field = index, id_field
        self.levels, self.codebook_size = levels, codebook_size
        self.cache_dir = Path(cache_dir or os.path.join(tempfile.gettempdir(), "grdr-tries"))
        self.poll_interval_s, self.fold_at = poll_interval_s, fold_at
        self._lock = threading.Lock()
        self._reader = RegistryReader(alias)
        self._snapshot = TrieSnapshot.of(marisa_trie.Trie(), np.zeros(0, dtype=np.int64), {}, levels=levels,
                                         codebook_size=codebook_size)
        self._index = alias  # the concrete index the base was built from (names its files)
        self._base_stem: Optional[Path] = None
        self._last_poll = 0.0
        self.polled_at = 0.0  # time.monotonic() of the last registry poll that answered (the build's head read)
        self.build_seconds = 0.0
        self.base_videos = 0  # videos in the index when the base was read (a fold adds IDs, recounts nothing)

    @property
    def snapshot(self) -> TrieSnapshot:
        return self._snapshot

    def __contains__(self, sid: str) -> bool:
        return sid in self._snapshot

    def __len__(self) -> int:
        return len(self._snapshot)

    def memory_bytes(self) -> int:
        return self._snapshot.memory_bytes()

    @property
    def generation(self) -> int:
        """The ID registry's generation this store has read up to."""
        return self._reader.generation

    # ---- building ----

    def build(self) -> "TrieStore":
        """Build the base from the index (after marking the registry head, so nothing slips between)."""
        t0 = time.perf_counter()
        with self._lock:
            self._reader.start_at_head(self.client)
            self._index = self.source or alias_target(self.client, self.alias) or self.alias
            pairs = id_counts(self.client, self._index, field=self.id_field)
            self.base_videos = indexed_videos(self.client, self._index, field=self.id_field)
            self._publish_base([p[0] for p in pairs], [p[1] for p in pairs], {})
            self._last_poll = time.monotonic()
            self.polled_at = self._last_poll
        self.build_seconds = time.perf_counter() - t0
        return self

    def _publish_base(self, ids: Sequence[str], counts: Sequence[int], delta: Mapping[str, int]) -> None:
        """Save a new base trie, memory-map it, and publish it with `delta` as the next snapshot."""
        trie = marisa_trie.Trie(ids)
        by_key = np.zeros(len(trie), dtype=np.int64)
        for sid, n in zip(ids, counts):
            by_key[trie.key_id(sid)] = n
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        stem = self.cache_dir / f"{self._index}.{os.getpid()}.{time.time_ns()}"
        trie.save(f"{stem}.marisa")
        np.save(f"{stem}.counts.npy", by_key)
        mapped = marisa_trie.Trie()
        mapped.mmap(f"{stem}.marisa")  # memory-mapped: pages are shared and loaded on demand
        self._snapshot = TrieSnapshot.of(mapped, np.load(f"{stem}.counts.npy", mmap_mode="r"), delta,
                                         levels=self.levels, codebook_size=self.codebook_size,
                                         trie_bytes=os.path.getsize(f"{stem}.marisa"))
        old, self._base_stem = self._base_stem, stem
        if old is not None:  # unlinked, the old files stay readable by snapshots that still map them
            for suffix in (".marisa", ".counts.npy"):
                Path(f"{old}{suffix}").unlink(missing_ok=True)

    # ---- keeping up with ingest ----

    def refresh(self, force: bool = False) -> int:
        """Poll the registry when due; returns how many new IDs were added."""
        if not force and time.monotonic() - self._last_poll < self.poll_interval_s:
            return 0
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last_poll < self.poll_interval_s:
                return 0  # another thread polled while this one waited for the lock
            self._last_poll = now
            current = self._snapshot
            fresh = [s for s in self._reader.poll(self.client) if s not in current]
            self.polled_at = time.monotonic()
            if not fresh:
                return 0
            parse_ids(fresh, self.levels)  # refuse malformed IDs before they reach the tables
            delta = {**current.delta, **dict.fromkeys(fresh, 1)}
            if len(delta) >= self.fold_at:
                self._fold(current, delta)
            else:
                self._snapshot = TrieSnapshot.of(current.base, current.base_counts, delta, levels=self.levels,
                                                 codebook_size=self.codebook_size, trie_bytes=current.trie_bytes)
            return len(fresh)

    def fold(self) -> None:
        """Merge delta into a new base trie (marisa tries are immutable)."""
        with self._lock:
            self._fold(self._snapshot, self._snapshot.delta)

    def _fold(self, current: TrieSnapshot, delta: Mapping[str, int]) -> None:
        ids = current.base.keys()
        counts = [int(current.base_counts[current.base.key_id(k)]) for k in ids]
        extra = [k for k in delta if k not in current.base]
        self._publish_base(ids + extra, counts + [delta[k] for k in extra], {})
