"""The configurable image encoder of video-file ingest: an ONNX graph run with onnxruntime.

Contract (what `ingest.clip_export` writes): input ``pixel_values`` float32 [B, 3, S, S],
first output [B, D]; sidecar ``<file>.json`` with image_size, mean, std. Frame embeddings
are L2-normalised, as CLIP features (and the dataset's features) are.
"""
from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Optional

import numpy as np

from grdr_plugin.model.artifacts import read_config
from grdr_plugin.model.config import ImageEncoderRecord
from ingest.clip_export import CLIP_MEAN, CLIP_STD
from ingest.config import IngestSettings
from ingest.features import l2_normalise

_DEFAULTS = IngestSettings.model_fields  # the workers' settings own the defaults of threads and batch size


class ImageEncoder:
    def __init__(self, onnx_path: str | Path, threads: int = _DEFAULTS["onnx_threads"].default,
                 batch_size: int = _DEFAULTS["image_batch_size"].default):
        import onnxruntime as ort

        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"--image-encoder: {self.path} not found "
                                    "(export one with `python -m ingest.clip_export`)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        side = self.path.with_suffix(".json")
        prep = json.loads(side.read_text()) if side.is_file() else {}
        static = inp.shape[-1] if isinstance(inp.shape[-1], int) else 224
        self.image_size = int(prep.get("image_size", static))
        self.mean = np.asarray(prep.get("mean", CLIP_MEAN), dtype=np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(prep.get("std", CLIP_STD), dtype=np.float32).reshape(1, 3, 1, 1)
        out_dim = self.session.get_outputs()[0].shape[-1]
        self.dim = int(prep.get("dim", out_dim if isinstance(out_dim, int) else 0))
        self.batch_size = batch_size

    @cached_property
    def identity(self) -> ImageEncoderRecord:
        """What a model folder records of the encoder its training frames came from (hashed once per instance)."""
        digest = hashlib.sha256()
        with self.path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return ImageEncoderRecord(name=self.path.name, sha256=digest.hexdigest(), image_size=self.image_size,
                                  mean=self.mean.ravel().tolist(), std=self.std.ravel().tolist())

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [n, S, S, 3] RGB -> normalised float32 [n, 3, S, S]."""
        x = frames.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        return (x - self.mean) / self.std

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [n, S, S, 3] -> L2-normalised float32 [n, D]."""
        pixels = self.preprocess(frames)
        parts = [self.session.run(None, {self.input_name: pixels[i:i + self.batch_size]})[0]
                 for i in range(0, len(pixels), self.batch_size)]
        return l2_normalise(np.concatenate(parts).astype(np.float32))


def check_trained_with(model_dir: str | Path, encoder_path: Optional[str]) -> None:
    """Refuse, before anything is queued, video files that the workers would embed with another encoder than
    the model's training frames came from (a model trained on features of unknown origin records none)."""
    trained_on = read_config(model_dir).image_encoder
    if trained_on is None or encoder_path is None:  # without an encoder, only feature files can be ingested
        return
    why = trained_on.mismatch(ImageEncoder(encoder_path).identity)
    if why:
        raise ValueError(why)
