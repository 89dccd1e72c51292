"""Reference decoder: Hugging Face `generate` + `prefix_allowed_tokens_fn` over a nested-dict trie.

This is the baseline that generative-retrieval reference code uses (DSI / GENRE / TIGER style):
the decoder is wrapped as a `transformers` encoder-decoder model, the valid semantic IDs are a
nested dict `{c1: {c2: {c3: {}}}}`, and `generate(num_beams=B, prefix_allowed_tokens_fn=fn)`
walks the trie once per beam and step to mask the vocabulary.  It runs OUR trained
`CodeDecoder` (same weights, same log-probabilities as `TorchBackend.step_fn`), so the only
difference from `grdr_plugin.decoding.constrained_beam_search` is the search machinery.

Used only by benchmarks and tests (needs torch + transformers); the serving path never imports
it.  `python -m bench.reference_decoder --model DIR --dataset DIR --beam 50 --queries 200`
times, on the same queries, model and beam size, in one run:

  hf_generate   HF `generate` + `prefix_allowed_tokens_fn` + nested-dict trie (torch)
  ours_torch    `constrained_beam_search` with `TorchBackend.step_fn`
  ours_onnx     `ModelRuntime.beam_search` (the serving path: decoder_search.onnx, the whole
                search of one query in one onnxruntime graph, the trie as dense validity masks)

Timed region = decoding only.  Text encoding (MiniLM + heads) and the torch decoder memory
(per-layer cross-attention keys/values, `CodeDecoder.memory`, part of
`TorchBackend.encode_queries`) run outside the clock, once per query and stack (the ONNX path
runs decoder_memory.onnx in `ModelRuntime.encode_queries`).  By default (`--encode per-call`)
each decode runs right after its own stack encoded the query, as in serving; `--encode up-front`
encodes everything first, so each decode follows another method's.  Model work per step differs
on purpose, and the report says so: hf_generate and ours_torch recompute every prefix position at
each step (HF with `use_cache=False`: the wrapped decoder does not implement HF's cache classes);
ours_onnx's graph keeps the earlier positions' self-attention keys/values (none with the default
one-block decoder, whose self-attention is a per-prefix table) and shares one query's memory across
its beams, i.e. one new position per beam and step (docs/MODEL.md, "Serving decoder").  Every
valid-ID structure (the nested dict, the prefix tables, the masks) is built once, outside the
clock.  So hf_generate vs ours_torch isolates the search machinery; hf_generate vs ours_onnx is
the serving path against the reference code.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch
from transformers import GenerationConfig, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.utils import ModelOutput

from grdr_plugin.decoding import constrained_beam_search, prefix_tables, validity_masks
from grdr_plugin.model.nets import MASKED, CodeDecoder
from grdr_plugin.model.torch_backend import TorchBackend
from grdr_plugin.runtime import ModelRuntime, Queries

# HF beam search starts every beam but the first at -1e9 (so step 0 does not pick the same token
# B times); when fewer valid continuations than beams exist, those beams survive with a score
# near -1e9 instead of being dropped.  Anything below this is padding, like our -inf beams.
HF_DEAD_SCORE = -1e8

Trie = dict[int, "Trie"]
PrefixFn = Callable[[int, torch.Tensor], list[int]]


# --------------------------------------------------------------------------------------------
# The trie and its prefix_allowed_tokens_fn (as the reference code writes them)
# --------------------------------------------------------------------------------------------

def build_trie(ids: np.ndarray) -> Trie:
    """Nested dict of the valid IDs `ids` int [M, L]: `{c1: {c2: {c3: {}}}}`."""
    root: Trie = {}
    for row in np.asarray(ids, dtype=np.int64).reshape(-1, np.asarray(ids).shape[-1]).tolist():
        node = root
        for code in row:
            node = node.setdefault(code, {})
    return root


def trie_prefix_fn(trie: Trie, dead_end_token: int) -> PrefixFn:
    """`prefix_allowed_tokens_fn(batch_id, sent)`: walk the trie along `sent` (decoder ids, BOS
    first) and allow its children.  HF raises on an empty list, so a prefix off the trie (cannot
    happen from a valid start, kept for safety) may only continue with `dead_end_token`."""

    def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
        node: Trie | None = trie
        for tok in sent.tolist()[1:]:
            node = node.get(tok)
            if node is None:
                return [dead_end_token]
        return list(node.keys()) or [dead_end_token]

    return allowed


# --------------------------------------------------------------------------------------------
# The transformers wrapper around our trained CodeDecoder
# --------------------------------------------------------------------------------------------

class CodeDecoderConfig(PretrainedConfig):
    """Vocabulary = the C codes (token c at position j is code c of level j, as in our decoder,
    whose classifier is the level-j codebook), then a decoder-start token (C) and an EOS/pad token
    (C+1).  Neither special token is ever scored above -inf, so the log-softmax over C+2 tokens
    equals ours over C."""

    model_type = "grdr_code_decoder"

    def __init__(self, codebook_size: int = 64, levels: int = 3, **kwargs: Any):
        self.codebook_size, self.levels = codebook_size, levels
        kwargs.setdefault("vocab_size", codebook_size + 2)
        kwargs.setdefault("is_encoder_decoder", True)
        kwargs.setdefault("decoder_start_token_id", codebook_size)
        kwargs.setdefault("bos_token_id", codebook_size)
        kwargs.setdefault("eos_token_id", codebook_size + 1)
        kwargs.setdefault("pad_token_id", codebook_size + 1)
        super().__init__(**kwargs)


@dataclass
class CodeMemory(ModelOutput):
    """`encoder_outputs` for generate.  Every field has the batch first, so generate's
    `repeat_interleave(num_beams)` expands the per-query memory to one copy per beam.

    last_hidden_state  [B, T+1, layers*2*heads*dh]: every layer's cross-attention keys and values
                       per memory token (query vector + text tokens), i.e. `CodeDecoder.memory`
                       packed so that dim 1 is the memory length like a real encoder output.
    memory_bias        [B, 1, 1, T+1] additive padding mask of the memory.
    text_vec           [B, d] the query's code-space vector (the decoder's residual prior).
    """

    last_hidden_state: torch.Tensor | None = None
    memory_bias: torch.Tensor | None = None
    text_vec: torch.Tensor | None = None


def pack_memory(state: tuple) -> CodeMemory:
    """`TorchBackend.encode_queries(...).state` (kv, bias, text_vec) -> CodeMemory."""
    kv, bias, text_vec = state
    # each k / v: [B, heads, T+1, dh] -> [B, T+1, heads, dh]; stack to [B, T+1, layers, 2, heads, dh]
    parts = torch.stack([torch.stack([k.transpose(1, 2), v.transpose(1, 2)], dim=2) for k, v in kv], dim=2)
    b, t = parts.shape[:2]
    return CodeMemory(last_hidden_state=parts.reshape(b, t, -1).contiguous(), memory_bias=bias, text_vec=text_vec)


def concat_memories(mems: list[CodeMemory]) -> CodeMemory:
    """Stack per-query memories of different lengths into one batch (padding masked by the bias)."""
    t = max(m.last_hidden_state.shape[1] for m in mems)
    hs, biases = [], []
    for m in mems:
        pad = t - m.last_hidden_state.shape[1]
        hs.append(torch.nn.functional.pad(m.last_hidden_state, (0, 0, 0, pad)))
        biases.append(torch.nn.functional.pad(m.memory_bias, (0, pad), value=MASKED))
    return CodeMemory(last_hidden_state=torch.cat(hs), memory_bias=torch.cat(biases),
                      text_vec=torch.cat([m.text_vec for m in mems]))


class HFCodeDecoder(PreTrainedModel, GenerationMixin):
    """Our trained `CodeDecoder` behind the `transformers` generate API (no KV cache: like our step
    function it re-reads the whole prefix, at most L tokens, at every step)."""

    config_class = CodeDecoderConfig
    main_input_name = "input_ids"
    _supports_cache_class = False

    def __init__(self, config: CodeDecoderConfig, decoder: CodeDecoder, codebooks: torch.Tensor):
        super().__init__(config)
        self.decoder = decoder.eval()
        self.register_buffer("codebooks", codebooks.detach().clone(), persistent=False)
        self.layers, self.heads = len(decoder.blocks), decoder.heads
        # post_init only gathers static properties in transformers >= 5; it does not touch weights.
        self.post_init()
        self.generation_config = GenerationConfig(
            decoder_start_token_id=config.decoder_start_token_id, bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id)

    @classmethod
    def from_backend(cls, backend: TorchBackend) -> "HFCodeDecoder":
        cfg = backend.cfg
        config = CodeDecoderConfig(codebook_size=cfg.codebook_size, levels=cfg.levels)
        return cls(config, backend.model.decoder, backend.model.rq.codebooks).eval()

    def _init_weights(self, module: torch.nn.Module) -> None:
        pass  # the wrapped decoder is trained: never re-initialise it

    def get_encoder(self) -> None:
        return None  # memory is always passed in as `encoder_outputs`

    def _unpack(self, packed: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        b, t, _ = packed.shape
        x = packed.view(b, t, self.layers, 2, self.heads, -1).permute(2, 3, 0, 4, 1, 5)  # [layers, 2, B, h, T+1, dh]
        return [(x[i, 0], x[i, 1]) for i in range(self.layers)]

    def forward(self, decoder_input_ids: torch.Tensor, encoder_outputs: CodeMemory, return_dict: bool = True,
                **kwargs: Any) -> Seq2SeqLMOutput:
        """decoder_input_ids [B, 1+n] = start token + n codes -> logits [B, 1+n, C+2]."""
        prefix = decoder_input_ids[:, 1:]
        logits = self.decoder.decode(self._unpack(encoder_outputs.last_hidden_state), encoder_outputs.memory_bias,
                                     encoder_outputs.text_vec, prefix, self.codebooks)  # [B, n+1, C]
        special = logits.new_full((*logits.shape[:2], 2), float("-inf"))
        return Seq2SeqLMOutput(logits=torch.cat([logits, special], dim=-1))


def hf_beam_search(model: HFCodeDecoder, memory: CodeMemory, prefix_fn: PrefixFn, beam_size: int,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """HF generate with the trie; returns (codes int64 [Q, beam, L], scores float32 [Q, beam]) in
    `constrained_beam_search`'s format: summed log-probabilities, best first, padding beams as
    codes -1 / score -inf.  length_penalty=0 keeps HF's sequence score a plain sum."""
    levels, size = model.config.levels, model.config.codebook_size
    q = memory.text_vec.shape[0]
    # the real encoder mask (generate warns without one); the forward reads the bias instead
    mask = (memory.memory_bias[:, 0, 0, :] == 0).long()
    # num_beams=1 is greedy search in HF (no beam scores, no length penalty)
    beam_kw: dict[str, Any] = ({"length_penalty": 0.0, "early_stopping": False} if beam_size > 1
                               else {"output_logits": True})
    with torch.inference_mode():
        # generate expands `encoder_outputs` per beam IN PLACE: hand it a shallow copy
        out = model.generate(encoder_outputs=CodeMemory(**memory), attention_mask=mask, num_beams=beam_size,
                             num_return_sequences=beam_size, max_new_tokens=levels, prefix_allowed_tokens_fn=prefix_fn,
                             do_sample=False, use_cache=False, return_dict_in_generate=True, output_scores=True,
                             **beam_kw)
    seqs = out.sequences[:, 1 : 1 + levels]
    if beam_size > 1:
        scores = out.sequences_scores.reshape(q, beam_size).numpy().astype(np.float32)
    else:  # sum the model's log-probabilities of the greedy tokens
        lp = torch.stack([lg.log_softmax(-1) for lg in out.logits], dim=1)  # [Q, n, V]
        scores = lp.gather(-1, seqs[:, :, None]).sum((1, 2)).reshape(q, 1).numpy().astype(np.float32)
    seqs = seqs.reshape(q, beam_size, -1).numpy().astype(np.int64)
    dead = (scores <= HF_DEAD_SCORE) | (seqs.shape[-1] < levels) | (seqs >= size).any(-1)
    codes = np.full((q, beam_size, levels), -1, dtype=np.int64)
    codes[..., : seqs.shape[-1]] = seqs
    codes[dead] = -1
    scores[dead] = -np.inf
    return codes, scores


