"""The capacity report (grdr_plugin.capacity) of a live catalog: read from its index, or from a query process's
trie snapshot, computed once per snapshot so that a /health poll makes no OpenSearch round trip."""
from __future__ import annotations

import threading
from typing import Any, Optional

import numpy as np

from grdr_plugin.capacity import CapacityReport, capacity_report
from grdr_plugin.index import GrdrMeta
from grdr_plugin.model.config import ModelConfig
from query.trie_store import TrieSnapshot, TrieStore, id_counts, indexed_videos

SHAPE_KEYS = ("views", "levels", "codebook_size")  # what `_meta.grdr` records of the model's ID shape


def serving_terms(serving: Optional[ModelConfig]) -> dict[str, Any]:
    """What the report reads of a model's serving records: its budget at each size and the sizes they were tuned
    on."""
    return {} if serving is None else {"rule": serving.budget_rule()}


def index_capacity(client, alias: str, index: str, meta: dict[str, Any], max_pool: Optional[int] = None,
                   serving: Optional[ModelConfig] = None) -> Optional[CapacityReport]:
    """From the index itself (one terms-aggregation pass per 50,000 IDs and a count); None when its
    `_meta.grdr` does not record the model's ID shape (not a grdr index). serving: the serving model's config
    (None: the pool rule's share, tuning not known)."""
    if not all(isinstance(meta.get(k), int) for k in SHAPE_KEYS):
        return None
    grdr = GrdrMeta.model_validate(meta)
    counts = np.array([n for _, n in id_counts(client, index, field=grdr.fields.ids)], dtype=np.int64)
    return capacity_report(counts, videos=indexed_videos(client, index, field=grdr.fields.ids), views=meta["views"],
                           levels=meta["levels"], codebook_size=meta["codebook_size"], max_pool=max_pool, index=alias,
                           mode=grdr.mode, **serving_terms(serving))


def snapshot_counts(snapshot: TrieSnapshot) -> np.ndarray:
    """Videos behind each ID of the snapshot: the base's counts, and 1 for each ID published since (the registry
    says an ID exists, not how many videos hold it)."""
    return np.concatenate([np.asarray(snapshot.base_counts, dtype=np.int64),
                           np.ones(len(snapshot.delta), dtype=np.int64)])


class SnapshotCapacity:
    """The report of a store's current snapshot, cached until the store publishes another one. A query process
    does not know how the index is written (catalog or attached): the warning names both refits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: Optional[tuple[TrieSnapshot, CapacityReport]] = None

    def report(self, store: TrieStore, *, alias: str, views: int, levels: int, codebook_size: int,
               max_pool: Optional[int], serving: Optional[ModelConfig] = None) -> CapacityReport:
        snapshot = store.snapshot
        with self._lock:  # one computation per snapshot, however many probes arrive at once
            if self._cached is None or self._cached[0] is not snapshot:
                report = capacity_report(snapshot_counts(snapshot), videos=store.base_videos, views=views,
                                         levels=levels, codebook_size=codebook_size, max_pool=max_pool,
                                         index=alias, mode=None, **serving_terms(serving))
                self._cached = (snapshot, report)
            return self._cached[1]
