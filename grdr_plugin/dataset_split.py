"""Who trains and who tests in a dataset built from raw videos (`grdr dataset build`; pure: no files, no arrays).

* A caption belongs to the video whose `video_id` is its key, and to the video whose file name without
  extension is (annotations say "video7", the file is "video7.mp4").
* Videos: a share of the captioned ones is "unseen" (indexed only through the trained tokenizer,
  as new videos are after training); a video without captions is "unseen" too (nothing to train on).
* Captions: every caption of an unseen video is a "test" query; of the seen videos' captions a share
  is "test", each seen video keeping at least one "train" caption.

Choices are ranks of a hash of (seed, video_id[, caption position]): the same inputs give the same
split whatever order the videos come in (a rebuild, a resumed build, a glob listed differently).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

from pydantic import BaseModel, Field

QUERY_ID_HEX = 16  # 64 bits: no collision among any realistic number of captions


class SplitSpec(BaseModel):
    # the share of held-out videos in the public benchmarks' splits (tvr-proxy: 0.2)
    unseen: float = Field(0.2, ge=0, lt=1, description="share of captioned videos kept out of training")
    # about the share of seen videos' captions that tvr-proxy keeps as test queries
    test_captions: float = Field(0.1, ge=0, lt=1, description="share of seen videos' captions kept as test queries")
    seed: int = 0


@dataclass(frozen=True)
class Query:
    query_id: str
    text: str
    video_id: str
    split: Literal["train", "test"]


@dataclass
class Split:
    unseen: set[str]  # video_ids; the rest are seen
    queries: list[Query]  # grouped by video, in video order, captions in file order


def _hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def match_captions(video_ids: list[str], captions: dict[str, list[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """-> (captions per video_id, caption keys that match no video)."""
    out: dict[str, list[str]] = {}
    used: set[str] = set()
    for vid in video_ids:
        keys = [k for k in dict.fromkeys((vid, PurePath(vid).stem)) if captions.get(k)]
        if keys:
            out[vid] = [text for k in keys for text in captions[k]]
            used.update(keys)
    return out, [k for k in captions if k not in used]


def split_dataset(video_ids: list[str], captions: dict[str, list[str]], spec: SplitSpec) -> Split:
    """captions: per video_id (match_captions' first result); videos absent from it have none."""
    seed = spec.seed
    captioned = [v for v in video_ids if captions.get(v)]
    # at least one seen video, or there is nothing to train on
    n_unseen = min(round(len(captioned) * spec.unseen), max(len(captioned) - 1, 0))
    unseen = set(sorted(captioned, key=lambda v: _hash(seed, v))[:n_unseen])
    unseen |= {v for v in video_ids if not captions.get(v)}

    seen_pairs = [(v, i) for v in captioned if v not in unseen for i in range(len(captions[v]))]
    n_test = round(len(seen_pairs) * spec.test_captions)
    trainable = {v: len(captions[v]) for v in captioned}
    test: set[tuple[str, int]] = set()
    for v, i in sorted(seen_pairs, key=lambda p: _hash(seed, *p)):
        if len(test) == n_test:
            break
        if trainable[v] > 1:
            test.add((v, i))
            trainable[v] -= 1

    queries = [Query(_hash(v, i)[:QUERY_ID_HEX], text, v, "test" if v in unseen or (v, i) in test else "train")
               for v in video_ids for i, text in enumerate(captions.get(v, []))]
    return Split(unseen, queries)
