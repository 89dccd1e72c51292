"""The trained model at serving time: onnxruntime sessions + the text tokenizer, no torch.

Used by the ingest workers (video side), the query layer (text side + decoder) and in-process
evaluation (`grdr eval --backend onnx`). Reads only JSON, tokenizer files and ONNX graphs from a
model folder (docs/MODEL.md). Same interface as `grdr_plugin.model.runtime.TorchBackend`:
`cfg`, `encode_videos`, `encode_queries`, `step_fn`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

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


@dataclass
class Queries:
    """Encoded queries: the rerank vectors and the backend's decoder inputs."""

    query_vec: np.ndarray  # float32 [Q, D], unit norm
    state: Any  # backend-specific per-query decoder memory, rows aligned with query_vec


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
    """Lazily opened ONNX sessions of one model folder (thread-safe: sessions are, state is read-only)."""

    def __init__(self, model_dir: Path | str, threads: int = 1):
        self.model_dir = Path(model_dir)
        cfg_path = self.model_dir / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"--model: {cfg_path} not found; train a model with `grdr train` first")
        self.cfg = ModelCard(**json.loads(cfg_path.read_text()))
        self.threads = threads

    @property
    def fingerprint(self) -> str:
        return self.cfg.fingerprint

    @cached_property
    def tokenizer(self):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(self.model_dir / "tokenizer" / "tokenizer.json"))
        tok.enable_truncation(self.cfg.text_max_length)
        tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")
        return tok

    def _graph(self, name: str):
        return _session(self.model_dir / "onnx" / f"{name}.onnx", self.threads)

    @cached_property
    def text_session(self):
        return self._graph("text_encoder")

    @cached_property
    def memory_session(self):
        return self._graph("decoder_memory")

    @cached_property
    def step_session(self):
        return self._graph("decoder_step")

    @cached_property
    def video_session(self):
        return self._graph("video_encoder")

    def _encode_text(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        enc = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        states, qvec = self.text_session.run(["token_states", "query_vec"], {"input_ids": ids, "attention_mask": mask})
        return states, mask, qvec

    def query_vectors(self, texts: list[str]) -> np.ndarray:
        """Rerank vectors only (what a dense baseline needs)."""
        return self._encode_text(texts)[2]

    def encode_queries(self, texts: list[str]) -> Queries:
        """Text encoder + decoder memory, once per query."""
        states, mask, qvec = self._encode_text(texts)
        memory = self.memory_session.run(["mem_k", "mem_v", "mem_bias", "text_vec"],
                                         {"token_states": states, "attention_mask": mask})
        return Queries(query_vec=qvec, state=tuple(memory))

    def step_fn(self, q: Queries):
        """A beam-search step function over these queries (see grdr_plugin.decoding)."""
        mem_k, mem_v, mem_bias, text_vec = q.state

        def step(rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
            return self.step_session.run(["logprobs"], {
                "mem_k": mem_k[rows], "mem_v": mem_v[rows], "mem_bias": mem_bias[rows], "text_vec": text_vec[rows],
                "prefix": np.ascontiguousarray(prefix, dtype=np.int64)})[0]
        return step

    def encode_videos(self, frames: np.ndarray, pooled: Optional[np.ndarray] = None,
                      batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """frames [N,F,Dv] (pooled = their normalised mean when not given) -> (codes [N,K,L], video_vec [N,D])."""
        frames = np.asarray(frames, dtype=np.float32)
        if pooled is None:
            mean = frames.mean(axis=1)
            pooled = mean / np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-9, None)
        pooled = np.asarray(pooled, dtype=np.float32)
        codes, vecs = [], []
        for i in range(0, len(frames), batch):
            c, v = self.video_session.run(["codes", "video_vec"], {"frames": np.ascontiguousarray(frames[i:i + batch]),
                                                                   "pooled": np.ascontiguousarray(pooled[i:i + batch])})
            codes.append(c)
            vecs.append(v)
        if not codes:
            return np.zeros((0, self.cfg.views, self.cfg.levels), np.int64), np.zeros((0, self.cfg.rerank_dim), np.float32)
        return np.concatenate(codes).astype(np.int64), np.concatenate(vecs)
