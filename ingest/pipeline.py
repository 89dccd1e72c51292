"""One batch, end to end: records -> features -> semantic IDs + vectors -> bulk index -> publish.

Pure orchestration over injected resources (client, model runtime, image encoder), so the Celery
task is a thin wrapper and tests can run a batch in-process. No torch anywhere on this path.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from grdr_plugin.id_registry import publish_ids
from grdr_plugin.runtime import ModelRuntime
from ingest import docs, features, indexer
from ingest.config import IngestSettings
from ingest.image_encoder import ImageEncoder
from ingest.schemas import DatasetSlice, IngestBatch, RecordError, Summary
from ingest.sources import Record, read_records
from ingest.video import VideoError, read_frames

# IDs remembered per registry key: about the whole ID space at the paper's C=128, L=3 (128^3 = 2.1M), so
# the set is rarely cleared, while a long-lived worker's memory stays bounded (~100 bytes an ID).
PUBLISHED_IDS_LIMIT = 2_000_000


class PublishedIds:
    """IDs this process already published, per registry key, so a batch publishes only new ones.

    Publishing is idempotent, so forgetting (the bound, a restart) only costs a redundant publish;
    skipping it when nothing is new saves the registry's refresh wait on most batches.
    """

    def __init__(self, limit: int = PUBLISHED_IDS_LIMIT):
        self.limit = limit
        self._seen: dict[str, set[str]] = {}

    def new(self, key: str, ids: set[str]) -> set[str]:
        return ids - self._seen.get(key, set())

    def add(self, key: str, ids: set[str]) -> None:
        seen = self._seen.setdefault(key, set())
        if len(seen) + len(ids) > self.limit:
            seen.clear()
        seen.update(ids)


@dataclass
class Resources:
    client: object
    runtime: ModelRuntime
    settings: IngestSettings = field(default_factory=IngestSettings)
    image_encoder: Optional[Callable[[str], ImageEncoder]] = None  # path -> (cached) encoder
    video_backend: str = "auto"
    published: PublishedIds = field(default_factory=PublishedIds)


class Stopwatch:
    """Accumulates seconds per stage into a summary's timings_s."""

    def __init__(self, summary: Summary):
        self.summary = summary

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.summary.timings_s[stage] = self.summary.timings_s.get(stage, 0.0) + time.perf_counter() - t0


@dataclass
class Encodable:
    """Records that survived validation with their model inputs, row-aligned."""

    records: list[Record]
    frames: np.ndarray  # [n, F, D]
    pooled: np.ndarray  # [n, D]


def _keep_valid(records: list[Record], pooled: Optional[np.ndarray], frames: Optional[np.ndarray], feature_dim: int,
                summary: Summary) -> list[int]:
    """Positions of the records whose inputs (as given) can be encoded; the others become failures."""
    keep = []
    for i, problem in enumerate(features.row_problems(pooled, frames, feature_dim)):
        if problem is None:
            keep.append(i)
        else:
            summary.fail(records[i].video_id, problem)
    return keep


def dataset_inputs(source: DatasetSlice, records: list[Record], runtime: ModelRuntime, summary: Summary,
                   watch: Stopwatch) -> Encodable:
    card = runtime.cfg
    with watch("features"):
        rows = np.asarray([r.row for r in records], dtype=np.int64)
        pooled, frames = features.dataset_rows(Path(source.root), rows)
        keep = _keep_valid(records, pooled, frames, card.feature_dim, summary)
        frames, pooled = features.to_model_inputs(pooled[keep], None if frames is None else frames[keep], card.frames)
        return Encodable([records[i] for i in keep], frames, pooled)


def _one_video(rec: Record, res: Resources, encoder_path: Optional[str], watch: Stopwatch):
    """-> (pooled [1,D] | None, frames [1,F,D] | None) for a file record; raises with the per-record reason."""
    if rec.features is not None:
        with watch("features"):
            try:
                return features.inline_features(rec.features)
            except ValueError as exc:
                raise VideoError(f"bad field 'features': {exc}") from None
    if rec.features_path is not None:
        with watch("features"):
            try:
                return features.feature_file(rec.features_path)
            except (OSError, ValueError) as exc:
                raise VideoError(f"unreadable features file {rec.features_path}: {exc}") from None
    if encoder_path is None or res.image_encoder is None:
        raise VideoError("a video file needs an image encoder (grdr ingest --image-encoder FILE.onnx)")
    encoder = res.image_encoder(encoder_path)
    if encoder.dim and encoder.dim != res.runtime.cfg.feature_dim:
        raise VideoError(f"wrong feature dimension: the image encoder gives {encoder.dim}, "
                         f"the model expects {res.runtime.cfg.feature_dim}")
    trained_on = res.runtime.cfg.image_encoder
    if trained_on is not None and (why := trained_on.mismatch(encoder.identity)):
        raise VideoError(why)
    with watch("decode"):
        pixels = read_frames(rec.path, res.runtime.cfg.frames, encoder.image_size, res.video_backend)
    with watch("embed"):
        return None, encoder.embed(pixels)[None]


