"""ONNX export of a trained model folder (MODEL_DIR/onnx/), the contract with the query layer:

text_encoder.onnx   input_ids int64 [B,T], attention_mask int64 [B,T]
                    -> token_states float32 [B,T,H], query_vec float32 [B,D] (unit norm)
decoder_memory.onnx token_states float32 [B,T,H], attention_mask int64 [B,T]
                    -> mem_k, mem_v float32 [B,layers,heads,T+1,dh] (cross-attention keys/values),
                       mem_bias float32 [B,1,1,T+1] (padding mask), text_vec float32 [B,d]
decoder_step.onnx   mem_k, mem_v, mem_bias, text_vec (rows gathered per beam), prefix int64 [B,t]
                    (t = 0..L-1 codes emitted so far; t = 0 is an empty [B,0] array)
                    -> logprobs float32 [B,C]: log-softmax over the codes of level t+1
decoder_step_cached.onnx  mem_k, mem_v, mem_bias, text_vec of ONE query ([1, ...]: all B beams share it;
                    exports before 2026-11-27 also took one row per beam),
                    prefix int64 [B,t], past_k, past_v float32 [B,layers,heads,t,dh] (the self-attention
                    keys/values of positions 0..t-1, returned by the previous step; t = 0: empty)
                    -> logprobs float32 [B,C], present_k, present_v [B,layers,heads,t+1,dh]
video_encoder.onnx  frames float32 [N,F,Dv], pooled float32 [N,Dv]
                    -> codes int64 [N,K,L], video_vec float32 [N,D] (unit norm)

The decoder's memory (projections of the query's token states) is computed once per query;
each beam-search step only gathers it by row, so a step costs the decoder blocks alone.  The
cached step (what the serving path runs) also reuses the earlier positions' self-attention, so a
step computes one position per beam instead of t+1; decoder_step.onnx stays for callers that hold
no cache (any prefix, in any order).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from grdr_plugin.model.artifacts import ONNX_DIR
from grdr_plugin.model.nets import GRDR, masked_mean

OPSET = 17


class TextEncoderGraph(nn.Module):
    def __init__(self, encoder: nn.Module, model: GRDR):
        super().__init__()
        self.encoder, self.model = encoder, model

    def forward(self, input_ids, attention_mask):
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = F.normalize(masked_mean(states, attention_mask), dim=-1)
        return states, self.model.reranker.text(pooled)


class DecoderMemoryGraph(nn.Module):
    def __init__(self, model: GRDR):
        super().__init__()
        self.model = model

    def forward(self, token_states, attention_mask):
        pooled = F.normalize(masked_mean(token_states, attention_mask), dim=-1)
        text_vec = self.model.text_code(pooled)
        kv, bias = self.model.decoder.memory(token_states, attention_mask, text_vec)
        return torch.stack([k for k, _ in kv], 1), torch.stack([v for _, v in kv], 1), bias, text_vec


class DecoderStepGraph(nn.Module):
    def __init__(self, model: GRDR):
        super().__init__()
        self.model = model

    def forward(self, mem_k, mem_v, mem_bias, text_vec, prefix):
        kv = [(mem_k[:, i], mem_v[:, i]) for i in range(mem_k.shape[1])]
        logits = self.model.decoder.decode(kv, mem_bias, text_vec, prefix, self.model.rq.codebooks)
        return logits[:, -1].log_softmax(-1)


class DecoderStepCachedGraph(nn.Module):
    def __init__(self, model: GRDR):
        super().__init__()
        self.model = model

    def forward(self, mem_k, mem_v, mem_bias, text_vec, prefix, past_k, past_v):
        kv = [(mem_k[:, i], mem_v[:, i]) for i in range(mem_k.shape[1])]
        logits, keys, values = self.model.decoder.decode_cached(kv, mem_bias, text_vec, prefix, past_k, past_v,
                                                                self.model.rq.codebooks)
        return logits.log_softmax(-1), keys, values


class VideoEncoderGraph(nn.Module):
    def __init__(self, model: GRDR):
        super().__init__()
        self.model = model

    def forward(self, frames, pooled):
        views = self.model.views(frames, pooled)
        codes, _, _ = self.model.rq.quantize(views)
        return codes.to(torch.int64), self.model.reranker.video_vec(frames, pooled)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=axes,
                      opset_version=OPSET, do_constant_folding=True, dynamo=False)


def export_onnx(model_dir: str | Path, model: GRDR | None = None, encoder: nn.Module | None = None) -> Path:
    """Write MODEL_DIR/onnx/*.onnx from the saved folder (or from given in-memory modules)."""
    from grdr_plugin.model.artifacts import load_model

    model_dir = Path(model_dir)
    if model is None or encoder is None:
        model, encoder, _, _ = load_model(model_dir)
    model, encoder = model.eval().cpu(), encoder.eval().cpu()
    cfg = model.cfg
    out = model_dir / ONNX_DIR
    out.mkdir(parents=True, exist_ok=True)
    b, t = 2, 7
    ids = torch.randint(1000, 2000, (b, t), dtype=torch.int64)
    mask = torch.ones(b, t, dtype=torch.int64)
    mask[1, 5:] = 0
    with torch.no_grad():
        _export(TextEncoderGraph(encoder, model), (ids, mask), out / "text_encoder.onnx",
                ["input_ids", "attention_mask"], ["token_states", "query_vec"],
                {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                 "token_states": {0: "batch", 1: "tokens"}, "query_vec": {0: "batch"}})
        states = torch.randn(b, t, cfg.text_dim)
        _export(DecoderMemoryGraph(model), (states, mask), out / "decoder_memory.onnx",
                ["token_states", "attention_mask"], ["mem_k", "mem_v", "mem_bias", "text_vec"],
                {"token_states": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                 "mem_k": {0: "batch", 3: "memory"}, "mem_v": {0: "batch", 3: "memory"},
                 "mem_bias": {0: "batch", 3: "memory"}, "text_vec": {0: "batch"}})
        mem_k, mem_v, mem_bias, text_vec = DecoderMemoryGraph(model)(states, mask)
        prefix = torch.zeros(b, min(1, cfg.levels - 1), dtype=torch.int64)
        _export(DecoderStepGraph(model), (mem_k, mem_v, mem_bias, text_vec, prefix), out / "decoder_step.onnx",
                ["mem_k", "mem_v", "mem_bias", "text_vec", "prefix"], ["logprobs"],
                {"mem_k": {0: "batch", 3: "memory"}, "mem_v": {0: "batch", 3: "memory"},
                 "mem_bias": {0: "batch", 3: "memory"}, "text_vec": {0: "batch"},
                 "prefix": {0: "batch", 1: "steps"}, "logprobs": {0: "batch"}})
        dec = model.decoder
        past = torch.randn(b, cfg.decoder_layers, dec.heads, prefix.shape[1], cfg.decoder_dim // dec.heads)
        one = (mem_k[:1], mem_v[:1], mem_bias[:1], text_vec[:1])  # traced with one shared memory row: see attend_one
        _export(DecoderStepCachedGraph(model), (*one, prefix, past, past),
                out / "decoder_step_cached.onnx",
                ["mem_k", "mem_v", "mem_bias", "text_vec", "prefix", "past_k", "past_v"],
                ["logprobs", "present_k", "present_v"],
                {"mem_k": {3: "memory"}, "mem_v": {3: "memory"}, "mem_bias": {3: "memory"},
                 "prefix": {0: "batch", 1: "steps"}, "logprobs": {0: "batch"},
                 "past_k": {0: "batch", 3: "steps"}, "past_v": {0: "batch", 3: "steps"},
                 "present_k": {0: "batch", 3: "steps_out"}, "present_v": {0: "batch", 3: "steps_out"}})
        frames = torch.randn(3, cfg.frames, cfg.feature_dim)
        pooled = torch.randn(3, cfg.feature_dim)
        _export(VideoEncoderGraph(model), (frames, pooled), out / "video_encoder.onnx",
                ["frames", "pooled"], ["codes", "video_vec"],
                {"frames": {0: "videos"}, "pooled": {0: "videos"}, "codes": {0: "videos"}, "video_vec": {0: "videos"}})
    return out
