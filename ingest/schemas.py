"""What crosses process boundaries: task payloads (CLI -> broker -> worker) and summaries (back).

Payloads name where the data is (a dataset folder + a byte range of its catalog, or file paths),
never the arrays themselves, so a 2,000-video batch is a few hundred bytes in Redis.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, Field


class RecordError(BaseModel):
    video_id: str
    reason: str


class Summary(BaseModel):
    """indexed = new documents, updated = existing documents overwritten, failed = records rejected."""

    indexed: int = 0
    updated: int = 0
    failed: int = 0
    errors: list[RecordError] = Field(default_factory=list)
    # Seconds per stage (read, features, encode, index, publish, ...): where the time goes.
    timings_s: dict[str, float] = Field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.indexed + self.updated + self.failed

    def fail(self, video_id: str, reason: str) -> None:
        self.failed += 1
        self.errors.append(RecordError(video_id=video_id, reason=reason))

    def merge(self, other: "Summary", max_errors: Optional[int] = None) -> "Summary":
        errors = self.errors + other.errors
        timings = dict(self.timings_s)
        for k, v in other.timings_s.items():
            timings[k] = timings.get(k, 0.0) + v
        return Summary(indexed=self.indexed + other.indexed, updated=self.updated + other.updated,
                       failed=self.failed + other.failed,
                       errors=errors if max_errors is None else errors[:max_errors], timings_s=timings)

    def public(self) -> dict:
        """The `grdr ingest --json` object: the four fixed keys first."""
        return {"indexed": self.indexed, "updated": self.updated, "failed": self.failed,
                "errors": [e.model_dump() for e in self.errors],
                "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()}}


class Target(BaseModel):
    """Where a batch goes and which model must fill it."""

    index: str = Field(description="concrete versioned index (the alias may still point elsewhere during --reindex)")
    alias: str
    publish_as: str = Field(
        description="registry key new IDs are published under (the alias, or the new index on --reindex)")
    fingerprint: str
    model_dir: str


class DatasetSlice(BaseModel):
    """Rows [first_row, first_row + n) of a dataset folder: catalog bytes [byte_start, byte_stop)."""

    kind: Literal["dataset"] = "dataset"
    root: str
    first_row: int = Field(ge=0)
    first_line: int = Field(1, ge=1)
    byte_start: int = Field(ge=0)
    byte_stop: int = Field(ge=0)
    split: Optional[str] = Field(None, description="only catalog entries of this split (e.g. 'unseen')")


class CatalogSlice(BaseModel):
    """Lines of a JSONL catalog whose entries point at video files (``path``) or feature files (``features_path``)."""

    kind: Literal["catalog"] = "catalog"
    path: str
    first_line: int = Field(ge=1)
    byte_start: int = Field(ge=0)
    byte_stop: int = Field(ge=0)


class FileList(BaseModel):
    """Video files given directly (a glob or a list); video_id = file name."""

    kind: Literal["files"] = "files"
    paths: list[str]


class InlineLines(BaseModel):
    """Catalog lines sent in a request (POST /videos): no file holds them, so the lines travel in the payload."""

    kind: Literal["lines"] = "lines"
    name: str = Field(description="what errors call the input, e.g. 'body' -> 'body line 7'")
    first_line: int = Field(ge=1)
    data: bytes = Field(description="the lines as sent (a bad byte is one line's error, not the batch's)")


Source = Annotated[Union[DatasetSlice, CatalogSlice, FileList, InlineLines], Field(discriminator="kind")]


class IngestBatch(BaseModel):
    target: Target
    source: Source
    size: int = Field(ge=0, description="records in the batch (for progress)")
    image_encoder: Optional[str] = Field(None, description="ONNX image encoder, needed for video files")
