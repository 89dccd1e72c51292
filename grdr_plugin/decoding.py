"""Trie-constrained beam search over semantic IDs (pure numpy, batched over queries x beams).

The set of valid IDs is given as `valid_prefixes`: for each level l (0-based) a sorted int64
array of the base-C encodings of every valid prefix of length l+1 (see
`grdr_plugin.model.ids.encode_prefix`).  A beam's valid continuations are then one contiguous
run of the next level's array (two vectorised `np.searchsorted` per beam), so the same code
serves in-process evaluation (torch or onnxruntime step functions) and the query layer
(onnxruntime + a trie store that can export its prefixes).

Guarantee: an emitted beam is always a full valid ID.  When fewer valid continuations than
`beam_size` exist, the missing beams are padding: codes -1 and score -inf.  Callers must drop
beams with a non-finite score (`np.isfinite(scores)`).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from grdr_plugin.model.ids import encode_prefix
from grdr_plugin.pool import SIZE_PENALTY, pool_ids

# step_fn(query_rows int64 [R], prefixes int64 [R, t]) -> log-probabilities float [R, C]
StepFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
# A model's log-probabilities are clipped to +-LOGP_CLIP before they are summed: -inf and NaN become
# finite, so a valid code stays selectable (at the bottom), and sums of L of them cannot overflow.
LOGP_CLIP = 1e30


def prefix_tables(ids: np.ndarray, codebook_size: int) -> list[np.ndarray]:
    """Sorted unique encoded prefixes per level for a set of IDs `ids` int [M, L]."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1, np.asarray(ids).shape[-1])
    levels = ids.shape[1]
    if ids.size and (ids.min() < 0 or ids.max() >= codebook_size):
        raise ValueError("codes must lie in [0, codebook_size)")
    return [np.unique(encode_prefix(ids[:, : n + 1], codebook_size)) for n in range(levels)]


def validity_masks(valid_prefixes: list[np.ndarray], codebook_size: int) -> list[np.ndarray]:
    """The valid IDs as dense masks, as decoder_search.onnx reads them: per level n a bool array
    [C**n, C] whose row p (a valid or invalid prefix of n codes, base-C encoded) marks the codes
    that continue it to a valid prefix of n + 1 codes.  About C**L bytes in all: only folders with
    that graph (small ID spaces, `export.tables_fit`) build them; the rest walk the prefix tables."""
    C = codebook_size
    masks = []
    for n, table in enumerate(valid_prefixes):
        mask = np.zeros(C ** (n + 1), dtype=bool)
        mask[table] = True
        masks.append(mask.reshape(C ** n, C))
    return masks


def _run_indices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The ranges [start, start + length) concatenated, vectorised: ([5, 9], [2, 3]) -> [5, 6, 9, 10, 11]."""
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))


def _children(table: np.ndarray, parents: np.ndarray, codebook_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every valid continuation of the encoded prefixes `parents` [N]: (parent index, code) pairs
    whose concatenation is in the sorted `table` of next-level prefixes, parent by parent, codes
    ascending.  A parent's children are one contiguous run of the table, so this is two binary
    searches per parent (a vectorised trie walk), not one per candidate code."""
    C = codebook_size
    lo = np.searchsorted(table, parents * C)
    counts = np.searchsorted(table, parents * C + C) - lo
    parent = np.repeat(np.arange(parents.size), counts)
    return parent, table[_run_indices(lo, counts)] - parents[parent] * C


def _best_per_query(query_of: np.ndarray, score: np.ndarray, n_queries: int, k: int) -> list[np.ndarray]:
    """Per query, the indices of its k best candidates (all, if it has fewer), best first.  Candidates come
    grouped by query (`query_of` non-decreasing); equal scores keep the candidates' order."""
    bounds = np.searchsorted(query_of, np.arange(n_queries + 1))
    best = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        cost = -score[lo:hi]
        top = np.arange(hi - lo)
        if hi - lo > k:  # the k cheapest; of those tied with the k-th, the first ones
            kth = np.partition(cost, k - 1)[k - 1]
            below = np.flatnonzero(cost < kth)
            top = np.concatenate([below, np.flatnonzero(cost == kth)[: k - below.size]])
        best.append(top[np.argsort(cost[top], kind="stable")] + lo)
    return best


