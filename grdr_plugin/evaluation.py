"""Full-corpus evaluation of GRDR (generative recall + dense rerank) and of the dense reranker.

Protocol: every video of the dataset (seen and unseen) is encoded by the trained video
encoder; unseen videos get their IDs from the tokenizer only.  Every `test` query is
decoded with the trie-constrained beam search over the IDs that exist (the in-process stand-in
for the OpenSearch `terms` filter is a numpy inverted index); the pool is chosen by the query
layer's rule (`grdr_plugin.pool`: every video of the decoded IDs taken within the recall budget),
so both recall the same videos; the pool is reranked by the reranker's cosine.  A
ground-truth video outside the pool is ranked after the whole pool, in dense order among the
remaining videos (so MdR/MnR stay defined and comparable).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grdr_plugin.data import Dataset
from grdr_plugin.decoding import InvertedIndex
from grdr_plugin.metrics import paired_share_se, percent, rank_metrics
from grdr_plugin.pool import SIZE_PENALTY

# Queries encoded and scored per step: their [64, N] float32 score matrix is 25 MB at 100k videos.
QUERY_CHUNK = 64


# One setting of the recall stage: (beam, max_pool, recall level).
Setting = tuple[int, int, int]


@dataclass(frozen=True)
class EncodedCatalog:
    """Every video of a dataset through the model: its IDs (as the in-process inverted index) and vectors."""

    index: InvertedIndex
    video_vecs: np.ndarray  # [N, D]
    codes: np.ndarray  # [N, K, L]
    _by_level: dict[int, InvertedIndex] = field(default_factory=dict, repr=False)

    def index_at(self, level: int) -> InvertedIndex:
        """The inverted index of the IDs' prefixes of `level` codes (the whole IDs' at the IDs' own level)."""
        if level == self.index.levels:
            return self.index
        if level not in self._by_level:
            self._by_level[level] = InvertedIndex(self.codes, self.index.codebook_size, level=level)
        return self._by_level[level]


@dataclass(frozen=True)
class PoolRanks:
    """Per query, under one (beam, max_pool): the relevant video's GRDR rank, whether the pool held it, its size."""

    rank: np.ndarray
    in_pool: np.ndarray
    pool_size: np.ndarray


def encode_catalog(ds: Dataset, backend) -> EncodedCatalog:
    codes, vvec = backend.encode_videos(ds.frames, ds.features)
    return EncodedCatalog(InvertedIndex(codes, backend.cfg.codebook_size), vvec, codes)


def rank_queries(ds: Dataset, backend, catalog: EncodedCatalog, rows: np.ndarray, settings: Sequence[Setting],
                 chunk: int = QUERY_CHUNK, progress: Callable[[int], None] | None = None,
                 size_penalty: float = SIZE_PENALTY
                 ) -> tuple[np.ndarray, dict[Setting, PoolRanks], dict[tuple[int, int], float]]:
    """The relevant video's dense rank of each query of `rows`, its GRDR ranks under each (beam, max_pool, level)
    of `settings` (each beam decoded once per level, whatever the budgets), and the mean decoding time per query (ms)
    of each (beam, level).  `size_penalty`: the pool rule's (grdr_plugin.pool.pool_ids)."""
    gt = ds.query_video[rows]
    dense_rank = np.zeros(len(rows), dtype=np.int64)
    out = {s: PoolRanks(np.zeros(len(rows), dtype=np.int64), np.zeros(len(rows), dtype=bool),
                        np.zeros(len(rows), dtype=np.int64)) for s in settings}
    decodings = sorted({(beam, level) for beam, _, level in settings})
    decode_s = dict.fromkeys(decodings, 0.0)
    for s in range(0, len(rows), chunk):
        sl = slice(s, s + chunk)
        texts = [ds.query_text[i] for i in rows[sl]]
        q = backend.encode_queries(texts)
        scores = q.query_vec @ catalog.video_vecs.T  # [b, N]
        g = gt[sl]
        gscore = scores[np.arange(len(g)), g]
        dense_rank[sl] = 1 + (scores > gscore[:, None]).sum(1)  # ties in the query's favour
        for beam, level in decodings:
            index = catalog.index_at(level)
            start = time.perf_counter()
            ids, sc = backend.beam_search(q, catalog.index.prefixes[:level], beam)
            decode_s[beam, level] += time.perf_counter() - start
            for (b, max_pool, lv), ranks in out.items():
                if (b, lv) == (beam, level):
                    for j in range(len(texts)):
                        _rank_in_pool(ranks, s + j, index.lookup_pool(ids[j], sc[j], max_pool, size_penalty),
                                      scores[j], g[j], gscore[j])
        if progress is not None:
            progress(len(texts))
    return dense_rank, out, {d: 1000 * t / max(len(rows), 1) for d, t in decode_s.items()}