# --------------------------------------------------------------------------------------------
# Side-by-side measurement
# --------------------------------------------------------------------------------------------

METHODS = ("hf_generate", "ours_torch", "ours_onnx")


def _latency(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3)}


def _id_sets(codes: np.ndarray, scores: np.ndarray) -> list[list[tuple[int, ...]]]:
    """Per query, the finite-score IDs in beam order."""
    return [[tuple(int(c) for c in codes[i, b]) for b in range(codes.shape[1]) if np.isfinite(scores[i, b])]
            for i in range(codes.shape[0])]


def agreement(a: list[list[tuple[int, ...]]], b: list[list[tuple[int, ...]]]) -> dict[str, float]:
    """overlap: |A ∩ B| / max(|A|, |B|) averaged over queries; top1: same best ID; same_order: the
    two ranked lists are identical."""
    ov = [len(set(x) & set(y)) / max(len(x), len(y), 1) for x, y in zip(a, b)]
    top1 = [bool(x) and bool(y) and x[0] == y[0] for x, y in zip(a, b)]
    same = [x == y for x, y in zip(a, b)]
    return {"overlap": round(float(np.mean(ov)), 4), "top1": round(float(np.mean(top1)), 4),
            "same_order": round(float(np.mean(same)), 4)}


@dataclass
class Bench:
    """Everything built once, outside the clock: backends, valid-ID structures, the query texts."""

    torch_be: TorchBackend
    onnx_be: ModelRuntime
    hf: HFCodeDecoder
    trie_fn: PrefixFn
    tables: list[np.ndarray]
    masks: list[np.ndarray]
    texts: list[str]
    n_ids: int

    @property
    def levels(self) -> int:
        return self.torch_be.cfg.levels

    @property
    def size(self) -> int:
        return self.torch_be.cfg.codebook_size


