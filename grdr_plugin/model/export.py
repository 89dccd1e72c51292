"""ONNX export of a trained model folder (MODEL_DIR/onnx/), the contract with the query layer:

text_encoder.onnx   input_ids int64 [B,T], attention_mask int64 [B,T]
                    -> token_states float32 [B,T,H], query_vec float32 [B,D] (unit norm)
text_encoder.int8.onnx  the same graph with int8 weights (onnxruntime dynamic quantization: activations
                    quantised per call); config.json's query_encoder records the variants written
decoder_memory.onnx token_states float32 [B,T,H], attention_mask int64 [B,T]
                    -> fold_k [B,layers,w,heads*(T+1)], fold_bias [B,layers,heads*(T+1)],
                       fold_v [B,layers,heads*(T+1),w] (each block's cross-attention keys/values over
                       the query vector and the text tokens, q and o projections folded in:
                       Attention.fold), text_vec float32 [B,d] (the query in the code space)
decoder_level{n}.onnx  (n = 0..L-1) one step for prefixes of exactly n codes: fold_k, fold_bias,
                    fold_v, text_vec of ONE query ([1, ...]: all B beams share it), prefix int64
                    [B,n], past_k, past_v float32 [B,cached,heads,n,dh] (the self-attention keys/values
                    of positions 0..n-1 of the cached blocks: every block but the first when the graph
                    holds per-prefix tables of all C**n prefixes (CodeDecoder.level_tables), else every
                    block; inputs only where a block is cached and n > 0)
                    -> logprobs float32 [B,C], new_k, new_v [B,cached,heads,1,dh] (position n's, to
                    append to past; the last level has none)
decoder_search.onnx (when per-prefix tables fit, tables_fit) the whole beam search of ONE
                    query: fold_k, fold_bias, fold_v, text_vec [1, ...], beam int64 [], valid{n} bool
                    [C**n, C] for n = 0..L-1 (grdr_plugin.decoding.validity_masks: the valid IDs)
                    -> codes int64 [k, L], scores float32 [k] (summed log-probabilities, best first;
                    k = min(beam, valid IDs reachable), every row a valid ID)
video_encoder.onnx  frames float32 [N,F,Dv], pooled float32 [N,Dv]
                    -> codes int64 [N,K,L], video_vec float32 [N,D] (unit norm)

The decoder's memory (projections of the query's token states) is computed once per query.
Serving decodes with decoder_search.onnx (grdr_plugin/model/search_graph.py: the level steps
chained with the search between them, one onnxruntime call per query); without it (tables or
masks too large) with the level graphs, one call per level and query, numpy searching in between
(grdr_plugin.runtime.ModelRuntime.step_fn).  Both compute one new position per beam: earlier
positions' self-attention comes from the cache, the first block's self-attention and the output
head's prefix terms from per-prefix tables (they see codes only; without tables the level graphs
compute them), and the position count is fixed per graph so attention over it is unrolled.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from grdr_plugin.model.artifacts import ONNX_DIR, read_config, write_config
from grdr_plugin.model.config import QueryEncoderRecord
from grdr_plugin.model.nets import GRDR, masked_mean
from grdr_plugin.model.search_graph import SearchGraph
from grdr_plugin.runtime import DECODER_MEMORY, TEXT_ENCODER_GRAPHS

OPSET = 17  # the first opset with LayerNormalization as one op: fewer nodes per decoder step
# Per-prefix tables of the last level graph (each level graph and decoder_search.onnx embed them): at L=3,
# w=128 C=64 (5 MiB), C=128 (25 MiB) and C=256 (129 MiB, with 16 M-entry masks) fit; any L=4 model of C >= 64
# (322 MiB at C=64) does not.  C=256 decodes twice as fast with them (MODEL.md, "Masks or the trie walk").
MAX_TABLE_BYTES = 160 << 20
# Stateless step graphs that earlier exports wrote and nothing serves: a re-export removes them.
STALE_GRAPHS = ("decoder_step.onnx", "decoder_step_cached.onnx")
# The folded memory's per-query axis (heads x memory tokens) varies with the query's length.
FOLDED_AXES = {"fold_k": {3: "heads_memory"}, "fold_bias": {2: "heads_memory"}, "fold_v": {2: "heads_memory"}}


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
        dec = self.model.decoder
        folded = dec.fold_memory(*dec.memory(token_states, attention_mask, text_vec))
        return (*(torch.stack(part, 1) for part in zip(*folded)), text_vec)  # in DECODER_MEMORY's order


def tables_fit(cfg) -> bool:
    """Per-prefix lookups (the first block's self-attention, the output head's prefix terms) while
    the largest level's tables stay small: C**(L-1) rows of 2w + C + 2 floats.  All levels or none:
    a level with tables caches every block but the first, one without caches every block, so
    mixing them would hand a level the wrong cache."""
    rows = cfg.codebook_size ** (cfg.levels - 1)
    return rows * (2 * cfg.decoder_dim + cfg.codebook_size + 2) * 4 <= MAX_TABLE_BYTES


class DecoderLevelGraph(nn.Module):
    """decoder_level{n}.onnx: one beam-search step for prefixes of exactly n codes."""

    def __init__(self, model: GRDR, n: int, tables: bool):
        super().__init__()
        self.model = model
        self.tables = model.decoder.level_tables(n, model.rq.codebooks) if tables else None

    @property
    def cached_layers(self) -> int:
        return self.model.cfg.decoder_layers - (self.tables is not None)

    def forward(self, fold_k, fold_bias, fold_v, text_vec, prefix, past_k, past_v):
        folded = [(fold_k[:, i], fold_bias[:, i], fold_v[:, i]) for i in range(fold_k.shape[1])]
        return self.model.decoder.decode_level(folded, text_vec, prefix, past_k, past_v,
                                               self.model.rq.codebooks, self.tables)


class VideoEncoderGraph(nn.Module):
    def __init__(self, model: GRDR):
        super().__init__()
        self.model = model

    def forward(self, frames, pooled):
        views = self.model.views(frames, pooled)
        codes, _, _ = self.model.rq.quantize(views)
        return codes.to(torch.int64), self.model.reranker.video_vec(frames, pooled)


def _quantize_text_encoder(out: Path) -> None:
    """text_encoder.int8.onnx from text_encoder.onnx (measurements: docs/MODEL.md, "Query encoders")."""
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    graphs = {variant: out / f"{name}.onnx" for variant, name in TEXT_ENCODER_GRAPHS.items()}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # onnxruntime's recommended step before quantizing (shape inference, constant folding); its symbolic
        # shape inference cannot resolve the exported attention's dynamic shapes, ONNX's own can
        quant_pre_process(graphs["float"], prepared, skip_symbolic_shape=True)
        # QInt8 weights against uint8 activations: the pair the VNNI kernels run (QUInt8 weights ran 2.1 ms, not
        # 1.4); per channel: per-tensor scales lost 0.9 R@10 on msrvtt; MatMulConstBOnly: attention's activation x
        # activation products stay float, only the weight GEMMs (and the embedding tables) turn int8
        quantize_dynamic(prepared, graphs["int8"], weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"MatMulConstBOnly": True})


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=axes,
                      opset_version=OPSET, do_constant_folding=True, dynamo=False)


def _export_levels(model: GRDR, one_memory: tuple, out: Path) -> None:
    """decoder_level{n}.onnx for n = 0..L-1, traced with one memory row that every beam shares
    (see Attention.attend_folded); the last level has no keys/values to hand on."""
    cfg = model.cfg
    heads = model.decoder.heads
    steps, tables = [], tables_fit(cfg)
    for n in range(cfg.levels):
        graph = DecoderLevelGraph(model, n, tables)
        steps.append(graph)
        rows = 1 if n == 0 else 3
        prefix = torch.zeros(rows, n, dtype=torch.int64)
        past = torch.randn(rows, graph.cached_layers, heads, n, cfg.decoder_dim // heads)
        last = n == cfg.levels - 1
        outputs = ["logprobs"] if last else ["logprobs", "new_k", "new_v"]
        axes = {**{name: {0: "batch"} for name in ["prefix", "past_k", "past_v", *outputs]}, **FOLDED_AXES}
        module = _FirstOutput(graph) if last else graph
        _export(module, (*one_memory, prefix, past, past), out / f"decoder_level{n}.onnx",
                [*DECODER_MEMORY, "prefix", "past_k", "past_v"], outputs, axes)
    search = out / "decoder_search.onnx"
    search.unlink(missing_ok=True)
    if tables:  # it reads every level's tables
        size = cfg.codebook_size
        valid = [torch.rand(size ** n, size) < 0.5 for n in range(cfg.levels)]
        names = [f"valid{n}" for n in range(cfg.levels)]
        axes = {**FOLDED_AXES, "codes": {0: "beams"}, "scores": {0: "beams"}}
        _export(SearchGraph(model, [step.tables for step in steps]), (*one_memory, torch.tensor(5), *valid), search,
                [*DECODER_MEMORY, "beam", *names], ["codes", "scores"], axes)


class _FirstOutput(nn.Module):
    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        return self.module(*args)[0]


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
    for name in STALE_GRAPHS:
        (out / name).unlink(missing_ok=True)
    b, t = 2, 7  # tracing example only: every axis that varies is declared dynamic
    ids = torch.randint(1000, 2000, (b, t), dtype=torch.int64)
    mask = torch.ones(b, t, dtype=torch.int64)
    mask[1, 5:] = 0
    with torch.no_grad():
        _export(TextEncoderGraph(encoder, model), (ids, mask), out / "text_encoder.onnx",
                ["input_ids", "attention_mask"], ["token_states", "query_vec"],
                {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                 "token_states": {0: "batch", 1: "tokens"}, "query_vec": {0: "batch"}})
        _quantize_text_encoder(out)
        states = torch.randn(b, t, cfg.text_dim)
        memory_axes = {name: {0: "batch", **axis} for name, axis in FOLDED_AXES.items()}
        _export(DecoderMemoryGraph(model), (states, mask), out / "decoder_memory.onnx",
                ["token_states", "attention_mask"], list(DECODER_MEMORY),
                {"token_states": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                 "text_vec": {0: "batch"}, **memory_axes})
        memory = DecoderMemoryGraph(model)(states, mask)
        _export_levels(model, tuple(part[:1] for part in memory), out)
        frames = torch.randn(3, cfg.frames, cfg.feature_dim)
        pooled = torch.randn(3, cfg.feature_dim)
        _export(VideoEncoderGraph(model), (frames, pooled), out / "video_encoder.onnx",
                ["frames", "pooled"], ["codes", "video_vec"],
                {"frames": {0: "videos"}, "pooled": {0: "videos"}, "codes": {0: "videos"}, "video_vec": {0: "videos"}})
    saved = read_config(model_dir)
    record = QueryEncoderRecord(trained_with=saved.query_encoder.trained_with, variants=list(TEXT_ENCODER_GRAPHS))
    write_config(model_dir, saved.model_copy(update={"query_encoder": record}))
    return out