def _rank_in_pool(ranks: PoolRanks, row: int, pool: np.ndarray, scores: np.ndarray, gt: int, gscore: float) -> None:
    ranks.pool_size[row] = len(pool)
    hit = bool((pool == gt).any())
    ranks.in_pool[row] = hit
    if hit:
        ranks.rank[row] = 1 + int((scores[pool] > gscore).sum())
    else:
        rest = np.ones(scores.shape[0], dtype=bool)
        rest[pool] = False
        ranks.rank[row] = len(pool) + 1 + int((scores[rest] > gscore).sum())


def evaluate(ds: Dataset, backend, modes: tuple[str, ...] = ("grdr", "dense"), beam: int | None = None,
             max_pool: int | None = None, chunk: int = QUERY_CHUNK, progress: Callable[[int], None] | None = None,
             query_rows: np.ndarray | None = None, recall_level: int | None = None) -> dict[str, Any]:
    """beam, max_pool and recall_level: the model's serving defaults for the catalog's size (`ModelConfig.serving_for`,
    `budget_rule`) where None, as in the query layer."""
    cfg = backend.cfg
    catalog = encode_catalog(ds, backend)
    postings = catalog.index.postings  # the query layer's defaults are those of the catalog's size
    beam = cfg.serving_for(postings).beam_size if beam is None else beam
    level = cfg.recall_level_for(postings) if recall_level is None else recall_level
    if max_pool is None:
        max_pool = cfg.budget_rule().budget(postings)
    rows = ds.test_queries() if query_rows is None else query_rows
    settings = [(beam, max_pool, level)] if "grdr" in modes else []
    dense_rank, by_setting, _ = rank_queries(ds, backend, catalog, rows, settings, chunk, progress)
    seen_q = ds.video_split[ds.query_video[rows]]
    out: dict[str, Any] = {"dataset": ds.name, "queries": int(len(rows)), "videos": int(ds.n_videos)}
    if "grdr" in modes:
        grdr = by_setting[(beam, max_pool, level)]
        out["grdr"] = rank_metrics(grdr.rank) | {
            "candidate_recall": percent(grdr.in_pool), "pool_mean": round(float(grdr.pool_size.mean()), 1),
            "beam": beam, "max_pool": max_pool, "recall_level": level}
    if "dense" in modes:
        out["dense"] = rank_metrics(dense_rank)
    by_split: dict[str, Any] = {}
    for name, sel in (("seen", seen_q), ("unseen", ~seen_q)):
        part: dict[str, Any] = {"queries": int(sel.sum())}
        if "grdr" in modes:
            part["grdr"] = rank_metrics(grdr.rank[sel]) | {"candidate_recall": percent(grdr.in_pool[sel])}
        if "dense" in modes:
            part["dense"] = rank_metrics(dense_rank[sel])
        by_split[name] = part
    out["by_split"] = by_split
    if "grdr" in modes:
        out["grdr_seen"] = by_split["seen"]["grdr"]
        out["grdr_unseen"] = by_split["unseen"]["grdr"]
    return out


def sweep(ds: Dataset, backend, catalog: EncodedCatalog, rows: np.ndarray, settings: Sequence[Setting],
          progress: Callable[[int], None] | None = None,
          size_penalty: float = SIZE_PENALTY) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Dense's metrics on `rows`, and GRDR's under each (beam, max_pool, level) of `settings`, in their order, each
    with the standard error of its R@k as a share of dense's on these queries (`of_dense_se`, percentage points) and
    its mean decoding time per query (`decode_ms`)."""
    dense_rank, by_setting, decode_ms = rank_queries(ds, backend, catalog, rows, settings, progress=progress,
                                                     size_penalty=size_penalty)
    grid = [{"beam": beam, "max_pool": max_pool, "recall_level": level, **rank_metrics(r.rank),
             "of_dense_se": paired_share_se(r.rank, dense_rank),
             "candidate_recall": percent(r.in_pool), "pool_mean": round(float(r.pool_size.mean()), 1),
             "decode_ms": round(decode_ms[beam, level], 2)}
            for (beam, max_pool, level), r in by_setting.items()]
    return rank_metrics(dense_rank), grid
