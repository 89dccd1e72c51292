"""`grdr tune`: a model's serving defaults (beam, recall-budget share, recall level) chosen on a validation split.

The pool rule's constants (grdr_plugin.pool) were chosen on msrvtt, whose C=64 IDs hold a few videos each. A
model with finer IDs (actnet's C=256: about 1.3 videos an ID) fills its budget only with a wider beam, and
what a catalog needs is a property of the model and its data: so each model may carry its own, chosen the
way every other knob is, on held-out training queries (`grdr train --holdout`), never on test queries.

The grid is every (recall level, beam, share): whole IDs, or their prefixes one level shorter, whose every video
the pool takes (the last level is then not decoded: a wide pool for the cost of a short search); each (level,
beam) is decoded once. The choice is the cheapest setting whose GRDR R@1, R@5 and R@10 all reach `target` of
dense's on those queries and whose candidate recall reaches `candidate_recall`. Where none reaches both, the
cheapest that reaches the recall target alone (a setting that adds a point of candidate recall and nothing at
k <= 10 is not worth its cost), and where none reaches that either, the best R@10 (then the cheapest); the record
says the targets were not met. Each share comes with its standard error on those queries (`of_dense_se`), which the
record keeps: shares closer than that are not told apart. Cost is the search stage's estimated time
(`search_cost_us`): the decoder's beams over the levels it decodes, and the exact score of every pool video.

What a catalog needs also depends on its size: a setting that reaches the targets over 15k videos may not over
100k, where each ID holds more look-alikes, and one that does over 100k spends more than 1M needs.  `grdr tune
--scale N` scores the same validation queries over the catalog grown to N videos (grdr_plugin.growth), so the
choice is made at the size the model will serve; the record names that size and its postings, and is kept beside
those of other sizes (`ModelConfig.serving_at_scale`): each catalog is served with the record tuned nearest its
size, and a budget drawn between the tuned ones (grdr_plugin.pool.BudgetRule).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from grdr_plugin.data import Dataset
from grdr_plugin.evaluation import encode_catalog, sweep
from grdr_plugin.metrics import RECALL_AT, share_of
from grdr_plugin.model.config import ServingRecord, TunedOn
from grdr_plugin.pool import DEFAULT_BEAM, MAX_BEAM, POOL_SHARE, default_max_pool

DEFAULT_BEAMS = (DEFAULT_BEAM, 500, 1000, 2000, MAX_BEAM)
DEFAULT_SHARES = (POOL_SHARE, 2 * POOL_SHARE, 4 * POOL_SHARE)
# GRDR's R@1/5/10 as a share of the same model's dense: what generative recall is for (within a few percent of
# an exact scan of the catalog).
DEFAULT_TARGET = 0.98
# % of queries whose video the pool holds: what deeper ranks (and a later, stronger reranker) can reach.
DEFAULT_CANDIDATE_RECALL = 95.0
RECALLS = tuple(f"R@{k}" for k in RECALL_AT)
# The search stage's unit costs on this project's machine: the decoder per beam and level (about 6.5 µs a beam on a
# C=256 model: bench.decode_paths, MODEL.md), OpenSearch's exact score per pool video (about 0.3 µs:
# bench.profile_request, QUERY.md).  Only their ratio orders the settings.
DECODE_US_PER_BEAM = 6.5
SCORE_US_PER_VIDEO = 0.3


def search_cost_us(beam: int, level: int, codebook_size: int, pool_mean: float) -> float:
    """The estimated search time (µs) of one query: each decoded level scores the live beams (at most `beam`, and at
    most the C^l prefixes of its level), then every pool video is scored exactly."""
    beams = sum(min(beam, codebook_size ** n) for n in range(level))
    return DECODE_US_PER_BEAM * beams + SCORE_US_PER_VIDEO * pool_mean


def default_levels(levels: int) -> tuple[int, ...]:
    """The recall levels a sweep tries: whole IDs, and (for IDs of two levels or more) their prefixes one shorter."""
    return tuple(range(max(1, levels - 1), levels + 1))


def settings_of(beams: Sequence[int], shares: Sequence[float], levels: Sequence[int],
                postings: int) -> list[tuple[int, int, int, float]]:
    """(beam, max_pool, level, share) for every level, beam and share, in (level, beam, budget) order; shares that
    give the same budget on this catalog (its floor or ceiling) are one setting, under the share nearest the pool
    rule's (POOL_SHARE, in log): what the record carries to catalogs of other sizes is then the rule's share wherever
    this catalog could not tell the shares apart."""
    nearest_rule_first = sorted(set(shares), key=lambda share: (abs(math.log(share / POOL_SHARE)), share))
    out: dict[tuple[int, int, int], float] = {}
    for level in sorted(set(levels)):
        for beam in sorted(set(beams)):
            for share in nearest_rule_first:
                out.setdefault((beam, default_max_pool(postings, share), level), share)
    return sorted(((beam, pool, level, share) for (beam, pool, level), share in out.items()),
                  key=lambda setting: (setting[2], setting[0], setting[1]))


def choose(grid: list[dict[str, Any]], dense: dict[str, float], target: float,
           candidate_recall: float = DEFAULT_CANDIDATE_RECALL) -> tuple[dict[str, Any], bool]:
    """The grid row to serve with, and whether it reached both targets (module docstring)."""
    def reaches_recall(row: dict[str, Any]) -> bool:
        return all(row[r] >= target * dense[r] for r in RECALLS)

    def reaches(row: dict[str, Any]) -> bool:
        return row["candidate_recall"] >= candidate_recall and reaches_recall(row)

    def cost(row: dict[str, Any]) -> tuple[float, int, int]:
        return row["cost_us"], row["beam"], row["max_pool"]

    for meets in (reaches, reaches_recall):
        chosen = [row for row in grid if meets(row)]
        if chosen:
            return min(chosen, key=cost), meets is reaches
    return min(grid, key=lambda row: (-row["R@10"], cost(row))), False


def tune(ds: Dataset, backend, *, beams: Sequence[int] = DEFAULT_BEAMS, shares: Sequence[float] = DEFAULT_SHARES,
         levels: Sequence[int] | None = None, target: float = DEFAULT_TARGET,
         candidate_recall: float = DEFAULT_CANDIDATE_RECALL, progress: Callable[[int], None] | None = None
         ) -> tuple[ServingRecord, dict[str, Any]]:
    """Score `ds`'s test queries (a validation split: grdr_plugin.validation.holdout_split) under every setting
    (levels: default_levels of the model's); the chosen ServingRecord and the whole sweep."""
    cfg = backend.cfg
    levels = default_levels(cfg.levels) if levels is None else levels
    catalog = encode_catalog(ds, backend)
    settings = settings_of(beams, shares, levels, catalog.index.postings)
    rows = ds.test_queries()
    dense, grid = sweep(ds, backend, catalog, rows, [(beam, pool, level) for beam, pool, level, _ in settings],
                        progress=progress)
    for row, (_, _, _, share) in zip(grid, settings):
        row["share"] = share
        row["of_dense"] = {r: round(share_of(row[r], dense[r]), 1) for r in RECALLS}
        row["cost_us"] = round(search_cost_us(row["beam"], row["recall_level"], cfg.codebook_size, row["pool_mean"]))
    best, met = choose(grid, dense, target, candidate_recall)
    record = ServingRecord(
        beam_size=best["beam"], pool_share=best["share"],
        recall_level=None if best["recall_level"] == cfg.levels else best["recall_level"],
        tuned_on=TunedOn(model=cfg.fingerprint, queries=len(rows), videos=ds.n_videos,
                         postings=catalog.index.postings, target=target,
                         target_candidate_recall=candidate_recall, met=met, of_dense=best["of_dense"],
                         of_dense_se=best["of_dense_se"], candidate_recall=best["candidate_recall"]))
    return record, {"queries": len(rows), "videos": ds.n_videos, "postings": catalog.index.postings, "dense": dense,
                    "grid": grid, "chosen": record.model_dump()}