def setup(model_dir: str | Path, dataset_dir: str | Path, n_queries: int, threads: int = 1, seed: int = 0) -> Bench:
    from grdr_plugin.data import load_dataset

    torch.set_num_threads(threads)
    torch_be = TorchBackend(model_dir)
    onnx_be = ModelRuntime(model_dir, threads=threads, encoder="float")  # torch's encoder: the IDs compare alike
    ds = load_dataset(dataset_dir)
    codes, _ = onnx_be.encode_videos(ds.frames, ds.features)  # the gallery's IDs: what the index holds
    ids = np.unique(codes.reshape(-1, codes.shape[-1]), axis=0)
    rows = ds.test_queries()
    rows = np.sort(np.random.default_rng(seed).choice(rows, size=min(n_queries, len(rows)), replace=False))
    cfg = torch_be.cfg
    tables = prefix_tables(ids, cfg.codebook_size)
    return Bench(torch_be=torch_be, onnx_be=onnx_be, hf=HFCodeDecoder.from_backend(torch_be),
                 trie_fn=trie_prefix_fn(build_trie(ids), cfg.codebook_size + 1),
                 tables=tables, masks=validity_masks(tables, cfg.codebook_size),
                 texts=[ds.query_text[i] for i in rows], n_ids=len(ids))


