"""Inputs: plan batches on the submitting side, read a batch's records on the worker side.

Four kinds (schemas.Source): a dataset folder (features given), a JSONL catalog whose lines
point at video files or per-video feature files (or hold the features inline), video files named
by a glob or list, and catalog lines sent in a request (POST /videos).
Planning cuts a catalog into byte ranges so a task reads only its own lines; reading turns each
line into a Record or a RecordError with a reason a user can act on. In a dataset, line i of
catalog.jsonl is feature row i (grdr_plugin.data): a blank line is a bad record at its line number,
never a shift of the rows after it. Other catalogs skip blank lines.
"""
from __future__ import annotations

import glob
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from grdr_plugin.data import alignment_error, catalog_lines
from grdr_plugin.index import ID_FIELD, KEYWORD_IGNORE_ABOVE, PREFIX_FIELD, VECTOR_FIELD
from ingest.download import is_url
from ingest.schemas import CatalogSlice, DatasetSlice, FileList, InlineLines, RecordError, Source

# Fields the indexer writes itself; a catalog may not set them.
RESERVED_FIELDS = frozenset({ID_FIELD, PREFIX_FIELD, VECTOR_FIELD, "ingested_at"})
MAX_ID_BYTES = 512  # OpenSearch's limit on a document _id
# Bounds on catalog values: far above real metadata, far below what breaks a bulk request or a mapping.
MAX_TEXT_CHARS = 16_384
MAX_NAME_CHARS = 255
MAX_DEPTH = 8  # OpenSearch refuses objects nested deeper than 20 (index.mapping.depth.limit)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")


class SourceError(ValueError):
    """The input as a whole is unusable (missing file, rows != lines); raised before anything is queued."""


