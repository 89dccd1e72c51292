"""A validation split carved out of the training data only (numpy, no torch).

Hyper-parameters that trade seen against unseen quality (fit epochs, smoothing, reranker
epochs) must not be chosen on test queries.  `holdout_split` derives a dataset in which

  * a fraction of the *seen* videos is held out: they lose all their train queries, so the
    model meets them exactly as it meets unseen videos (IDs from the tokenizer only), and
    their train queries become "unseen" validation queries;
  * of every remaining seen video, `queries_per_video` train queries are held out as "seen"
    validation queries (the test split has 2 per seen video on the proxies);
  * every original test query is dropped, so nothing built on the derived dataset can touch one.

The corpus (all videos, original unseen ones included) is unchanged, so validation pools
compete with the same distractors as the test pools.  The split is a pure function of
(dataset, spec), saved as MODEL_DIR/holdout.json so `grdr eval --validation` re-derives it.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from grdr_plugin.data import Dataset

HOLDOUT_FILE = "holdout.json"


class HoldoutSpec(BaseModel):
    # a fifth of the seen videos: an unseen split large enough to measure, most videos still trained on
    fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of seen videos held out as pseudo-unseen")
    # 2 queries per video: a seen-video score of its own, while each video keeps most of its captions
    queries_per_video: int = Field(2, ge=1, description="train queries held out per remaining seen video")
    seed: int = 0


def holdout_split(ds: Dataset, spec: HoldoutSpec) -> Dataset:
    """The derived dataset: its `train` queries train, its `test` queries validate."""
    rng = np.random.default_rng(spec.seed)
    train_q = ds.train_queries()
    seen = np.flatnonzero(ds.video_split)
    n_held = int(round(spec.fraction * len(seen)))
    held_videos = np.zeros(ds.n_videos, dtype=bool)
    held_videos[rng.choice(seen, size=n_held, replace=False)] = True

    val = np.zeros(len(ds.query_ids), dtype=bool)
    val[train_q[held_videos[ds.query_video[train_q]]]] = True
    for v in np.setdiff1d(seen, np.flatnonzero(held_videos)):
        rows = train_q[ds.query_video[train_q] == v]
        if len(rows) > spec.queries_per_video:  # a video keeps at least one caption to train on
            val[rng.choice(rows, size=spec.queries_per_video, replace=False)] = True

    idx = train_q  # only train queries of seen videos: original test queries never enter
    return replace(
        ds,
        video_split=ds.video_split & ~held_videos,
        query_ids=[ds.query_ids[i] for i in idx],
        query_text=[ds.query_text[i] for i in idx],
        query_video=ds.query_video[idx],
        query_train=~val[idx],
    )


def save_spec(model_dir: Path, spec: HoldoutSpec) -> None:
    (model_dir / HOLDOUT_FILE).write_text(json.dumps(spec.model_dump(), indent=2) + "\n")


def load_spec(model_dir: Path) -> HoldoutSpec | None:
    path = model_dir / HOLDOUT_FILE
    return HoldoutSpec.model_validate_json(path.read_text()) if path.is_file() else None
