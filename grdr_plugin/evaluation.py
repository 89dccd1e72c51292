"""Full-corpus evaluation of GRDR (generative recall + dense rerank) and of the dense reranker.

Protocol: every video of the dataset (seen and unseen) is encoded by the trained video
encoder; unseen videos get their IDs from the tokenizer only.  Every `test` query is
decoded with the trie-constrained beam search over the IDs that exist (the in-process stand-in
for the OpenSearch `terms` filter is a numpy inverted index); the pool is chosen by the query
layer's rule (`grdr_plugin.pool`: every video of the leading decoded IDs within the recall budget),
so both recall the same videos; the pool is reranked by the reranker's cosine.  A
ground-truth video outside the pool is ranked after the whole pool, in dense order among the
remaining videos (so MdR/MnR stay defined and comparable).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from grdr_plugin.data import Dataset
from grdr_plugin.decoding import InvertedIndex
from grdr_plugin.metrics import percent, rank_metrics
from grdr_plugin.pool import DEFAULT_BEAM, default_max_pool

# Queries encoded and scored per step: their [64, N] float32 score matrix is 25 MB at 100k videos.
QUERY_CHUNK = 64


def evaluate(ds: Dataset, backend, modes: tuple[str, ...] = ("grdr", "dense"), beam: int = DEFAULT_BEAM,
             max_pool: int | None = None, chunk: int = QUERY_CHUNK, progress: Callable[[int], None] | None = None,
             query_rows: np.ndarray | None = None) -> dict[str, Any]:
    cfg = backend.cfg
    codes, vvec = backend.encode_videos(ds.frames, ds.features)
    inv = InvertedIndex(codes, cfg.codebook_size)
    if max_pool is None:  # the query layer's default: a share of the catalog's postings
        max_pool = default_max_pool(inv.postings)
    rows = ds.test_queries() if query_rows is None else query_rows
    gt = ds.query_video[rows]
    dense_rank = np.zeros(len(rows), dtype=np.int64)
    grdr_rank = np.zeros(len(rows), dtype=np.int64)
    in_pool = np.zeros(len(rows), dtype=bool)
    pool_size = np.zeros(len(rows), dtype=np.int64)
    for s in range(0, len(rows), chunk):
        sl = slice(s, s + chunk)
        texts = [ds.query_text[i] for i in rows[sl]]
        q = backend.encode_queries(texts)
        scores = q.query_vec @ vvec.T  # [b, N]
        g = gt[sl]
        gscore = scores[np.arange(len(g)), g]
        dense_rank[sl] = 1 + (scores > gscore[:, None]).sum(1)  # ties in the query's favour
        if "grdr" in modes:
            ids, sc = backend.beam_search(q, inv.prefixes, beam)
            for j in range(len(texts)):
                pool = inv.lookup_pool(ids[j], sc[j], max_pool)
                pool_size[s + j] = len(pool)
                hit = bool((pool == g[j]).any())
                in_pool[s + j] = hit
                if hit:
                    grdr_rank[s + j] = 1 + int((scores[j, pool] > gscore[j]).sum())
                else:
                    rest = np.ones(scores.shape[1], dtype=bool)
                    rest[pool] = False
                    grdr_rank[s + j] = len(pool) + 1 + int((scores[j, rest] > gscore[j]).sum())
        if progress is not None:
            progress(len(texts))
    seen_q = ds.video_split[gt]
    out: dict[str, Any] = {"dataset": ds.name, "queries": int(len(rows)), "videos": int(ds.n_videos)}
    if "grdr" in modes:
        out["grdr"] = rank_metrics(grdr_rank) | {
            "candidate_recall": percent(in_pool), "pool_mean": round(float(pool_size.mean()), 1),
            "beam": beam, "max_pool": max_pool}
    if "dense" in modes:
        out["dense"] = rank_metrics(dense_rank)
    by_split: dict[str, Any] = {}
    for name, sel in (("seen", seen_q), ("unseen", ~seen_q)):
        part: dict[str, Any] = {"queries": int(sel.sum())}
        if "grdr" in modes:
            part["grdr"] = rank_metrics(grdr_rank[sel]) | {"candidate_recall": percent(in_pool[sel])}
        if "dense" in modes:
            part["dense"] = rank_metrics(dense_rank[sel])
        by_split[name] = part
    out["by_split"] = by_split
    if "grdr" in modes:
        out["grdr_seen"] = by_split["seen"]["grdr"]
        out["grdr_unseen"] = by_split["unseen"]["grdr"]
    return out
