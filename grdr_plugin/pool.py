"""Which recalled videos make up the pool: one rule for in-process eval and OpenSearch.

The decoded IDs are taken in turn, each one whole, while the videos behind the IDs taken so
far (counted per ID, as the trie counts them: a video under two of them counts twice) stay
within the recall budget `max_pool`.  The decoder's best ID goes first and is always taken; the
others' turn is their score less a share of the log of their video count (`pool_ids`): a crowded
ID spends more of the budget for the one right video it may hold.  Every video under the taken
IDs is the pool, and the dense reranker scores all of them exactly.  OpenSearch applies the rule
as a `terms` filter on the taken IDs under the k-NN scorer (`query.request.grdr_request`), so
the pool needs no ordering of its own: the same request is correct on one shard or many (each
shard scores its part of the pool, the coordinating node merges the top k).  In-process
evaluation applies it with `pool_ids` over the same counts (`grdr_plugin.decoding.InvertedIndex`).

The budget grows with the catalog (`default_max_pool`): a fixed pool holds the families of fewer
and fewer distinct videos as a catalog grows, so the right video falls out of it.  The beam and the
budget's share are a model's serving defaults (`grdr_plugin.model.config.ServingRecord`): these
constants unless `grdr tune` chose others on the model's validation split.  A model tuned at several
catalog sizes (`grdr tune --scale`) has a share for each, and `BudgetRule` draws the budget between them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

# Decoded IDs per query, shared by `grdr eval`, the query layer and the benchmark.
DEFAULT_BEAM = 300
# Decoded IDs one query may ask for: decoding grows with it (about 6.5 µs a beam on a C=256 model, MODEL.md), and
# fine codebooks need thousands to fill a budget (actnet's C=256 IDs hold 1.3 videos each).
MAX_BEAM = 3000
# The budget as a share of the catalog's (video, ID) postings, and its floor.  From the validation
# sweeps in docs/MODEL.md#recall-budget (held-out train queries): R@10 reaches 98-99 % of dense at
# about a fortieth of the postings of msrvtt grown to 10k, 30k and 100k videos, and rises little after;
# on the small catalogs (msrvtt's 1k, msvd's 2k videos) the floor decides, and candidate recall reaches
# 95 % at 500 postings and 98 % at 1,000, for ~240 more videos scored exactly (~0.04 ms).
POOL_SHARE = 0.025
MIN_POOL = 1000
# What one query may be asked to recall (`--max-pool`), and the default's ceiling: the share above reaches it at
# about 1M videos (4M postings), and a model tuned there asks for less (msrvtt's record at 1M: 1 %, 37,732 videos
# on the test catalog, 100.0 % of exact dense's R@10, each pool video scored in about 0.18 µs on one shard;
# docs/MODEL.md#at-the-serving-catalogs-size).  Past the ceiling the capacity report warns, with its fixes.
MAX_POOL = 100_000
DEFAULT_MAX_BUDGET = MAX_POOL
# IDs are taken until their counts reach at least this many videos, whatever the budget: a search's default
# k, so a small first ID followed by a crowded one does not leave a pool that widening by prefixes must fill.
MIN_POOL_VIDEOS = 10
# An ID's turn in the pool after the decoder's best: its score (summed natural log-probabilities) less this times
# the log of its video count, i.e. its probability over count ** SIZE_PENALTY.  1 would rank IDs by probability
# per video, what a budget in videos buys (a knapsack's greedy order); the decoder's scores are not probabilities
# of holding the right video, and validation sweeps (catalogs of 1k to 1M videos) put the best between 0.5 and 1,
# 0.75 within 0.4 point of candidate recall of the best everywhere (docs/MODEL.md#an-ids-turn).
SIZE_PENALTY = 0.75


def default_max_pool(postings: int, share: float = POOL_SHARE) -> int:
    """The recall budget for a catalog of `postings` (video, ID) pairs at `share` of them (a model's
    `ServingRecord.pool_share`): a rule of one share, between the floor and the ceiling."""
    return BudgetRule((Band(0, share),)).budget(postings)


class Band(NamedTuple):
    """A budget share tuned at one catalog size."""

    postings: int  # the (video, ID) pairs of the catalog it was tuned over; 0 where not recorded
    share: float
    videos: Optional[int] = None  # that catalog's videos, where known


@dataclass(frozen=True)
class BudgetRule:
    """The default recall budget of a catalog of any size, from shares tuned at one or more sizes (`bands`, by
    postings).  Below the smallest tuned size and beyond the largest, that band's share (`default_max_pool`);
    between two, the budget on the straight line between theirs in log budget over log postings.  What a catalog
    needs grows slower than its postings: on validation queries msrvtt's model keeps 99.4 % of dense's R@10 with
    a budget of 20,000 (5.2 % of the postings) at 100k videos and 99.7 % with 60,000 (1.6 %) at 1M
    (docs/MODEL.md#an-ids-turn), so one share serves one size band, and the sizes between two tuned ones get a
    budget between theirs."""

    bands: tuple[Band, ...] = (Band(0, POOL_SHARE),)

    def __post_init__(self) -> None:
        sizes = [band.postings for band in self.bands]
        if not sizes or sizes != sorted(set(sizes)):
            raise ValueError("bands: one or more, by distinct postings (only the first may be of unknown size, 0)")

    def nearest(self, postings: int) -> int:
        """The band tuned nearest a catalog of `postings` pairs, in log size (a band of unknown size serves the
        catalogs below the next one's)."""
        known = [i for i, band in enumerate(self.bands) if band.postings > 0]
        if not known or (known[0] > 0 and postings < self.bands[known[0]].postings):
            return 0
        size = math.log(max(postings, 1))
        return min(known, key=lambda i: abs(size - math.log(self.bands[i].postings)))

    def share_at(self, postings: int) -> float:
        """The share of a catalog's `postings` the rule recalls at, before the floor and the ceiling."""
        return self._budget(postings) / postings if postings > 0 else self.bands[self.nearest(postings)].share

    def asked(self, postings: int) -> int:
        """The budget the tuned shares ask for at `postings`, before the floor and the ceiling."""
        return math.ceil(self._budget(postings))

    def wanted(self, postings: int) -> int:
        """The budget at `postings` before the ceiling (MAX_POOL may refuse it)."""
        return max(MIN_POOL, self.asked(postings))

    def budget(self, postings: int) -> int:
        """The default recall budget of a catalog of `postings` (video, ID) pairs."""
        return min(DEFAULT_MAX_BUDGET, self.wanted(postings))

    def _budget(self, postings: int) -> float:
        ends = [band for band in self.bands if band.postings > 0]
        below = [band for band in ends if band.postings <= postings]
        above = [band for band in ends if band.postings > postings]
        if not below or not above:
            return self.bands[self.nearest(postings)].share * max(postings, 0)
        low, high = below[-1], above[0]
        low_budget, high_budget = (max(MIN_POOL, band.share * band.postings) for band in (low, high))
        t = math.log(postings / low.postings) / math.log(high.postings / low.postings)
        return math.exp((1 - t) * math.log(low_budget) + t * math.log(high_budget))


def check_beam_size(beam_size: int) -> int:
    if not 1 <= beam_size <= MAX_BEAM:
        raise ValueError(f"beam_size: must be between 1 and {MAX_BEAM}")
    return beam_size


def check_max_pool(max_pool: int) -> int:
    if not 1 <= max_pool <= MAX_POOL:
        raise ValueError(f"max_pool: must be between 1 and {MAX_POOL} (the videos one query may rerank)")
    return max_pool


def pool_ids(scores: np.ndarray, counts: np.ndarray, max_pool: int, size_penalty: float = SIZE_PENALTY) -> np.ndarray:
    """The decoded IDs the pool takes, as positions in the decoder's list (`scores`, `counts`: one per ID, best
    first, padding dropped), in the order taken: the decoder's best, then the rest by score less `size_penalty` x
    ln(count) (a count of 0, a stale trie's, as 1; ties in the decoder's order), within `max_pool` by `budget_ids`.
    The best goes first whatever its size: under a budget thinner than the IDs are crowded it is the one ID taken,
    the likeliest to hold the right video."""
    counts = np.asarray(counts, dtype=np.int64)
    turn = np.asarray(scores, dtype=np.float64)[1:] - size_penalty * np.log(np.maximum(counts[1:], 1))
    order = np.r_[0, 1 + np.argsort(-turn, kind="stable")] if counts.size else np.zeros(0, dtype=np.int64)
    return order[: budget_ids(counts[order], max_pool)]


def budget_ids(counts: np.ndarray | list[int], max_pool: int) -> int:
    """How many leading IDs (in their turn's order) the pool takes: while their `counts` sum to at most
    `max_pool`, and at least until they reach MIN_POOL_VIDEOS (so at least one, when there is one)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size == 0:
        return 0
    total = np.cumsum(counts)
    within = int(np.searchsorted(total, max_pool, side="right"))
    reaching = int(np.searchsorted(total, MIN_POOL_VIDEOS, side="left")) + 1
    return min(counts.size, max(within, reaching))
