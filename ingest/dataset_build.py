"""`grdr dataset build`: video files + captions -> a dataset folder that `grdr train` reads (grdr_plugin.data).

Each video is decoded and sampled (ingest.video) and its frames embedded (ingest.image_encoder) exactly
as video-file ingest does, so a model trained on the folder meets the same features at ingest; the
encoder's identity goes into meta.json, `grdr train` copies it into the model's config.json, and ingest
refuses another encoder. Embeddings are kept in OUT/build/ as they come (ingest.embedding_cache): a
rerun skips every video already done. A bad video file or caption line is reported and skipped.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from pydantic import BaseModel, Field

from grdr_plugin.data import META_FILE, DatasetMeta
from grdr_plugin.dataset_split import SplitSpec, match_captions, split_dataset
from grdr_plugin.model.config import ModelConfig
from ingest import features
from ingest.captions import read_captions
from ingest.embedding_cache import CacheSpec, EmbeddingCache, video_key
from ingest.image_encoder import ImageEncoder
from ingest.schemas import RecordError
from ingest.sources import Record, plan_videos, read_records
from ingest.video import VideoError, read_frames

# One batch for the whole input: read_records then catches every duplicate video_id of a catalog.
ONE_BATCH = sys.maxsize


class BuildOptions(BaseModel):
    videos: str = Field(description="a video file, a quoted glob, or a .jsonl catalog of {video_id, path, ...}")
    captions: Path
    image_encoder: Path = Field(description="ONNX image encoder (with its sidecar .json)")
    out: Path
    frames: int = Field(ModelConfig.model_fields["frames"].default, ge=1,
                        description="F: frames sampled per video, uniformly in time (the model's F)")
    split: SplitSpec = Field(default_factory=SplitSpec)


class BuildReport(DatasetMeta):
    """meta.json of a built folder, and what `grdr dataset build --json` prints."""

    built_by: str = "grdr dataset build"
    options: dict
    videos: int = Field(description="videos in the dataset")
    seen: int
    unseen: int
    queries_train: int
    queries_test: int
    embedded: int = Field(description="videos decoded and embedded by this run (the rest came from OUT/build/)")
    skipped: list[RecordError] = Field(description="videos left out, each with its reason")
    caption_errors: list[RecordError] = Field(description="caption lines left out, each with its reason")
    captions_unmatched: list[str] = Field(description="caption keys that name no video")
    videos_without_captions: int = Field(description="in the dataset as unseen videos without queries")
    seconds: float = 0.0


def _open_encoder(path: Path) -> ImageEncoder:
    try:
        return ImageEncoder(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a file that is no graph
        raise ValueError(f"--image-encoder: {path} is not a usable ONNX graph ({exc})") from None


def _inputs(spec: str) -> tuple[list[Record], list[RecordError]]:
    """The video records of --videos, and the lines or entries that cannot be built (each with its reason)."""
    records: list[Record] = []
    bad: list[RecordError] = []
    for source, _ in plan_videos(spec, ONE_BATCH):
        for item in read_records(source):
            if isinstance(item, RecordError):
                bad.append(item)
            elif item.path is None:
                bad.append(RecordError(video_id=item.video_id, reason="missing field 'path': a dataset build "
                                                                      "embeds video files (features come from them)"))
            else:
                records.append(item)
    return records, bad


def _embed(rec: Record, encoder: ImageEncoder, opts: BuildOptions, dim: int) -> np.ndarray:
    """Frame embeddings [F, D] of one video, as video-file ingest computes them; raises VideoError with the reason."""
    emb = encoder.embed(read_frames(rec.path, opts.frames, encoder.image_size))
    problem = features.row_problems(None, emb[None], dim)[0]
    if problem:
        raise VideoError(f"the image encoder gave unusable features ({problem})")
    return emb


def _atomic_write(path: Path, write: Callable) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        write(fh)
    os.replace(tmp, path)


def _jsonl(rows: list[dict]) -> Callable:
    return lambda fh: fh.writelines((json.dumps(r, ensure_ascii=False) + "\n").encode() for r in rows)


def _embed_all(records: list[Record], encoder: ImageEncoder, opts: BuildOptions, skipped: list[RecordError],
               progress: Callable[[int], None], on_total: Callable[[int, int], None]
               ) -> tuple[list[Record], np.ndarray, int]:
    """-> (the videos that have embeddings, their frames [N, F, D], how many this run embedded)."""
    dim = encoder.dim or encoder.embed(np.zeros((1, encoder.image_size, encoder.image_size, 3), np.uint8)).shape[1]
    keys: dict[str, Optional[str]] = {}
    for rec in records:
        try:
            keys[rec.video_id] = video_key(rec.path)
        except OSError:  # missing or unreadable: read_frames names the problem
            keys[rec.video_id] = None
    good: list[tuple[Record, str]] = []
    embedded = 0
    with EmbeddingCache(opts.out, CacheSpec(image_encoder=encoder.identity, frames=opts.frames, dim=dim)) as cache:
        todo = sum(keys[r.video_id] not in cache.rows for r in records)
        on_total(todo, len(records) - todo)
        for rec in records:
            key = keys[rec.video_id]
            if key not in cache.rows:
                try:
                    emb = _embed(rec, encoder, opts, dim)
                except VideoError as exc:
                    skipped.append(RecordError(video_id=rec.video_id, reason=str(exc)))
                    progress(1)
                    continue
                key = key or video_key(rec.path)
                cache.add(key, emb)
                embedded += 1
                progress(1)
            good.append((rec, key))
        return [r for r, _ in good], cache.read([k for _, k in good]), embedded


def _catalog_line(rec: Record, split: str) -> dict:
    return {"video_id": rec.video_id, **rec.meta, "path": str(rec.path), "split": split}


def _write_layout(out: Path, videos: list[Record], frames: np.ndarray, unseen: set[str], queries: list) -> None:
    _, pooled = features.to_model_inputs(None, frames, frames.shape[1])  # the pooled feature ingest computes
    _atomic_write(out / "catalog.jsonl",
                  _jsonl([_catalog_line(r, "unseen" if r.video_id in unseen else "seen") for r in videos]))
    _atomic_write(out / "features.npy", lambda fh: np.save(fh, pooled))
    _atomic_write(out / "frames.npy", lambda fh: np.save(fh, frames))
    _atomic_write(out / "queries.jsonl", _jsonl([asdict(q) for q in queries]))


def build_dataset(opts: BuildOptions, progress: Callable[[int], None] = lambda n: None,
                  on_total: Callable[[int, int], None] = lambda todo, done: None) -> BuildReport:
    """Write the dataset layout into opts.out; on_total(to embed, already embedded) comes before the first video."""
    t0 = time.perf_counter()
    if opts.out.exists() and not opts.out.is_dir():
        raise ValueError(f"--out: {opts.out} is a file; give the folder to write the dataset into")
    captions = read_captions(opts.captions)
    records, skipped = _inputs(opts.videos)
    by_video, unmatched = match_captions([r.video_id for r in records], captions.by_video)
    if records and not by_video:
        raise ValueError(f"--captions: no caption names a video of --videos (caption keys such as "
                         f"{next(iter(captions.by_video))!r}, video_ids such as {records[0].video_id!r}); "
                         "a key is a video_id, or a file name without its extension")
    encoder = _open_encoder(opts.image_encoder)
    videos, frames, embedded = _embed_all(records, encoder, opts, skipped, progress, on_total)
    ids = [r.video_id for r in videos]
    kept = {v: by_video[v] for v in ids if v in by_video}
    if not kept:  # nothing to train on
        first = f"; {len(skipped)} skipped, first {skipped[0].video_id}: {skipped[0].reason}" if skipped else ""
        raise ValueError(f"--videos: no video {'with captions ' if videos else ''}could be decoded{first}")
    split = split_dataset(ids, kept, opts.split)
    (opts.out / META_FILE).unlink(missing_ok=True)  # a previous build's: the folder is incomplete until the new one
    _write_layout(opts.out, videos, frames, split.unseen, split.queries)
    n_train = sum(q.split == "train" for q in split.queries)
    report = BuildReport(
        image_encoder=encoder.identity, options=json.loads(opts.model_dump_json()), videos=len(videos),
        seen=len(videos) - len(split.unseen), unseen=len(split.unseen), queries_train=n_train,
        queries_test=len(split.queries) - n_train, embedded=embedded, skipped=skipped,
        caption_errors=captions.errors, captions_unmatched=unmatched, videos_without_captions=len(ids) - len(kept),
        seconds=round(time.perf_counter() - t0, 3))
    # meta.json last: a folder with it is complete
    _atomic_write(opts.out / META_FILE, lambda fh: fh.write((report.model_dump_json(indent=2) + "\n").encode()))
    return report
