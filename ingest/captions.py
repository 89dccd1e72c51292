"""The captions of `grdr dataset build`: which texts describe which video.

Two formats: JSON lines ``{"video_id": ..., "text": ...}`` (one caption a line, a video on as many lines
as it has captions), or the paper's annotation file ``[{"video": ..., "caption": str | [str]}]`` (.json,
read by grdr_plugin.data). A bad JSON line is reported with its line number and skipped; the others count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from grdr_plugin.data import DatasetError, load_annotation_json
from ingest.schemas import RecordError


class CaptionLine(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key must not pass as a caption-less line

    video_id: str
    text: str

    @field_validator("video_id", "text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a non-empty string")
        return v.strip()


@dataclass
class Captions:
    by_video: dict[str, list[str]]  # in file order
    errors: list[RecordError] = field(default_factory=list)  # bad lines, each named by file and line


def _problem(err: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "json_invalid":
        return f"bad line: {err['ctx']['error']}"
    if err["type"] == "model_type":
        return 'bad line: expected {"video_id": ..., "text": ...}'
    if err["type"] in ("missing", "extra_forbidden"):
        return f"{'missing' if err['type'] == 'missing' else 'unknown'} field '{loc}'"
    return f"bad field '{loc}': {err['msg'].removeprefix('Value error, ')}"


def _parse(raw: bytes, where: str) -> CaptionLine | RecordError:
    try:
        return CaptionLine.model_validate_json(raw)
    except ValidationError as exc:  # every problem of the line: a misspelt key shows as missing + unknown
        return RecordError(video_id=where, reason="; ".join(_problem(e) for e in exc.errors()))


def _read_jsonl(path: Path) -> Captions:
    out = Captions({})
    with path.open("rb") as fh:  # bytes: a bad byte is one line's error (pydantic names it), not the file's
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            line = _parse(raw, f"{path.name} line {lineno}")
            if isinstance(line, RecordError):
                out.errors.append(line)
            else:
                out.by_video.setdefault(line.video_id, []).append(line.text)
    return out


def read_captions(path: Path) -> Captions:
    """A .jsonl or .json captions file; refuses a missing or empty one (a build without captions trains nothing)."""
    if not path.is_file():
        raise FileNotFoundError(f"--captions: {path} not found")
    if path.suffix == ".jsonl":
        out = _read_jsonl(path)
    elif path.suffix == ".json":
        try:
            out = Captions(load_annotation_json(path))
        except DatasetError as exc:
            raise ValueError(f"--captions: {exc}") from None
    else:
        raise ValueError(f"--captions: {path.name}: expected .jsonl lines {{\"video_id\", \"text\"}} or a .json "
                         "annotation list [{\"video\", \"caption\"}]")
    if not out.by_video:
        first = f" (bad lines, first: {out.errors[0].video_id}: {out.errors[0].reason})" if out.errors else ""
        raise ValueError(f"--captions: {path.name} holds no caption{first}")
    return out
