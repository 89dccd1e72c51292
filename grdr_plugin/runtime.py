"""The trained model at serving time: onnxruntime sessions + the text tokenizer, no torch.

Used by the ingest workers (video side) and the query layer (text side + decoder step).
Reads only JSON, tokenizer files and ONNX graphs from a model folder (see docs/MODEL.md).
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class ModelCard(BaseModel):
    """The part of config.json the serving path relies on."""

    model_config = ConfigDict(extra="allow")

    views: int = Field(ge=1)
    levels: int = Field(ge=1)
    codebook_size: int = Field(ge=2)
    feature_dim: int = Field(ge=1)
    frames: int = Field(ge=1)
    rerank_dim: int = Field(ge=1)
    text_max_length: int = Field(64, ge=4)
    fingerprint: str


def _session(path: Path, threads: int):
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"--model: {path} is missing; export the model (grdr train writes onnx/)")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class ModelRuntime:
    """Lazily opened ONNX sessions of one model folder."""

    def __init__(self, model_dir: Path | str, threads: int = 1):
        self.model_dir = Path(model_dir)
        cfg_path = self.model_dir / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"--model: {cfg_path} not found; train a model with `grdr train` first")
        self.card = ModelCard(**json.loads(cfg_path.read_text()))
        self.threads = threads

    @property
    def fingerprint(self) -> str:
        return self.card.fingerprint

    @cached_property
    def tokenizer(self):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(self.model_dir / "tokenizer" / "tokenizer.json"))
        tok.enable_truncation(self.card.text_max_length)
        tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")
        return tok

    @cached_property
    def text_session(self):
        return _session(self.model_dir / "onnx" / "text_encoder.onnx", self.threads)

    @cached_property
    def decoder_session(self):
        return _session(self.model_dir / "onnx" / "decoder_step.onnx", self.threads)

    @cached_property
    def video_session(self):
        return _session(self.model_dir / "onnx" / "video_encoder.onnx", self.threads)

    def encode_text(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (token_states [B,T,H], attention_mask [B,T], query_vec [B,D])."""
        enc = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        states, qvec = self.text_session.run(["token_states", "query_vec"],
                                             {"input_ids": ids, "attention_mask": mask})
        return states, mask, qvec

    def decoder_logprobs(self, token_states: np.ndarray, mask: np.ndarray, prefix: np.ndarray) -> np.ndarray:
        """log-softmax over the next level's codes, [rows, C]."""
        return self.decoder_session.run(["logprobs"], {"token_states": token_states, "attention_mask": mask,
                                                       "prefix": prefix.astype(np.int64)})[0]

    def step_fn(self, token_states: np.ndarray, mask: np.ndarray):
        """A beam-search step function over these encoded queries (see grdr_plugin.decoding)."""
        def step(query_index: np.ndarray, prefix: np.ndarray) -> np.ndarray:
            return self.decoder_logprobs(token_states[query_index], mask[query_index], prefix)
        return step

    def encode_videos(self, frames: np.ndarray, pooled: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """frames [N,F,Dv] (pooled = their normalised mean when not given) -> (codes [N,K,L], video_vec [N,D])."""
        frames = np.asarray(frames, dtype=np.float32)
        if pooled is None:
            mean = frames.mean(axis=1)
            pooled = mean / np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-9, None)
        codes, vecs = self.video_session.run(["codes", "video_vec"],
                                             {"frames": frames, "pooled": np.asarray(pooled, dtype=np.float32)})
        return codes, vecs