class CatalogEntry(BaseModel):
    """One catalog line. Unknown keys are kept as metadata (indexed as keywords)."""

    model_config = ConfigDict(extra="allow")

    video_id: str
    title: Optional[str] = None
    description: Optional[str] = None
    tags: Optional[list[str]] = None
    duration_s: Optional[float] = None
    split: Optional[str] = None
    source: Optional[str] = None
    path: Optional[str] = None
    features_path: Optional[str] = None
    features: Optional[list[Any]] = None  # inline: [D] pooled or [F, D] frames, as in a per-video .npy

    @field_validator("video_id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must be a non-empty string")
        if len(v.encode()) > MAX_ID_BYTES:
            raise ValueError(f"is longer than {MAX_ID_BYTES} bytes")
        return v

    @field_validator("title")
    @classmethod
    def _title_ok(cls, v: Optional[str]) -> Optional[str]:
        # Hits read titles from title.raw's doc values (grdr_plugin.index.HIT_TITLE_FIELD), which hold this many.
        if v is not None and len(v) > KEYWORD_IGNORE_ABOVE:
            raise ValueError(f"longer than {KEYWORD_IGNORE_ABOVE} characters (got {len(v)}); put longer text in "
                             "'description'")
        return v

    @field_validator("tags", mode="before")
    @classmethod
    def _one_tag_is_a_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("duration_s")
    @classmethod
    def _duration_ok(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not (np.isfinite(v) and v >= 0):
            raise ValueError("must be a finite number >= 0")
        return v

    def metadata(self) -> dict[str, Any]:
        """What goes into the document besides IDs and vector (the features are inputs, not metadata)."""
        return self.model_dump(exclude={"features_path", "features"}, exclude_none=True)


@dataclass
class Record:
    """One video of a batch that passed line-level validation."""

    video_id: str
    meta: dict[str, Any] = field(default_factory=dict)
    row: Optional[int] = None  # dataset row (features.npy)
    path: Optional[Union[Path, str]] = None  # video file, or its http(s) URL
    features_path: Optional[Path] = None  # per-video .npy
    features: Optional[list[Any]] = None  # inline, as sent


Parsed = Union[Record, RecordError]


# ---- reading one line ----

def _encodable(text: str) -> bool:
    """False for strings holding unpaired surrogates (JSON "\\ud800"): they cannot be sent as UTF-8."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _line_error(where: str, row: Any, reason: str) -> RecordError:
    vid = row.get("video_id") if isinstance(row, dict) else None
    usable = isinstance(vid, str) and vid.strip() and _encodable(vid) and len(vid.encode()) <= MAX_ID_BYTES
    return RecordError(video_id=vid.strip() if usable else where, reason=reason)


def _bad_name(name: str) -> Optional[str]:
    """Why OpenSearch would refuse this field name (it answers only 'failed to parse'), or None."""
    if not name or name.startswith(".") or name.endswith(".") or ".." in name:
        return "not a usable field name (empty, or '.' at an end or doubled)"
    if len(name) > MAX_NAME_CHARS:
        return f"field name longer than {MAX_NAME_CHARS} characters"
    if not _encodable(name):
        return "field name is not valid Unicode (an unpaired surrogate escape)"
    return None


def value_problem(value: Any, path: str = "", depth: int = 0) -> Optional[tuple[str, str]]:
    """The first value in a parsed JSON tree that cannot be indexed -> (its dotted path, why), or None."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            return path, f"longer than {MAX_TEXT_CHARS} characters (got {len(value)})"
        if not _encodable(value):
            return path, "not valid Unicode (an unpaired surrogate escape)"
    elif isinstance(value, float) and not math.isfinite(value):
        return path, "must be a finite number (NaN/Infinity cannot be indexed)"
    elif isinstance(value, int) and not -2**63 <= value < 2**63:
        return path, "integer out of the 64-bit range"
    elif isinstance(value, (dict, list)):
        if depth >= MAX_DEPTH:
            return path, f"nested deeper than {MAX_DEPTH} levels"
        for key, item in (value.items() if isinstance(value, dict) else enumerate(value)):
            name = str(key)
            if isinstance(value, dict) and (why := _bad_name(name)):
                shown = (name[:40] + "..." * (len(name) > 40)).encode("utf-8", "backslashreplace").decode()
                return f"{path}.{shown}" if path else shown, why
            found = value_problem(item, f"{path}.{name}" if path else name, depth + 1)
            if found:
                return found
    return None


def parse_line(raw: bytes, where: str) -> Union[CatalogEntry, RecordError]:
    """A catalog line -> its entry, or a RecordError ('bad line: ...' / 'bad field ...') naming file and line."""
    try:
        text = raw.decode("utf-8-sig")  # a BOM may open the file
    except UnicodeDecodeError as exc:
        return RecordError(video_id=where, reason=f"bad line: not valid UTF-8 (byte {raw[exc.start]:#04x} at "
                                                  f"position {exc.start}); save the catalog as UTF-8")
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        return RecordError(video_id=where, reason=f"bad line: invalid JSON ({exc.msg}, character {exc.pos})")
    except RecursionError:
        return RecordError(video_id=where, reason="bad line: invalid JSON (nested too deeply)")
    if not isinstance(row, dict):
        return RecordError(video_id=where, reason=f"bad line: expected a JSON object, got {type(row).__name__}")
    # Names starting with '_' are OpenSearch's own (_id, _source, ...).
    reserved = sorted(k for k in row if k in RESERVED_FIELDS or k.startswith("_"))
    if reserved:
        return _line_error(where, row, f"bad line: field {reserved[0]!r} is reserved for the indexer")
    problem = value_problem(row)
    if problem:
        return _line_error(where, row, f"bad field '{problem[0]}': {problem[1]}")
    try:
        return CatalogEntry.model_validate(row)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        what = "missing field" if err["type"] == "missing" else "bad field"
        return _line_error(where, row, f"{what} '{loc}'" + ("" if err["type"] == "missing" else f": {err['msg']}"))


def _byte_range(path: Path, byte_start: int, byte_stop: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(byte_start)
        return fh.read(byte_stop - byte_start)


def _lines(data: bytes, first_line: int, blank: bool = False) -> Iterator[tuple[int, bytes]]:
    """(physical line number, line) for the non-blank lines of a catalog's bytes, or every line with blank=True."""
    pieces = data.split(b"\n")
    if pieces[-1] == b"":  # what follows the last newline is not a line
        pieces.pop()
    for offset, raw in enumerate(pieces):
        if blank or raw.strip():
            yield first_line + offset, raw


def _resolve(base: Optional[Path], p: str, name: str) -> Union[Path, str]:
    """A catalog's path: relative to the catalog's folder; in a request (base None) absolute, or a video's URL."""
    if is_url(p):
        if name != "path":
            raise ValueError(f"bad field {name!r}: a URL; give a path the workers can read, "
                             "or send the features inline in 'features'")
        return p
    path = Path(os.path.expanduser(p))
    if path.is_absolute():
        return path
    if base is None:
        raise ValueError(f"bad field {name!r}: relative path {p!r} in a request; give an absolute path "
                         "the workers can read" + (", or an http(s) URL" if name == "path" else ""))
    return base / path


def _file_record(entry: CatalogEntry, base: Optional[Path]) -> Parsed:
    """A line of a video catalog: inline features, a features file or a video file."""
    if entry.features is None and entry.path is None and entry.features_path is None:
        return RecordError(video_id=entry.video_id, reason="missing field 'path' (or 'features_path', 'features')")
    try:
        return Record(entry.video_id, entry.metadata(), features=entry.features,
                      path=_resolve(base, entry.path, "path") if entry.path else None,
                      features_path=_resolve(base, entry.features_path, "features_path") if entry.features_path
                      else None)
    except ValueError as exc:
        return RecordError(video_id=entry.video_id, reason=str(exc))


def read_records(source: Source) -> list[Parsed]:
    """The records of one batch, in order; lines that fail validation come back as RecordError."""
    if isinstance(source, FileList):
        return [Record(video_id=Path(p).name, meta={"path": p}, path=Path(p)) for p in source.paths]
    base: Optional[Path]
    if isinstance(source, InlineLines):
        name, data, base, split = source.name, source.data, None, None
    else:
        path = Path(source.root) / "catalog.jsonl" if isinstance(source, DatasetSlice) else Path(source.path)
        name, data = path.name, _byte_range(path, source.byte_start, source.byte_stop)
        base, split = (Path(source.root), source.split) if isinstance(source, DatasetSlice) else (path.parent, None)
    out: list[Parsed] = []
    seen: dict[str, int] = {}  # video_id -> its first line: a later one would silently overwrite it
    aligned = isinstance(source, DatasetSlice)  # line i is feature row i
    for lineno, raw in _lines(data, source.first_line, blank=aligned):
        if not raw.strip():
            out.append(RecordError(video_id=f"{name} line {lineno}", reason=(
                f"blank line: row {source.first_row + lineno - source.first_line} of features.npy has no video; "
                "fill the line in, or remove the line and its row")))
            continue
        entry = parse_line(raw, f"{name} line {lineno}")
        if isinstance(entry, RecordError):
            out.append(entry)
            continue
        if split is not None and entry.split != split:
            continue
        if entry.video_id in seen:
            reason = (f"bad field 'video_id': duplicate of {name} line {seen[entry.video_id]} in this batch "
                      "(that one is kept)")
            out.append(RecordError(video_id=entry.video_id, reason=reason))
            continue
        seen[entry.video_id] = lineno
        if not isinstance(source, DatasetSlice):
            out.append(_file_record(entry, base))
        elif entry.features is not None:
            out.append(RecordError(video_id=entry.video_id, reason="bad field 'features': a dataset's features are "
                                                                   "the rows of features.npy; remove the field"))
        else:
            out.append(Record(entry.video_id, entry.metadata(), row=source.first_row + lineno - source.first_line))
    return out


# ---- planning (submitting side) ----

@dataclass
class Cut:
    """A batch of a JSONL file: its byte range, first physical line, first row, and records in it."""

    byte_start: int
    byte_stop: int
    first_line: int
    first_row: int
    size: int


def cut_jsonl(path: Path, batch_size: int, split: Optional[str] = None,
              aligned: bool = False) -> tuple[list[Cut], int]:
    """Cut a JSONL file into batches of batch_size records; -> (cuts, rows) (see cut_lines)."""
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    with path.open("rb") as fh:
        return cut_lines(fh, batch_size, split, aligned)


def _counted(lines: Iterable[bytes], aligned: bool) -> Iterator[tuple[int, int, bytes]]:
    """(end byte, next line number, line) of each line that takes a row: the non-blank ones and, when aligned,
    the blank ones before the last of them (blank lines after the last record are an editor's, not rows)."""
    pos, lineno = 0, 1
    held: list[tuple[int, int, bytes]] = []
    for raw in lines:
        pos += len(raw)
        lineno += 1
        if raw.strip():
            yield from held
            held.clear()
            yield pos, lineno, raw
        elif aligned:
            held.append((pos, lineno, raw))


def cut_lines(lines: Iterable[bytes], batch_size: int, split: Optional[str] = None,
              aligned: bool = False) -> tuple[list[Cut], int]:
    """Cut JSON lines (each with its b"\\n") into batches of batch_size records; -> (cuts, rows).

    Rows are the non-blank lines; aligned (a dataset, whose line i is feature row i): every line up to the last
    record, a blank one being a record its batch reports as bad. With a split filter only matching lines count
    towards a batch (a bad or blank line counts: it must be reported). One sequential pass; no line is parsed
    unless a filter needs it.
    """
    cuts: list[Cut] = []
    start = stop = 0
    first_line = 1
    first_row = rows = size = 0
    for end, next_line, raw in _counted(lines, aligned):
        rows += 1
        stop = end
        if split is not None and raw.strip():
            entry = parse_line(raw, "")
            if isinstance(entry, CatalogEntry) and entry.split != split:
                continue
        size += 1
        if size == batch_size:
            cuts.append(Cut(start, end, first_line, first_row, size))
            start, first_line, first_row, size = end, next_line, rows, 0
    if size:
        cuts.append(Cut(start, stop, first_line, first_row, size))
    return cuts, rows


def _npy_rows(path: Path) -> tuple[int, tuple[int, ...]]:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise SourceError(f"{path}: cannot read as a plain numpy array ({exc})") from None
    return arr.shape[0], arr.shape


def _blank_count(root: Path) -> tuple[int, int]:
    """(lines, blank lines) of a dataset's catalog, for the message of a count that does not line up."""
    lines, blank = catalog_lines(root / "catalog.jsonl")
    return lines, len(blank)


def plan_dataset(root: str | Path, batch_size: int, split: Optional[str] = None) -> list[tuple[DatasetSlice, int]]:
    """Batches of a dataset folder; checks that catalog lines and feature rows line up."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise SourceError(f"--dataset: {root} is not a directory")
    feats = root / "features.npy"
    if not feats.is_file():
        raise SourceError(f"--dataset: {feats} not found (the dataset layout needs catalog.jsonl + features.npy)")
    cuts, lines = cut_jsonl(root / "catalog.jsonl", batch_size, split, aligned=True)
    n, shape = _npy_rows(feats)
    if n != lines:
        raise SourceError(f"--dataset: {alignment_error('features.npy', n, *_blank_count(root))}")
    if (root / "frames.npy").is_file():
        nf, fshape = _npy_rows(root / "frames.npy")
        if len(fshape) != 3:
            raise SourceError(f"--dataset: frames.npy has shape {fshape}; expected [{lines}, F, D]")
        if nf != lines:
            raise SourceError(f"--dataset: {alignment_error('frames.npy', nf, *_blank_count(root))}")
    return [(DatasetSlice(root=str(root), first_row=c.first_row, first_line=c.first_line,
                          byte_start=c.byte_start, byte_stop=c.byte_stop, split=split), c.size) for c in cuts]


def plan_videos(spec: str, batch_size: int) -> list[tuple[Union[CatalogSlice, FileList], int]]:
    """`--videos`: a .jsonl catalog, one video file, or a glob (quote it) of video files."""
    path = Path(os.path.expanduser(spec))
    if path.suffix == ".jsonl":
        cuts, _ = cut_jsonl(path.resolve(), batch_size)
        return [(CatalogSlice(path=str(path.resolve()), first_line=c.first_line, byte_start=c.byte_start,
                              byte_stop=c.byte_stop), c.size) for c in cuts]
    files = [path] if path.is_file() else [Path(p) for p in sorted(glob.glob(os.path.expanduser(spec), recursive=True))]
    files = [f.resolve() for f in files if f.is_file() and (f == path or f.suffix.lower() in VIDEO_EXTENSIONS)]
    if not files:
        raise SourceError(f"--videos: nothing matches {spec!r} (a video file, a quoted glob, or a .jsonl catalog)")
    names: dict[str, Path] = {}
    for f in files:
        if f.name in names:
            raise SourceError(f"--videos: {names[f.name]} and {f} would both get video_id {f.name!r}; "
                              "use a .jsonl catalog with explicit video_id values")
        names[f.name] = f
    return [(FileList(paths=[str(f) for f in files[i:i + batch_size]]), len(files[i:i + batch_size]))
            for i in range(0, len(files), batch_size)]


def plan_lines(data: bytes, name: str, batch_size: int) -> list[tuple[InlineLines, int]]:
    """Catalog lines sent in a request (POST /videos): each batch carries its own lines."""
    cuts, _ = cut_lines(io.BytesIO(data), batch_size)
    if not cuts:
        raise SourceError(f"{name}: no catalog lines; send one JSON object per line, e.g. "
                          '{"video_id": "v1", "features": [...]} or {"video_id": "v2", "path": "/videos/v2.mp4"}')
    return [(InlineLines(name=name, first_line=c.first_line, data=data[c.byte_start:c.byte_stop]), c.size)
            for c in cuts]