ENCODE_ORDERS = ("per-call", "up-front")


def _inputs(bench: Bench, texts: list[str], methods: tuple[str, ...] = METHODS) -> tuple[Any, Any, Any]:
    """(torch queries, their HF memory, onnxruntime queries) of `texts`, each only where one of
    `methods` reads it (ours_onnx reads the onnxruntime stack's, the others torch's)."""
    tq = bench.torch_be.encode_queries(texts) if set(methods) - {"ours_onnx"} else None
    oq = bench.onnx_be.encode_queries(texts) if "ours_onnx" in methods else None
    return tq, (pack_memory(tq.state) if tq is not None else None), oq


def _run_one(bench: Bench, method: str, tq: Queries, mem: CodeMemory, oq: Queries, beam: int,
             ) -> tuple[float, np.ndarray, np.ndarray]:
    t0 = time.perf_counter()
    if method == "hf_generate":
        codes, scores = hf_beam_search(bench.hf, mem, bench.trie_fn, beam)
    elif method == "ours_torch":
        codes, scores = bench.torch_be.beam_search(tq, bench.tables, beam)
    else:
        codes, scores = bench.onnx_be.beam_search(oq, bench.tables, beam, masks=bench.masks)
    return 1000 * (time.perf_counter() - t0), codes, scores


