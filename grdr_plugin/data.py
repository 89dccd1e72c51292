"""Dataset loading and validation (numpy only, no torch).

A dataset is a folder (layout in DESIGN.md):

    catalog.jsonl   {"video_id", ..., "split": "seen"|"unseen"}
    features.npy    float16/float32 [N, D]   pooled feature, row i <-> catalog line i (blank lines too)
    frames.npy      optional [N, F, D]       frame features
    queries.jsonl   {"query_id", "text", "video_id", "split": "train"|"test"}
    meta.json       optional {"image_encoder": {...}, ... any notes ...}

Every validation error names the file, the line and the field, because a user with a
50k-line catalog cannot bisect "bad input" by hand.  The paper's annotation JSON
(`[{"video": ..., "caption": str | [str]}]`) is read by `load_annotation_json`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from grdr_plugin.model.config import ImageEncoderRecord

VIDEO_SPLITS = ("seen", "unseen")
QUERY_SPLITS = ("train", "test")
META_FILE = "meta.json"


class DatasetError(ValueError):
    """A dataset file is malformed; the message names the file, line and field."""


@dataclass
class Dataset:
    """A loaded dataset. Row i of every video array belongs to `video_ids[i]`."""

    root: Path
    video_ids: list[str]
    video_split: np.ndarray  # bool [N]: True = seen (trainable), False = unseen
    features: np.ndarray  # float32 [N, D], pooled feature
    frames: np.ndarray  # float32 [N, F, D]; F=1 (the pooled feature) when frames.npy is absent
    catalog: list[dict[str, Any]]
    query_ids: list[str]
    query_text: list[str]
    query_video: np.ndarray  # int64 [Q], row index into the video arrays
    query_train: np.ndarray  # bool [Q]: True = train split
    has_frames: bool = True
    image_encoder: Optional[ImageEncoderRecord] = None  # the encoder the features came from, when meta.json says
    # catalog lines left blank: their feature rows hold no video and are left out of the arrays above
    blank_lines: list[int] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def n_videos(self) -> int:
        return len(self.video_ids)

    def train_queries(self) -> np.ndarray:
        """Indices of queries that may be used for training: train split AND seen video.

        The second condition is redundant for well-formed data (unseen videos only have test
        queries) but a malformed file must never leak an unseen video into training.
        """
        return np.flatnonzero(self.query_train & self.video_split[self.query_video])

    def test_queries(self) -> np.ndarray:
        return np.flatnonzero(~self.query_train)

    def video_index(self, video_id: str) -> int:
        return self._index[video_id]


def catalog_lines(path: Path) -> tuple[int, list[int]]:
    """(lines, the blank ones' numbers) of a catalog whose line i is feature row i: a blank line is a line (its
    row holds no video), blank lines after the last record are not (an editor's trailing newlines)."""
    lines, blank = 0, []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if raw.strip():
                lines = lineno
            else:
                blank.append(lineno)
    return lines, [n for n in blank if n < lines]


def alignment_error(array: str, rows: int, lines: int, blank: int) -> str:
    """Why a feature array does not line up with catalog.jsonl, with everything counted."""
    return (f"{array} has {rows} rows but catalog.jsonl has {lines} lines ({blank} of them blank; blank lines after "
            f"the last record do not count): line i of catalog.jsonl is row i of {array}, a blank line included")


def _read_jsonl(path: Path, blank_lines: bool = False) -> list[tuple[int, Optional[dict[str, Any]]]]:
    """(line number, object) per line; blank lines are skipped, or with blank_lines=True returned as None up to
    the last record (catalog_lines)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    rows: list[tuple[int, Optional[dict[str, Any]]]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                if blank_lines:
                    rows.append((lineno, None))
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path.name} line {lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path.name} line {lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append((lineno, row))
    while rows and rows[-1][1] is None:
        rows.pop()
    return rows


def _require_str(fname: str, lineno: int, row: dict[str, Any], key: str, allowed: tuple[str, ...] | None = None) -> str:
    if key not in row:
        raise DatasetError(f"{fname} line {lineno}: missing field '{key}'")
    val = row[key]
    if not isinstance(val, str) or not val.strip():
        raise DatasetError(f"{fname} line {lineno}: field '{key}' must be a non-empty string, got {val!r}")
    if allowed is not None and val not in allowed:
        raise DatasetError(f"{fname} line {lineno}: field '{key}' must be one of {list(allowed)}, got {val!r}")
    return val


def _load_array(path: Path, ndim: int, what: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)  # never unpickle user files
    except ValueError as exc:
        raise DatasetError(f"{path.name}: cannot read as a plain numpy array ({exc})") from None
    if arr.ndim != ndim:
        raise DatasetError(f"{path.name}: expected {what} with {ndim} dimensions, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DatasetError(f"{path.name}: expected a float array, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise DatasetError(f"{path.name}: row {bad} contains NaN or infinity")
    return arr


class DatasetMeta(BaseModel):
    """meta.json: how the dataset was made. Only `image_encoder` is read; other keys are the maker's notes."""

    model_config = ConfigDict(extra="allow")

    image_encoder: Optional[ImageEncoderRecord] = None  # written by `grdr dataset build`, copied by `grdr train`


def load_meta(root: Path) -> DatasetMeta:
    """The folder's meta.json (empty when there is none)."""
    path = root / META_FILE
    if not path.is_file():
        return DatasetMeta()
    try:
        return DatasetMeta.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise DatasetError(f"{META_FILE}: {f'field {where!r}: ' if where else ''}{err['msg']}") from None


def load_dataset(root: str | Path) -> Dataset:
    """Load and validate a dataset folder; raise DatasetError naming the bad line/field."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    catalog: list[dict[str, Any]] = []
    video_ids: list[str] = []
    seen: list[bool] = []
    index: dict[str, int] = {}
    lines = _read_jsonl(root / "catalog.jsonl", blank_lines=True)
    blank = [lineno for lineno, row in lines if row is None]
    for lineno, row in lines:
        if row is None:
            continue
        vid = _require_str("catalog.jsonl", lineno, row, "video_id")
        split = row.get("split", "seen")  # a catalog without splits is all trainable
        if split not in VIDEO_SPLITS:
            raise DatasetError(f"catalog.jsonl line {lineno}: field 'split' must be one of {list(VIDEO_SPLITS)}, "
                               f"got {split!r}")
        if vid in index:
            raise DatasetError(f"catalog.jsonl line {lineno}: duplicate video_id {vid!r} "
                               f"(first on row {index[vid] + 1})")
        index[vid] = len(video_ids)
        video_ids.append(vid)
        seen.append(split == "seen")
        catalog.append(row)
    if not video_ids:
        raise DatasetError("catalog.jsonl: no videos")

    if not (root / "features.npy").is_file():
        raise DatasetError("features.npy: file not found")
    # line i is row i: a blank line's row holds no video and is left out, never shifting the rows after it
    keep = np.array([lineno - 1 for lineno, row in lines if row is not None])
    features = _load_array(root / "features.npy", 2, "[N, D] pooled features")
    if features.shape[0] != len(lines):
        raise DatasetError(alignment_error("features.npy", features.shape[0], len(lines), len(blank)))
    features = features[keep] if blank else features
    has_frames = (root / "frames.npy").is_file()
    if has_frames:
        frames = _load_array(root / "frames.npy", 3, "[N, F, D] frame features")
        if frames.shape[0] != len(lines):
            raise DatasetError(alignment_error("frames.npy", frames.shape[0], len(lines), len(blank)))
        frames = frames[keep] if blank else frames
        if frames.shape[2] != features.shape[1]:
            raise DatasetError(f"frames.npy: feature dim {frames.shape[2]} != features.npy dim {features.shape[1]}")
    else:
        frames = features[:, None, :].copy()

    qids: list[str] = []
    texts: list[str] = []
    qvid: list[int] = []
    qtrain: list[bool] = []
    qpath = root / "queries.jsonl"
    seen_qids: set[str] = set()
    if qpath.is_file():  # a catalog without known queries can still be indexed
        for lineno, row in _read_jsonl(qpath):
            qid = _require_str("queries.jsonl", lineno, row, "query_id")
            text = _require_str("queries.jsonl", lineno, row, "text")
            vid = _require_str("queries.jsonl", lineno, row, "video_id")
            split = _require_str("queries.jsonl", lineno, row, "split", QUERY_SPLITS)
            if vid not in index:
                raise DatasetError(f"queries.jsonl line {lineno}: field 'video_id' {vid!r} is not in catalog.jsonl")
            if qid in seen_qids:
                raise DatasetError(f"queries.jsonl line {lineno}: duplicate query_id {qid!r}")
            if split == "train" and not seen[index[vid]]:
                raise DatasetError(f"queries.jsonl line {lineno}: a 'train' query for unseen video {vid!r}")
            seen_qids.add(qid)
            qids.append(qid)
            texts.append(text.strip())
            qvid.append(index[vid])
            qtrain.append(split == "train")
    return Dataset(
        root=root, video_ids=video_ids, video_split=np.array(seen, dtype=bool), features=features,
        frames=frames, catalog=catalog, query_ids=qids, query_text=texts,
        query_video=np.array(qvid, dtype=np.int64), query_train=np.array(qtrain, dtype=bool),
        has_frames=has_frames, image_encoder=load_meta(root).image_encoder, blank_lines=blank, _index=index,
    )


def load_annotation_json(path: str | Path) -> dict[str, list[str]]:
    """Read the paper-style annotation file `[{"video": id, "caption": str | [str]}, ...]`.

    Returns {video: [captions]} in file order; repeated videos have their captions merged.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path.name}: invalid JSON at line {exc.lineno} ({exc.msg})") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path.name}: expected a JSON list of {{'video', 'caption'}} objects")
    out: dict[str, list[str]] = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise DatasetError(f"{path.name} item {i}: expected an object, got {type(item).__name__}")
        vid = item.get("video")
        if not isinstance(vid, str) or not vid:
            raise DatasetError(f"{path.name} item {i}: field 'video' must be a non-empty string, got {vid!r}")
        cap = item.get("caption")
        caps = cap if isinstance(cap, list) else [cap]
        for c in caps:
            if not isinstance(c, str):
                raise DatasetError(f"{path.name} item {i}: field 'caption' must be a string or a list of strings")
        out.setdefault(vid, []).extend(c.strip() for c in caps if c.strip())
    return out
