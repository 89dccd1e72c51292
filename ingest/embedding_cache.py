"""What makes `grdr dataset build` resumable: the frame embeddings of every video done so far, on disk.

OUT/build/ holds
  encoder.json  the image encoder and frame count the rows were made with (another build is refused)
  frames.f32    rows of F x D float32, appended one video at a time
  done.jsonl    one line per row: {"key", "row"}, the key naming the video's bytes (path, size, mtime)

A row counts once its line is written, after its bytes: a build killed at any point loses at most the
video in flight, and bytes past the last counted row are cut when the cache is opened again.
A changed video file has another key, so it is embedded again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

import numpy as np
from pydantic import BaseModel

from grdr_plugin.model.config import ImageEncoderRecord

CACHE_DIR = "build"


class CacheSpec(BaseModel):
    """What every row of a cache shares."""

    image_encoder: ImageEncoderRecord
    frames: int
    dim: int


def video_key(path: Union[Path, str]) -> str:
    """Names a video's content without reading it: a URL as is, a file by path, size and modification time."""
    if isinstance(path, str):
        return path
    st = path.stat()
    return f"{path.resolve()}\t{st.st_size}\t{st.st_mtime_ns}"


class EmbeddingCache:
    def __init__(self, out: Path, spec: CacheSpec):
        self.root = out / CACHE_DIR
        self.spec = spec
        self.row_bytes = spec.frames * spec.dim * 4
        self.root.mkdir(parents=True, exist_ok=True)
        spec_file = self.root / "encoder.json"
        if spec_file.is_file():
            before = CacheSpec.model_validate_json(spec_file.read_text())
            if before != spec:
                raise ValueError(f"--out: {self.root} holds embeddings of another build "
                                 f"({before.image_encoder.name}, {before.frames} frames x {before.dim}); "
                                 f"delete that folder or choose another --out")
        else:
            spec_file.write_text(spec.model_dump_json(indent=2) + "\n")
        self.rows = self._counted_rows(self.root / "done.jsonl")
        self._data = (self.root / "frames.f32").open("ab")
        self._data.truncate(len(self.rows) * self.row_bytes)  # bytes of a row whose line was never written
        self._log = (self.root / "done.jsonl").open("a")

    @staticmethod
    def _counted_rows(log: Path) -> dict[str, int]:
        """key -> row of the complete lines; the log is rewritten without the last line a kill cut short."""
        rows: dict[str, int] = {}
        if not log.is_file():
            return rows
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # only the last line can be cut: the log is rewritten on every open
                break
            rows[entry["key"]] = entry["row"]
        tmp = log.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps({"key": k, "row": r}) + "\n" for k, r in rows.items()))
        tmp.replace(log)
        return rows

    def __enter__(self) -> "EmbeddingCache":
        return self

    def __exit__(self, *exc) -> None:
        self._data.close()
        self._log.close()

    def add(self, key: str, frames: np.ndarray) -> None:
        """Append one video's frame embeddings [F, D]."""
        row = len(self.rows)
        self._data.write(np.ascontiguousarray(frames, dtype=np.float32).tobytes())
        self._data.flush()
        os.fsync(self._data.fileno())  # the bytes are on disk before the line that counts them
        self._log.write(json.dumps({"key": key, "row": row}) + "\n")
        self._log.flush()
        self.rows[key] = row

    def read(self, keys: list[str]) -> np.ndarray:
        """float32 [len(keys), F, D], rows in the order of keys."""
        if not keys:
            return np.zeros((0, self.spec.frames, self.spec.dim), np.float32)
        data = np.memmap(self.root / "frames.f32", dtype=np.float32, mode="r",
                         shape=(len(self.rows), self.spec.frames, self.spec.dim))
        return np.asarray(data[[self.rows[k] for k in keys]])
