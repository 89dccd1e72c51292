"""Backfill, the worker side: grdr's fields into existing documents of a user's index, by partial update.

A batch names documents and where their features come from: a vector field of the documents
themselves (`DocIds`), or the inputs of `grdr ingest` (a dataset folder, a catalog, video files),
whose `video_id` is the document's `_id`. The worker looks the documents up (which index of an alias
holds each, its routing, whether it has grdr's fields yet), encodes their features as an ingest batch
does, and writes only grdr's fields with bulk `update`s, so every user field stays as it was. A
document that is missing, or whose vector is missing or malformed, fails alone, with the field named.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Sequence, Union

import numpy as np
from pydantic import BaseModel, Field

from grdr_plugin.index import DEFAULT_FIELDS, GrdrFields
from grdr_plugin.model.config import ModelConfig
from ingest import docs, features, indexer
from ingest.pipeline import (
    Encodable,
    Resources,
    Stopwatch,
    dataset_inputs,
    encode_records,
    file_inputs,
    finish_summary,
    refresh_and_publish,
)
from ingest.schemas import CatalogSlice, DatasetSlice, FileList, RecordError, Summary, Target
from ingest.sources import Record, read_records

# Documents per lookup search: a page of 500 documents with a 512-d vector each is ~3 MB of JSON.
LOOKUP_PAGE = 500
# A partial update re-reads the document and applies again when a client's write to it raced ours:
# three tries ride out a burst of writes to one document.
RETRY_ON_CONFLICT = 3
MAX_RESULT_WINDOW = 10_000  # OpenSearch's default index.max_result_window: the most hits one search returns


class BackfillTarget(Target):
    """Where a backfill writes: `alias` is the index or alias named (documents are looked up there),
    `index` the concrete indices behind it, comma-separated."""

    fields: GrdrFields = Field(DEFAULT_FIELDS, description="where the index keeps grdr's fields")
    features_field: Optional[str] = Field(None, description="vector field of the documents that holds features")
    normalise: bool = Field(False, description="L2-normalise those vectors (the model's features are cosine)")


class DocIds(BaseModel):
    """Documents of the index, by _id, whose features are in their own `features_field`."""

    kind: Literal["doc_ids"] = "doc_ids"
    ids: list[str]


BackfillSource = Annotated[Union[DatasetSlice, CatalogSlice, FileList, DocIds], Field(discriminator="kind")]


class BackfillBatch(BaseModel):
    target: BackfillTarget
    source: BackfillSource
    size: int = Field(ge=0, description="records in the batch (for progress)")
    image_encoder: Optional[str] = Field(None, description="ONNX image encoder, needed for video files")


@dataclass(frozen=True)
class DocRef:
    """One copy of a document: an alias over several indices may hold a _id more than once."""

    index: str
    routing: Optional[str]
    filled: bool  # it holds grdr IDs already (the write rewrites them)
    source: dict[str, Any]  # the _source fields the lookup asked for


def lookup(client, name: str, ids: Sequence[str], source_fields: list[str], *, fields: GrdrFields,
           indices: int) -> dict[str, list[DocRef]]:
    """Where each _id lives under `name` (an index or alias of `indices` indices), with the asked fields."""
    found: dict[str, list[DocRef]] = {}
    for start in range(0, len(ids), LOOKUP_PAGE):
        page = list(ids[start:start + LOOKUP_PAGE])
        body = {"size": min(len(page) * indices, MAX_RESULT_WINDOW), "query": {"ids": {"values": page}},
                "_source": source_fields}
        for hit in client.search(index=name, body=body)["hits"]["hits"]:
            src = hit.get("_source") or {}
            found.setdefault(hit["_id"], []).append(
                DocRef(index=hit["_index"], routing=hit.get("_routing"), filled=bool(src.get(fields.ids)), source=src))
    return found


def field_value(source: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of a document's _source (objects, or a literal dotted key)."""
    if path in source:
        return source[path]
    node: Any = source
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def vector_problem(value: Any, field: str, dim: int) -> Optional[str]:
    """Why a document's vector field cannot be the video's features, or None."""
    if value is None:
        return (f"field {field!r} is missing in this document; give its features another way "
                "(grdr backfill --dataset or --videos)")
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return f"field {field!r} is not a list of numbers"
    if len(value) != dim:
        return f"wrong feature dimension: field {field!r} has {len(value)} values, the model expects {dim}"
    return None