def file_inputs(records: list[Record], res: Resources, encoder_path: Optional[str], summary: Summary,
                watch: Stopwatch) -> Encodable:
    card = res.runtime.cfg
    kept: list[Record] = []
    frames_l, pooled_l = [], []
    for rec in records:
        try:
            pooled, frames = _one_video(rec, res, encoder_path, watch)
        except VideoError as exc:
            summary.fail(rec.video_id, str(exc))
            continue
        if not _keep_valid([rec], pooled, frames, card.feature_dim, summary):
            continue
        f, p = features.to_model_inputs(pooled, frames, card.frames)
        kept.append(rec)
        frames_l.append(f)
        pooled_l.append(p)
    if not kept:
        return Encodable([], np.zeros((0, card.frames, card.feature_dim), np.float32),
                         np.zeros((0, card.feature_dim), np.float32))
    return Encodable(kept, np.concatenate(frames_l), np.concatenate(pooled_l))


def run_batch(batch: IngestBatch, res: Resources, task_id: str = "") -> Summary:
    """Validate, encode, index and publish one batch; bad records become failures, never exceptions.

    Exceptions escape only for the batch as a whole (OpenSearch unreachable after retries, wrong
    index): the caller (Celery) retries or fails the batch.
    """
    summary = Summary()
    watch = Stopwatch(summary)
    target = batch.target
    with watch("read"):
        records: list[Record] = []
        for item in read_records(batch.source):
            if isinstance(item, RecordError):
                summary.fail(item.video_id, item.reason)
            else:
                records.append(item)
    if records:
        if isinstance(batch.source, DatasetSlice):
            enc = dataset_inputs(batch.source, records, res.runtime, summary, watch)
        else:
            enc = file_inputs(records, res, batch.image_encoder, summary, watch)
        if enc.records:
            _encode_and_index(enc, res, target.index, target.publish_as, summary, watch)
    return finish_summary(summary, res, target.alias, target.index, task_id, watch)


def finish_summary(summary: Summary, res: Resources, alias: str, index: str, task_id: str,
                   watch: Stopwatch) -> Summary:
    """Every per-record error into the errors index; the summary keeps the first max_errors_reported."""
    if summary.errors:
        with watch("errors_index"):
            indexer.record_errors(res.client, res.settings.errors_index, alias, index, task_id, summary.errors)
    summary.errors = summary.errors[:res.settings.max_errors_reported]
    return summary


def encode_records(enc: Encodable, res: Resources, summary: Summary,
                   watch: Stopwatch) -> tuple[list[Record], np.ndarray, np.ndarray]:
    """-> (records, codes [n,K,L], vectors [n,D]) of the records the model encodes (a NaN/Inf vector fails its
    record)."""
    with watch("encode"):
        codes, vecs = res.runtime.encode_videos(enc.frames, enc.pooled)
        finite = np.isfinite(vecs).all(axis=1)
    records = enc.records
    if not finite.all():
        for i in np.flatnonzero(~finite):
            summary.fail(records[i].video_id, "the model produced a NaN/Inf vector")
        records, codes, vecs = [records[i] for i in np.flatnonzero(finite)], codes[finite], vecs[finite]
    return records, codes, vecs


def refresh_and_publish(res: Resources, indices: Sequence[str], publish_as: str, ids: set[str],
                        watch: Stopwatch) -> None:
    """Make written documents searchable, then publish their IDs that this process has not published yet."""
    # Refresh before publishing: once a query process sees an ID, the videos behind it are searchable.
    with watch("refresh"):
        res.client.indices.refresh(index=",".join(indices))
    new = res.published.new(publish_as, ids)
    if new:
        with watch("publish"):
            publish_ids(res.client, publish_as, new)
        res.published.add(publish_as, new)


def _encode_and_index(enc: Encodable, res: Resources, index: str, publish_as: str, summary: Summary,
                      watch: Stopwatch) -> None:
    records, codes, vecs = encode_records(enc, res, summary, watch)
    with watch("documents"):
        metas = [{**r.meta, "video_id": r.video_id} for r in records]
        sources, ids = docs.build_sources(metas, codes, vecs, res.settings.vector_digits)
    with watch("index"):
        outcome = indexer.bulk_index(res.client, index, [r.video_id for r in records], sources,
                                     chunk_size=res.settings.bulk_chunk_size,
                                     policy=indexer.RetryPolicy.from_settings(res.settings))
    summary.indexed += len(outcome.created)
    summary.updated += len(outcome.updated)
    for pos, reason in outcome.failed:
        summary.fail(records[pos].video_id, reason)
    good = sorted(outcome.created + outcome.updated)
    if good:
        refresh_and_publish(res, [index], publish_as, {sid for pos in good for sid in ids[pos]}, watch)