def measure(bench: Bench, beam: int, batch: int = 1, warmup: int = 5, encode: str = "per-call") -> dict[str, Any]:
    """Decode every query with the three methods, interleaved (so background load hits all three
    alike; the order rotates per query), `batch` queries per call.  Per-query ms = call ms / batch.
    Encoding is never timed.  encode="per-call": each decode right after its own stack encodes the
    same queries (torch for hf_generate and ours_torch, onnxruntime for ours_onnx), the order a
    serving process runs them in, so a decode meets the caches its own encoder leaves.
    "up-front": every query encoded before the first decode, so each decode follows another
    method's (for ours_onnx, a torch run: colder caches than in serving)."""
    if encode not in ENCODE_ORDERS:
        raise ValueError(f"encode: {encode!r} is not one of {ENCODE_ORDERS}")
    groups = [bench.texts[i : i + batch] for i in range(0, len(bench.texts), batch)]
    encoded = [_inputs(bench, texts) for texts in groups] if encode == "up-front" else None

    def inputs(g: int, method: str) -> tuple[Any, Any, Any]:
        return encoded[g] if encoded is not None else _inputs(bench, groups[g], (method,))

    for g in range(min(warmup, len(groups))):
        for m in METHODS:
            _run_one(bench, m, *inputs(g, m), beam)
    ms: dict[str, list[float]] = {m: [] for m in METHODS}
    ids: dict[str, list] = {m: [] for m in METHODS}
    for g, texts in enumerate(groups):
        for j in range(len(METHODS)):
            m = METHODS[(g + j) % len(METHODS)]
            t, codes, scores = _run_one(bench, m, *inputs(g, m), beam)
            ms[m].append(t / len(texts))
            ids[m].extend(_id_sets(codes, scores))
    lat = {m: _latency(ms[m]) for m in METHODS}
    speedup = {f"{m}_vs_hf": {k: round(lat["hf_generate"][k] / lat[m][k], 2) for k in ("p50_ms", "p99_ms", "mean_ms")}
               for m in ("ours_torch", "ours_onnx")}
    return {"beam": beam, "batch": batch, "encode": encode, "queries": len(bench.texts), "latency_per_query": lat,
            "speedup": speedup,
            "agreement": {"hf_vs_ours_torch": agreement(ids["hf_generate"], ids["ours_torch"]),
                          "ours_onnx_vs_ours_torch": agreement(ids["ours_onnx"], ids["ours_torch"]),
                          "hf_vs_ours_onnx": agreement(ids["hf_generate"], ids["ours_onnx"])},
            "mean_valid_ids_returned": {m: round(float(np.mean([len(x) for x in ids[m]])), 2) for m in METHODS}}


