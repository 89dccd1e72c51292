"""Whether a catalog has outgrown its model, from the number of videos behind each semantic ID (pure).

A query's pool takes the decoded IDs whole, in turn, within the recall budget `max_pool` (grdr_plugin.pool).
Three things make recall decay as a catalog grows under a fixed model, and the report names each with its fix:
- an ID holding more videos than the budget fills it alone: a query decoding it first recalls that one ID's
  videos and none of the other decoded IDs' (retokenize the model with a larger codebook, `grdr retokenize`);
- the budget covers a smaller share of the catalog than the model recalls at (its serving records' shares), as
  when the default budget reaches its ceiling: pools hold fewer of the right videos' look-alikes (a larger
  `--max-pool`);
- the catalog is many times the size the model's serving defaults were tuned on (`grdr tune --scale`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from grdr_plugin.index import Mode
from grdr_plugin.model.config import choose_codebook_size
from grdr_plugin.pool import DEFAULT_MAX_BUDGET, MAX_POOL, BudgetRule

# Warn once this share of (video, ID) pairs sits in over-full IDs. Measured on msrvtt grown to 100,000 videos
# (docs/INDEX.md#capacity): 10.2 % at pool 300 (R@10 68 % of exact dense), 0.29 % at pool 1,000 (86 %), 0 at
# 3,000 (96 %); at 10,000 videos 0 (94 %). Not 0: a few near-duplicate uploads in one ID of a large catalog are noise.
CROWDED_WARN_SHARE = 0.001
# Warn once a catalog holds this many times the videos its model's serving defaults were tuned on (`grdr tune`'s
# record). msrvtt's model, tuned on 1,000 videos, keeps 97.8 % of exact dense's R@10 on validation queries over
# 100,000 at prefixes, 99.4 % tuned there, and 95.6 % against 99.6 % on test queries (docs/MODEL.md).
RETUNE_GROWTH = 10
# The suggested codebook at least doubles C: each level then splits a crowded code's videos in about two,
# and the ID space grows 2^L-fold, where a retrain at the same C would redraw similar IDs.
CODEBOOK_GROWTH = 2


class VideosPerId(BaseModel):
    model_config = ConfigDict(frozen=True)

    p50: int = Field(description="median videos behind one ID (an observed count)")
    p99: int = Field(description="99th percentile of videos behind one ID (an observed count)")
    max: int = Field(description="videos behind the fullest ID")


class CapacityReport(BaseModel):
    """How full a catalog's semantic IDs are, measured against the query pool's cap."""

    model_config = ConfigDict(frozen=True)

    videos: int = Field(description="videos holding semantic IDs")
    views: int = Field(description="K: semantic IDs per video")
    levels: int = Field(description="L: codes per ID")
    codebook_size: int = Field(description="C: codes per level")
    max_pool: int = Field(description="the recall budget the IDs are measured against (videos a query reranks)")
    distinct_ids: int = Field(description="IDs holding at least one video")
    id_space: int = Field(description="C^L: every ID the codebook can spell")
    occupancy: float = Field(description="distinct_ids / id_space")
    postings: int = Field(description="(video, ID) pairs: the sum of videos over IDs (a video's colliding views "
                                      "count once)")
    videos_per_id: VideosPerId
    crowded_ids: int = Field(description="IDs holding more than max_pool videos: each fills the budget alone")
    crowded_share: float = Field(
        description="share of the videos sitting in crowded IDs, counted in (video, ID) pairs (the per-ID counts "
                    "say no more): the pairs whose ID holds more than max_pool videos over all pairs. A video counts "
                    "once per crowded ID it holds; its uncrowded IDs count in the denominator only")
    pool_share: float = Field(description="the share of the postings the model recalls at this size (its serving "
                                          "records' shares: pool.BudgetRule)")
    budget_share: float = Field(description="max_pool / postings: the share the budget covers")
    tuned_videos: Optional[int] = Field(description="videos the model's serving defaults for this size were tuned on "
                                                    "(the record tuned nearest; None: not tuned, or not known)")
    warning: Optional[str] = Field(description="None when healthy; else what is wrong and the commands that fix it")


def suggested_codebook_size(videos: int, views: int, levels: int, codebook_size: int) -> int:
    """C for a retrain: the corpus-size rule's (grdr train's default), at least CODEBOOK_GROWTH x the current."""
    return max(codebook_size * CODEBOOK_GROWTH, choose_codebook_size(videos, views, levels))


def fix_commands(index: str, codebook_size: int, mode: Optional[Mode]) -> list[str]:
    """The retokenize, then the refit that moves the catalog to the new model's IDs (DATASET: the catalog as a
    dataset folder, docs/DATASETS.md; CURRENT_MODEL_DIR: the model serving the index; MODEL_DIR: a new model
    folder). mode: how grdr writes the index (None: unknown, both refits are named)."""
    retokenize = (f"grdr retokenize --model CURRENT_MODEL_DIR --dataset DATASET --out MODEL_DIR "
                  f"--codebook-size {codebook_size}")
    refits = {"catalog": f"grdr ingest --dataset DATASET --model MODEL_DIR --index {index} --reindex --wait",
              "attached": f"grdr backfill --index {index} --model MODEL_DIR --dataset DATASET --reindex --wait"}
    return [retokenize, *(refits.values() if mode is None else [refits[mode]])]


def _crowded(share: float, crowded: np.ndarray, max_pool: int, fullest: int, videos: int, views: int, levels: int,
             codebook_size: int, index: str, mode: Optional[Mode]) -> str:
    bigger = suggested_codebook_size(videos, views, levels, codebook_size)
    retokenize, *refits = fix_commands(index, bigger, mode)
    return (f"The catalog has outgrown its codebook: {share:.2%} of its (video, ID) pairs sit in "
            f"{crowded.size:,} ID{'s' if crowded.size > 1 else ''} holding more than {max_pool:,} videos "
            f"(the recall budget; the fullest holds {fullest:,}), so a query decoding one of them recalls that "
            "ID's videos only. Retokenize the "
            f"model on the catalog with a larger codebook (C={codebook_size} -> {bigger}; its reranker and "
            f"vectors stay) and refit: `{retokenize}`, then "
            + " or ".join(f"`{c}`" for c in refits)
            + " (DATASET: the catalog as a dataset folder; docs/RETOKENIZE.md). Until "
            "then a larger budget (`--max-pool` of grdr serve) takes more IDs after them, at more rerank work.")


def _thin_budget(max_pool: int, postings: int, pool_share: float, needed: int) -> str:
    ceiling = " (the default budget's ceiling)" if max_pool == DEFAULT_MAX_BUDGET else ""
    fix = (f"A budget of {needed:,} (`--max-pool` of grdr serve) restores the share, at more rerank work a query."
           if needed <= MAX_POOL else
           f"The share needs {needed:,}, more than the {MAX_POOL:,} one query may recall: `--max-pool {MAX_POOL}` "
           "comes closest, at more rerank work a query.")
    return (f"The recall budget, {max_pool:,} videos{ceiling}, covers {max_pool / postings:.2%} of the catalog's "
            f"(video, ID) pairs, under the {pool_share:.1%} the model recalls at (its serving defaults): pools hold "
            f"fewer of the right videos' look-alikes and recall falls (docs/INDEX.md#capacity). {fix}")


def _untuned_size(videos: int, tuned_videos: int) -> str:
    return (f"The model's serving defaults were tuned on {tuned_videos:,} videos and the catalog holds {videos:,}: "
            "a larger catalog may need a larger budget share or another recall level. Tune them at its size: "
            f"`grdr tune --dataset DATASET --model MODEL_DIR --validation-model M_VAL --scale {videos}` "
            "(docs/MODEL.md#at-the-serving-catalogs-size).")


def capacity_report(counts: np.ndarray, *, videos: int, views: int, levels: int, codebook_size: int,
                    max_pool: Optional[int], index: str, mode: Optional[Mode],
                    rule: BudgetRule = BudgetRule()) -> CapacityReport:
    """counts: videos behind each ID (one entry per ID holding any); max_pool: the recall budget (None: the
    query layer's default for this catalog); index: the name the warning's fix names; mode: how grdr writes
    that index (`_meta.grdr.mode`; None: unknown); rule: the serving model's budget at each size and the catalog
    sizes it was tuned on (`ModelConfig.budget_rule`; default: the pool rule's share, tuning not known)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size and counts.min() < 1:
        raise ValueError("counts: every ID listed must hold at least one video")
    postings = int(counts.sum())
    pool_share = rule.share_at(postings)
    tuned_videos = rule.bands[rule.nearest(postings)].videos
    if max_pool is None:
        max_pool = rule.budget(postings)
    if counts.size:
        # inverted_cdf: observed counts, not interpolations between two IDs
        p50, p99 = (int(v) for v in np.percentile(counts, [50, 99], method="inverted_cdf"))
        fullest = int(counts.max())
    else:
        p50 = p99 = fullest = 0
    crowded = counts[counts > max_pool]
    share = float(crowded.sum()) / postings if postings else 0.0
    id_space = codebook_size ** levels
    problems = []
    if share >= CROWDED_WARN_SHARE:
        problems.append(_crowded(share, crowded, max_pool, fullest, videos, views, levels, codebook_size, index, mode))
    needed = rule.asked(postings)  # the budget the model's shares ask for, unbounded
    if max_pool < needed:
        problems.append(_thin_budget(max_pool, postings, pool_share, needed))
    if tuned_videos is not None and videos > RETUNE_GROWTH * tuned_videos:
        problems.append(_untuned_size(videos, tuned_videos))
    warning = " ".join(problems) or None
    return CapacityReport(videos=videos, views=views, levels=levels, codebook_size=codebook_size, max_pool=max_pool,
                          distinct_ids=int(counts.size), id_space=id_space,
                          occupancy=counts.size / id_space, postings=postings,
                          videos_per_id=VideosPerId(p50=p50, p99=p99, max=fullest), crowded_ids=int(crowded.size),
                          crowded_share=share, pool_share=pool_share,
                          budget_share=max_pool / postings if postings else 0.0, tuned_videos=tuned_videos,
                          warning=warning)
