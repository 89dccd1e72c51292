"""Load cases.jsonl and turn a case into what a user would send: catalog lines, a features file, a request body.

One case per manifest line. Big inputs (1 MB strings, 100 KB queries, deep nesting) are written as
a `{BIG}` placeholder plus `big` (length) and `big_char`, so the corpus stays a few kilobytes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

MANIFEST = Path(__file__).with_name("cases.jsonl")
CATALOG_NAME = "catalog.jsonl"  # the catalog file every ingest test writes (errors of unusable lines name it)
GOOD_FEATURES = "good.npy"  # what {FEATURES} stands for: a valid per-video features file beside the catalog


class ArraySpec(BaseModel):
    """A features array: random normal (or `fill`), cast to `dtype`, then single values `put` at positions."""

    model_config = ConfigDict(extra="forbid")

    shape: list[int]
    dtype: str = "float32"
    fill: Optional[float] = None
    put: list[tuple[list[int], Union[float, Literal["nan", "inf", "-inf"]]]] = Field(default_factory=list)


BrokenNpy = Literal["empty", "truncated", "header_only", "npz", "pickled", "text", "missing", "directory"]


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9-]+$")
    kind: str = Field(description="the issue's category, e.g. 'malformed JSONL'")
    stage: Literal["catalog", "features", "video", "api"]
    # catalog: the lines, with {ID} = the case id, {BIG} = big_char * big, {FEATURES} = a good features file
    lines: list[str] = Field(default_factory=list)
    encoding: str = Field("utf-8", description="how the lines (or raw body) are written; others make non-UTF-8")
    big: int = 0
    big_char: str = "x"
    # features: an array, or a broken file
    array: Optional[ArraySpec] = None
    npy: Optional[BrokenNpy] = None
    # video: a file name from make_videos.py
    video: Optional[str] = None
    # api: a JSON body, or a raw one; the expected HTTP status
    body: Any = None
    raw: Optional[str] = None
    content_type: str = "application/json"  # "": sent without a Content-Type header
    status: Optional[int] = None
    # expectations: the error's video_id ("id" = the case id, "line" = the catalog line), the field it names, words
    error_id: Literal["id", "line"] = "id"
    field: str = ""
    expect: list[str] = Field(default_factory=list)


def load_cases() -> list[Case]:
    return [Case.model_validate_json(line) for line in MANIFEST.read_text().splitlines() if line.strip()]


def _expand(text: str, case: Case) -> str:
    return text.replace("{BIG}", case.big_char * case.big)


def catalog_lines(case: Case) -> list[bytes]:
    """The case's catalog lines as bytes (in the case's encoding, so non-UTF-8 stays non-UTF-8)."""
    return [_expand(line, case).replace("{ID}", case.id).replace("{FEATURES}", GOOD_FEATURES)
            .encode(case.encoding) for line in case.lines]


def api_body(case: Case) -> bytes:
    """The request body exactly as sent."""
    if case.raw is not None:
        return _expand(case.raw, case).encode(case.encoding)
    return _expand(json.dumps(case.body), case).encode()


def api_json(case: Case) -> Any:
    """The body as the server's JSON parser sees it (for the model-level checks)."""
    return json.loads(api_body(case))


def write_features(case: Case, path: Path) -> Path:
    """Write the case's features file at `path` (or leave nothing there: 'missing')."""
    if case.array is not None:
        spec = case.array
        if spec.fill is not None:
            base = np.full(spec.shape, spec.fill)
        else:
            base = np.random.default_rng(0).standard_normal(spec.shape)
        arr = np.asarray(base).astype(spec.dtype)
        for pos, value in spec.put:
            arr[tuple(pos)] = float(value)
        np.save(path, arr)
        return path
    good = np.random.default_rng(0).standard_normal((4, 512)).astype(np.float32)
    if case.npy == "empty":
        path.write_bytes(b"")
    elif case.npy in ("truncated", "header_only"):
        np.save(path, good)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2] if case.npy == "truncated" else data[:40])
    elif case.npy == "npz":
        with path.open("wb") as fh:
            np.savez(fh, features=good)
    elif case.npy == "pickled":  # an object array: loading it would unpickle
        np.save(path, np.array([{"features": good[0]}], dtype=object), allow_pickle=True)
    elif case.npy == "text":
        path.write_text(",".join("0.1" for _ in range(512)))
    elif case.npy == "directory":
        path.mkdir()
    return path


def write_good_features(path: Path, dim: int = 512) -> Path:
    np.save(path, np.random.default_rng(1).standard_normal(dim).astype(np.float32))
    return path


def assert_names(case: Case, reason: str) -> None:
    """An ingest error names the case's field (quoted, as ingest quotes fields, or leading) and has its words."""
    if case.field:
        assert f"'{case.field}'" in reason or reason.startswith(case.field), (case.id, case.field, reason[:300])
    for word in case.expect:
        assert word in reason, (case.id, word, reason[:300])


def names(located: str, field: str) -> bool:
    """'filters.tags.0: ...' names filters.tags.0; so does 'hybrid.bool: ...' name hybrid (a union's member)."""
    return located.startswith(f"{field}:") or located.startswith(f"{field}.")
