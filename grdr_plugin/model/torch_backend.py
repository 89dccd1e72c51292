"""Inference backends with one interface, used by evaluation and the parity test.

* `TorchBackend`  the trained torch modules (+ the HF text encoder).
* `grdr_plugin.runtime.ModelRuntime`  the onnxruntime equivalent (no torch): what the query
                  layer and the ingest workers run.

Both expose: `encode_videos(frames, pooled) -> (codes int64 [N,K,L], video_vec float32 [N,D])`,
`encode_queries(texts) -> Queries`, `step_fn(queries)` for `constrained_beam_search` and
`beam_search(queries, valid_prefixes, beam_size)`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from grdr_plugin.decoding import beam_search_by_steps
from grdr_plugin.runtime import Queries


class TorchBackend:
    def __init__(self, model_dir: str | Path, device: str = "cpu", threads: int | None = None):
        import torch

        from grdr_plugin.model.artifacts import load_model

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model, self.encoder, self.tokenizer, self.cfg = load_model(model_dir, device)
        self.device = torch.device(device)

    @classmethod
    def from_parts(cls, model, encoder, tokenizer, device: str = "cpu") -> "TorchBackend":
        import torch

        self = cls.__new__(cls)
        self.torch, self.model, self.encoder, self.tokenizer = torch, model.eval(), encoder.eval(), tokenizer
        self.cfg = model.cfg
        self.device = torch.device(device)
        return self

    def encode_videos(self, frames: np.ndarray, pooled: np.ndarray,
                      batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """As ModelRuntime.encode_videos: `batch` videos per forward bounds the activations' memory."""
        torch = self.torch
        codes, vecs = [], []
        with torch.inference_mode():
            for i in range(0, len(pooled), batch):
                f = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch], dtype=np.float32)).to(self.device)
                p = torch.from_numpy(np.ascontiguousarray(pooled[i : i + batch], dtype=np.float32)).to(self.device)
                codes.append(self.model.video_codes(f, p).cpu().numpy())
                vecs.append(self.model.reranker.video_vec(f, p).cpu().numpy())
        return np.concatenate(codes).astype(np.int64), np.concatenate(vecs).astype(np.float32)

    def encode_queries(self, texts: list[str]) -> Queries:
        torch = self.torch
        with torch.inference_mode():
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.cfg.text_max_length,
                                 return_tensors="pt").to(self.device)
            states = self.encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            from grdr_plugin.model.nets import masked_mean

            pooled = torch.nn.functional.normalize(masked_mean(states, enc["attention_mask"]), dim=-1)
            text_vec = self.model.text_code(pooled)
            kv, bias = self.model.decoder.memory(states, enc["attention_mask"], text_vec)
            qv = self.model.reranker.text(pooled)
        return Queries(query_vec=qv.cpu().numpy(), state=(kv, bias, text_vec))

    def step_fn(self, q: Queries):
        torch = self.torch
        kv, bias, text_vec = q.state
        books = self.model.rq.codebooks

        def step(rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                r = torch.from_numpy(rows).to(self.device)
                kv_r = [(k[r], v[r]) for k, v in kv]
                prefix_t = torch.from_numpy(prefix).to(self.device)
                logits = self.model.decoder.decode(kv_r, bias[r], text_vec[r], prefix_t, books)
                return logits[:, -1].log_softmax(-1).cpu().numpy()

        return step

    def beam_search(self, q: Queries, valid_prefixes: list[np.ndarray], beam_size: int,
                    masks: Optional[list[np.ndarray]] = None) -> tuple[np.ndarray, np.ndarray]:
        """`constrained_beam_search` over step_fn (`masks` serves ModelRuntime's decoder_search.onnx only)."""
        return beam_search_by_steps(self, q, valid_prefixes, beam_size)