def constrained_beam_search(
    step_fn: StepFn,
    n_queries: int,
    levels: int,
    codebook_size: int,
    valid_prefixes: list[np.ndarray],
    beam_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (codes int64 [Q, beam, L], scores float32 [Q, beam]), best beam first.

    Scores are summed log-probabilities.  Only valid continuations are scored and ranked, so a
    step function that puts all its mass on invalid codes still yields valid IDs (ordered by
    its remaining, possibly -inf-clipped, preferences).  Padding beams: codes -1, score -inf.
    """
    C, Q, B = codebook_size, n_queries, beam_size
    if len(valid_prefixes) != levels:
        raise ValueError(f"valid_prefixes has {len(valid_prefixes)} levels, expected {levels}")
    # Live beams: prefix codes [Q, b, t] and scores [Q, b]; start with one empty beam per query.
    codes = np.zeros((Q, 1, 0), dtype=np.int64)
    scores = np.zeros((Q, 1), dtype=np.float64)
    enc = np.zeros((Q, 1), dtype=np.int64)  # encoded prefix of each beam
    for level in range(levels):
        k = min(B, codes.shape[1] * C)
        # Each query's k best (parent beam, code); slots it cannot fill stay dead (score -inf).
        parent = np.zeros((Q, k), dtype=np.int64)
        code = np.zeros((Q, k), dtype=np.int64)
        best = np.full((Q, k), -np.inf)
        qi, bi = np.nonzero(np.isfinite(scores))  # live beams; only they are sent to the model
        if qi.size:
            out = np.asarray(step_fn(qi.astype(np.int64), codes[qi, bi]))
            if out.shape != (qi.size, C):
                raise ValueError(f"step_fn returned shape {out.shape}, expected {(qi.size, C)}")
            # The valid continuations only (a few of the b x C a dense row would hold, deep in a sparse trie),
            # grouped by query, in (beam, code) order.
            row, child = _children(valid_prefixes[level], enc[qi, bi], C)
            # A model may emit -inf/NaN for codes it deems impossible; they stay selectable
            # (at the bottom) when valid, so validity never depends on the model's opinion.
            logp = np.fmin(np.fmax(out[row, child], -LOGP_CLIP), LOGP_CLIP)  # fmax maps NaN to -LOGP_CLIP
            query_of, beam_of = qi[row], bi[row]  # each continuation's query and parent beam
            total = scores[query_of, beam_of] + logp
            for q, top in enumerate(_best_per_query(query_of, total, Q, k)):
                parent[q, : top.size], code[q, : top.size], best[q, : top.size] = beam_of[top], child[top], total[top]
        scores = best
        codes = np.concatenate([np.take_along_axis(codes, parent[:, :, None], axis=1), code[:, :, None]], axis=2)
        enc = np.take_along_axis(enc, parent, axis=1) * C + code
    # Pad to beam_size and mark dead beams explicitly.
    if codes.shape[1] < B:
        pad = B - codes.shape[1]
        codes = np.concatenate([codes, np.full((Q, pad, levels), -1, dtype=np.int64)], axis=1)
        scores = np.concatenate([scores, np.full((Q, pad), -np.inf)], axis=1)
    dead = ~np.isfinite(scores)
    codes[dead] = -1
    return codes, scores.astype(np.float32)


def recall_levels(valid_prefixes: list[np.ndarray], levels: int) -> int:
    """The levels a beam search decodes: one per prefix table given, the model's `levels` at most (fewer tables: the
    search stops at prefixes of that length, a pool recalled at a shorter level; ServingRecord.recall_level)."""
    if not 1 <= len(valid_prefixes) <= levels:
        raise ValueError(f"valid_prefixes has {len(valid_prefixes)} levels, expected 1 to {levels}")
    return len(valid_prefixes)


def beam_search_by_steps(backend, q, valid_prefixes: list[np.ndarray],
                         beam_size: int) -> tuple[np.ndarray, np.ndarray]:
    """`constrained_beam_search` of every query of `q` (a backend's `Queries`) over `backend.step_fn(q)`
    (any backend with `cfg.levels`, `cfg.codebook_size` and `step_fn`), over as many levels as `valid_prefixes`
    has tables (`recall_levels`)."""
    cfg = backend.cfg
    return constrained_beam_search(backend.step_fn(q), len(q.query_vec), recall_levels(valid_prefixes, cfg.levels),
                                   cfg.codebook_size, valid_prefixes, beam_size)


class InvertedIndex:
    """Full ID -> videos, as sorted numpy arrays (the in-process stand-in for the `terms` query)."""

    def __init__(self, video_codes: np.ndarray, codebook_size: int, level: int | None = None):
        """video_codes int [N, K, L]: every video's K IDs; level: look up prefixes of that many codes instead of whole
        IDs (a pool recalled at a shorter level), counted as the trie counts a prefix: the videos of every ID under
        it, a video under two of those IDs twice."""
        n, k, levels = video_codes.shape
        self.codebook_size = codebook_size
        self.levels = levels
        self.level = levels if level is None else level
        keys = encode_prefix(video_codes.reshape(n * k, levels), codebook_size)
        vids = np.repeat(np.arange(n, dtype=np.int64), k)
        order = np.lexsort((vids, keys))
        keys, vids = keys[order], vids[order]
        # A video whose views share an ID is one document under that ID (as in OpenSearch's doc counts).
        first = np.r_[True, (keys[1:] != keys[:-1]) | (vids[1:] != vids[:-1])]
        keys, vids = keys[first], vids[first]
        if self.level < levels:  # each (video, ID) posting under its prefix: sorted prefixes stay runs
            keys = keys // codebook_size ** (levels - self.level)
        self.keys, self.vids = keys, vids
        self.prefixes = prefix_tables(video_codes.reshape(n * k, levels), codebook_size)

    @property
    def postings(self) -> int:
        """(video, ID) pairs: what the recall budget is a share of (grdr_plugin.pool.default_max_pool)."""
        return int(self.vids.size)

    def lookup_pool(self, ids: np.ndarray, scores: np.ndarray, max_pool: int,
                    size_penalty: float = SIZE_PENALTY) -> np.ndarray:
        """The pool of decoded IDs `ids` [B, level] (best first, -inf skipped) under the query layer's
        rule (`grdr_plugin.pool.pool_ids`): every video of the IDs taken within `max_pool`, each video once, sorted."""
        real = np.isfinite(scores)
        ids = ids[real]
        if ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        keys = encode_prefix(ids, self.codebook_size)
        lo = np.searchsorted(self.keys, keys, side="left")
        lengths = np.searchsorted(self.keys, keys, side="right") - lo
        taken = pool_ids(scores[real], lengths, max_pool, size_penalty)
        return np.unique(self.vids[_run_indices(lo[taken], lengths[taken])])