def breakdown(bench: Bench, beam: int, n: int = 50) -> dict[str, dict[str, float]]:
    """Where the decode time goes (batch 1, first `n` queries; instrumented, so a separate pass from
    the headline timings): model forward vs the rest (HF: trie walks + generate's machinery; ours:
    the numpy search; ours_onnx: its one graph, network and search, vs the Python around it)."""
    acc = {"model": 0.0, "prefix_fn": 0.0}

    def timed(fn: Callable, key: str) -> Callable:
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[key] += time.perf_counter() - t0
        return wrapper

    out: dict[str, dict[str, float]] = {}
    dec = bench.hf.decoder
    for method in METHODS:
        acc["model"] = acc["prefix_fn"] = 0.0
        total = 0.0
        for text in bench.texts[:n]:
            tq, mem, oq = _inputs(bench, [text], (method,))
            t0 = time.perf_counter()
            if method == "hf_generate":
                dec.decode = timed(CodeDecoder.decode.__get__(dec), "model")  # instance attribute shadows the method
                try:
                    hf_beam_search(bench.hf, mem, timed(bench.trie_fn, "prefix_fn"), beam)
                finally:
                    del dec.decode
            elif method == "ours_torch" or bench.onnx_be.search_session is None:
                be, q = (bench.torch_be, tq) if method == "ours_torch" else (bench.onnx_be, oq)
                constrained_beam_search(timed(be.step_fn(q), "model"), 1, bench.levels, bench.size, bench.tables, beam)
            else:  # one graph holds the network and the search: "model" is its run, the rest Python around it
                runtime, session = bench.onnx_be, bench.onnx_be.search_session
                runtime.search_session = SimpleNamespace(run=timed(session.run, "model"))  # shadows the cached session
                try:
                    runtime.beam_search(oq, bench.tables, beam, masks=bench.masks)
                finally:
                    runtime.search_session = session
            total += time.perf_counter() - t0
        k = 1000 / min(n, len(bench.texts))
        row = {"total_ms": total * k, "model_forward_ms": acc["model"] * k}
        if method == "hf_generate":
            row["prefix_fn_ms"] = acc["prefix_fn"] * k
        row["search_overhead_ms"] = row["total_ms"] - row["model_forward_ms"]
        out[method] = {key: round(v, 3) for key, v in row.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="HF generate + prefix_allowed_tokens_fn vs our constrained beam search.")
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--dataset", required=True, type=Path)
    ap.add_argument("--beam", type=int, nargs="+", default=[50], help="beam sizes to time, each its own run")
    ap.add_argument("--queries", type=int, default=200,
                    help="test queries sampled (200: a stable p99 in a run of minutes)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1], help="queries per decode call (1 = serving)")
    ap.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    ap.add_argument("--warmup", type=int, default=5, help="untimed decodes first (sessions and caches warm)")
    ap.add_argument("--encode", choices=ENCODE_ORDERS, default="per-call",
                    help="per-call: each decode right after its own stack encodes the query (serving order); "
                         "up-front: all queries encoded first, so each decode follows another method's")
    ap.add_argument("--breakdown", action="store_true", help="also time model forward vs search machinery")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    bench = setup(args.model, args.dataset, args.queries, threads=args.threads)
    import onnxruntime
    import transformers

    report: dict[str, Any] = {
        "model": str(args.model), "dataset": str(args.dataset), "threads": args.threads, "valid_ids": bench.n_ids,
        "codebook_size": bench.size, "levels": bench.levels,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "timed": f"decoding only; text encoding and the per-query decoder memory excluded (encoded {args.encode})",
        "runs": [measure(bench, b, batch=bs, warmup=args.warmup, encode=args.encode)
                 for b in args.beam for bs in args.batch]}
    if args.breakdown:
        report["breakdown_batch1"] = {str(b): breakdown(bench, b) for b in args.beam}
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    print(f"{report['valid_ids']} valid IDs, C={bench.size}, L={bench.levels}, {len(bench.texts)} queries, "
          f"{args.threads} thread(s); {report['timed']}")
    for r in report["runs"]:
        lat, sp, ag = r["latency_per_query"], r["speedup"], r["agreement"]
        print(f"\nbeam {r['beam']}, batch {r['batch']} (ms per query, p50 / p99 / mean)")
        for m in METHODS:
            print(f"  {m:12s} {lat[m]['p50_ms']:9.3f} {lat[m]['p99_ms']:9.3f} {lat[m]['mean_ms']:9.3f}")
        for k, v in sp.items():
            print(f"  speed-up {k}: p50 x{v['p50_ms']}, p99 x{v['p99_ms']}, mean x{v['mean_ms']}")
        for k, v in ag.items():
            print(f"  agreement {k}: overlap {v['overlap']}, top1 {v['top1']}, same order {v['same_order']}")
        print(f"  valid IDs returned per query: {r['mean_valid_ids_returned']}")
    for b, rows in report.get("breakdown_batch1", {}).items():
        print(f"\nbreakdown, beam {b}, batch 1 (mean ms per query, instrumented pass)")
        for m, row in rows.items():
            print(f"  {m:12s} " + ", ".join(f"{k} {v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