def field_inputs(records: list[Record], found: dict[str, list[DocRef]], target: BackfillTarget, cfg: ModelConfig,
                 summary: Summary, watch: Stopwatch) -> Encodable:
    """Model inputs from each document's vector field: one pooled feature per video, as a dataset without
    frames.npy gives (each frame is that feature)."""
    field = target.features_field
    assert field is not None  # a DocIds batch is planned with a features field
    with watch("features"):
        kept, rows = [], []
        for rec in records:
            value = field_value(found[rec.video_id][0].source, field)
            problem = vector_problem(value, field, cfg.feature_dim)
            if problem:
                summary.fail(rec.video_id, problem)
                continue
            kept.append(rec)
            rows.append(value)
        pooled = np.asarray(rows, dtype=np.float32).reshape(len(rows), cfg.feature_dim)
        good = []
        for i, problem in enumerate(features.row_problems(pooled, None, cfg.feature_dim)):
            if problem is None:
                good.append(i)
            else:
                summary.fail(kept[i].video_id, f"field {field!r}: {problem}")
        pooled = pooled[good]
        if target.normalise:
            pooled = features.l2_normalise(pooled)
        frames, pooled = features.to_model_inputs(pooled, None, cfg.frames)
        return Encodable([kept[i] for i in good], frames, pooled)


def partial_doc(fields: GrdrFields, ids: list[str], vector: str) -> str:
    """A bulk update's body: grdr's fields only (`vector`: the JSON array's body, ingest.docs.vector_strings)."""
    grdr = json.dumps({fields.ids: ids, fields.prefixes: docs.prefixes(ids)}, ensure_ascii=False)
    return f'{{"doc":{grdr[:-1]},"{fields.vec}":[{vector}]}}}}'


def _read(batch: BackfillBatch, summary: Summary) -> list[Record]:
    if isinstance(batch.source, DocIds):
        return [Record(video_id=i) for i in dict.fromkeys(batch.source.ids)]
    records = []
    for item in read_records(batch.source):
        if isinstance(item, RecordError):
            summary.fail(item.video_id, item.reason)
        else:
            records.append(item)
    return records


def run_backfill_batch(batch: BackfillBatch, res: Resources, task_id: str = "") -> Summary:
    """Look up, encode and partially update one batch; `indexed` counts documents that got grdr's fields for
    the first time, `updated` documents whose grdr fields were rewritten. Bad records fail alone."""
    summary = Summary()
    watch = Stopwatch(summary)
    target = batch.target
    with watch("read"):
        records = _read(batch, summary)
    from_field = isinstance(batch.source, DocIds)
    wanted = [target.fields.ids, *([target.features_field] if from_field and target.features_field else [])]
    with watch("lookup"):
        found = lookup(res.client, target.alias, [r.video_id for r in records], wanted, fields=target.fields,
                       indices=len(target.index.split(",")))
    present = []
    for rec in records:
        if rec.video_id in found:
            present.append(rec)
        elif from_field:
            summary.fail(rec.video_id, f"the document left {target.alias} before its batch ran")
        else:
            summary.fail(rec.video_id, f"no document with _id {rec.video_id!r} in {target.alias}: a backfill adds "
                                       "grdr's fields to documents already there (the catalog's video_id is the "
                                       "document _id); index the document first")
    if present:
        if from_field:
            enc = field_inputs(present, found, target, res.runtime.cfg, summary, watch)
        elif isinstance(batch.source, DatasetSlice):
            enc = dataset_inputs(batch.source, present, res.runtime, summary, watch)
        else:
            enc = file_inputs(present, res, batch.image_encoder, summary, watch)
        if enc.records:
            _encode_and_update(enc, found, res, target, summary, watch)
    return finish_summary(summary, res, target.alias, target.index, task_id, watch)


def _encode_and_update(enc: Encodable, found: dict[str, list[DocRef]], res: Resources, target: BackfillTarget,
                       summary: Summary, watch: Stopwatch) -> None:
    records, codes, vecs = encode_records(enc, res, summary, watch)
    with watch("documents"):
        ids = docs.semantic_ids(codes)
        vectors = docs.vector_strings(vecs, res.settings.vector_digits)
        actions: list[indexer.Action] = []
        owner: list[int] = []  # the record each action writes
        for pos, rec in enumerate(records):
            body = partial_doc(target.fields, ids[pos], vectors[pos])
            for ref in found[rec.video_id]:
                where: dict[str, Any] = {"_index": ref.index, "_id": rec.video_id,
                                         "retry_on_conflict": RETRY_ON_CONFLICT}
                if ref.routing is not None:
                    where["routing"] = ref.routing
                actions.append(({"update": where}, body))
                owner.append(pos)
    with watch("index"):
        outcome = indexer.bulk_write(res.client, actions, chunk_size=res.settings.bulk_chunk_size,
                                     policy=indexer.RetryPolicy.from_settings(res.settings), target=target.alias)
    failed: dict[int, str] = {}
    for action, reason in outcome.failed:
        failed.setdefault(owner[action], reason)
    good = []
    for pos, rec in enumerate(records):
        if pos in failed:
            summary.fail(rec.video_id, failed[pos])
        elif any(ref.filled for ref in found[rec.video_id]):
            summary.updated += 1
            good.append(pos)
        else:
            summary.indexed += 1
            good.append(pos)
    if good:
        written = sorted({ref.index for pos in good for ref in found[records[pos].video_id]})
        refresh_and_publish(res, written, target.publish_as, {sid for pos in good for sid in ids[pos]}, watch)
