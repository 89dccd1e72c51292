"""The trained model at serving time: onnxruntime sessions + the text tokenizer, no torch.

Used by the ingest workers (video side), the query layer (text side + decoder) and in-process
evaluation (`grdr eval --backend onnx`). Reads only JSON, tokenizer files and ONNX graphs from a
model folder (docs/MODEL.md). Same interface as `grdr_plugin.model.torch_backend.TorchBackend`:
`cfg`, `encode_videos`, `encode_queries`, `step_fn`, `beam_search`.

The query encoder runs one of the variants config.json records (`encoder`: int8 by default, or float,
the one training ran; docs/MODEL.md, "Query encoders").

Decoding has two paths (graphs described in `grdr_plugin.model.export`):
* decoder_search.onnx: the whole trie-constrained beam search of one query in one call, the trie
  as dense validity masks; written when the per-prefix tables fit (then the C**L masks do too);
* decoder_level{n}.onnx + the numpy `constrained_beam_search`: one call per level and query, the
  trie as prefix tables; for folders without the search graph (ID spaces too large for masks).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import numpy as np

from grdr_plugin.decoding import beam_search_by_steps, recall_levels, validity_masks
from grdr_plugin.model.artifacts import CONFIG, ONNX_DIR, read_config
from grdr_plugin.model.config import DEFAULT_QUERY_ENCODER, QueryEncoder
from grdr_plugin.model.ids import encode_prefix
from grdr_plugin.model.safe_files import refuse_pickles

# decoder_memory.onnx's outputs, in order: one query's decoder memory, what the level graphs and
# decoder_search.onnx read of it (the cross-attention memory with its projections folded in, and
# the query's code-space vector)
DECODER_MEMORY = ("fold_k", "fold_bias", "fold_v", "text_vec")
SEARCH_OUTPUTS = ["codes", "scores"]  # of decoder_search.onnx
# The query encoder's graph (in onnx/) of each variant (grdr_plugin.model.config.QueryEncoder).
TEXT_ENCODER_GRAPHS: dict[str, str] = {"float": "text_encoder", "int8": "text_encoder.int8"}
# Variants whose activations are quantised with one scale per call, padding rows included: a query's
# vector would depend on the queries batched with it, so each query is encoded in a call of its own.
PER_QUERY_CALLS = frozenset({"int8"})

log = logging.getLogger(__name__)


@dataclass
class Queries:
    """Encoded queries: the rerank vectors and the backend's decoder inputs."""

    query_vec: np.ndarray  # float32 [Q, D], unit norm
    state: Any  # backend-specific per-query decoder memory, rows aligned with query_vec


def _session(path: Path, threads: int):
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"--model: {path} is missing; write the model's graphs with "
                                f"`grdr export --model {path.parent.parent}`")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class ModelRuntime:
    """Lazily opened ONNX sessions of one model folder (thread-safe: sessions are, state is read-only)."""

    def __init__(self, model_dir: Path | str, threads: int = 1, encoder: QueryEncoder = DEFAULT_QUERY_ENCODER):
        """encoder: the query encoder's graph (GRDR_QUERY_ENCODER, `--encoder`); a folder without it
        serves the one it was trained with (`query_encoder`)."""
        if encoder not in TEXT_ENCODER_GRAPHS:
            raise ValueError(f"encoder: {encoder!r} is not one of {', '.join(TEXT_ENCODER_GRAPHS)}")
        self.model_dir = Path(model_dir)
        self.asked_encoder = encoder
        refuse_pickles(self.model_dir)
        self.cfg = read_config(self.model_dir)
        if not self.cfg.fingerprint:
            raise ValueError(f"--model: {self.model_dir / CONFIG} has no fingerprint; re-save it with `grdr train`")
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
        return _session(self.model_dir / ONNX_DIR / f"{name}.onnx", self.threads)

    @cached_property
    def query_encoder(self) -> QueryEncoder:
        """The variant served: the one asked for where config.json records it and its graph is there,
        else the one the model was trained with (logged, naming the fix)."""
        asked, record = self.asked_encoder, self.cfg.query_encoder
        graph = self.model_dir / ONNX_DIR / f"{TEXT_ENCODER_GRAPHS[asked]}.onnx"
        if asked not in record.variants:
            why = f"{self.model_dir / CONFIG} records only {', '.join(record.variants)} (query_encoder.variants)"
        elif not graph.is_file():
            why = f"{graph} is missing"
        else:
            return asked
        log.warning("query encoder %s asked for (GRDR_QUERY_ENCODER or --encoder), but %s; serving %s, the one the "
                    "model was trained with. Write the %s graph with `grdr export --model %s`",
                    asked, why, record.trained_with, asked, self.model_dir)
        return record.trained_with

    @cached_property
    def text_session(self):
        return self._graph(TEXT_ENCODER_GRAPHS[self.query_encoder])

    @cached_property
    def memory_session(self):
        session = self._graph("decoder_memory")
        missing = sorted(set(DECODER_MEMORY) - {o.name for o in session.get_outputs()})
        if missing:
            raise ValueError(f"--model: {self.model_dir / ONNX_DIR / 'decoder_memory.onnx'} lacks the outputs "
                             f"{missing}; rewrite the graphs with `grdr export --model {self.model_dir}`")
        return session

    @cached_property
    def video_session(self):
        return self._graph("video_encoder")

    def _encode_text(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        enc = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        if len(texts) < 2 or self.query_encoder not in PER_QUERY_CALLS:
            states, qvec = self._run_text(ids, mask)
            return states, mask, qvec
        parts = [self._run_text(ids[i: i + 1, :n], mask[i: i + 1, :n]) for i, n in enumerate(mask.sum(1))]
        states = np.zeros((*ids.shape, parts[0][0].shape[2]), dtype=np.float32)  # padding: masked downstream
        for row, (part, _) in zip(states, parts):
            row[: part.shape[1]] = part[0]
        return states, mask, np.concatenate([qvec for _, qvec in parts])

    def _run_text(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        states, qvec = self.text_session.run(["token_states", "query_vec"], {"input_ids": ids, "attention_mask": mask})
        return states, qvec

    def query_vectors(self, texts: list[str]) -> np.ndarray:
        """Rerank vectors only (what a dense baseline needs)."""
        return self._encode_text(texts)[2]

    def encode_queries(self, texts: list[str]) -> Queries:
        """Text encoder + decoder memory, once per query."""
        states, mask, qvec = self._encode_text(texts)
        memory = self.memory_session.run(list(DECODER_MEMORY), {"token_states": states, "attention_mask": mask})
        return Queries(query_vec=qvec, state=dict(zip(DECODER_MEMORY, memory)))

    @cached_property
    def level_sessions(self) -> list[tuple[Any, bool]]:
        """(session, takes past_k/past_v) of decoder_level{n}.onnx for every level n."""
        sessions = [self._graph(f"decoder_level{n}") for n in range(self.cfg.levels)]
        # past_* are inputs only where positions are cached (not at n = 0, nor when no block is)
        return [(s, "past_k" in {i.name for i in s.get_inputs()}) for s in sessions]

    @cached_property
    def search_session(self):
        """decoder_search.onnx (the whole beam search of one query), or None for a folder
        exported without it (decoders too large for per-prefix tables)."""
        path = self.model_dir / ONNX_DIR / "decoder_search.onnx"
        return self._graph(path.stem) if path.is_file() else None

    def beam_search(self, q: Queries, valid_prefixes: list[np.ndarray], beam_size: int,
                    masks: Optional[list[np.ndarray]] = None) -> tuple[np.ndarray, np.ndarray]:
        """Trie-constrained beam search of every query, in `constrained_beam_search`'s format
        (codes int64 [Q, beam, L], scores float32 [Q, beam], padding beams -1 / -inf): one
        decoder_search.onnx call per query, the trie as `validity_masks` of `valid_prefixes`
        (pass `masks` when they are kept), or the level graphs + numpy search without it, and for a search that
        stops at a shorter level (fewer tables than levels: `grdr_plugin.decoding.recall_levels`)."""
        cfg = self.cfg
        if self.search_session is None or recall_levels(valid_prefixes, cfg.levels) < cfg.levels:
            return beam_search_by_steps(self, q, valid_prefixes, beam_size)
        if beam_size < 1:
            raise ValueError("beam_size: must be at least 1")
        n_queries, levels, size = len(q.query_vec), cfg.levels, cfg.codebook_size
        codes = np.full((n_queries, beam_size, levels), -1, dtype=np.int64)
        scores = np.full((n_queries, beam_size), -np.inf, dtype=np.float32)
        if not valid_prefixes[-1].size:  # nothing indexed: every beam is padding
            return codes, scores
        masks = validity_masks(valid_prefixes, size) if masks is None else masks
        fixed = {f"valid{n}": m for n, m in enumerate(masks)}
        fixed["beam"] = np.array(beam_size, dtype=np.int64)
        for i in range(n_queries):
            memory = {name: q.state[name][i: i + 1] for name in DECODER_MEMORY}
            found, best = self.search_session.run(SEARCH_OUTPUTS, {**fixed, **memory})
            codes[i, : len(found)], scores[i, : len(best)] = found, best
        return codes, scores

    def step_fn(self, q: Queries):
        """A beam-search step function over these queries (see grdr_plugin.decoding) running
        decoder_level{n}.onnx: one new position per beam, the earlier positions' self-attention
        keys/values taken from the previous call (a beam search's steps extend its prefixes).
        Prefixes whose parents the previous call did not see get those keys/values recomputed by
        the level graphs of the shorter prefixes: same log-probabilities either way."""
        return _LevelSteps(self.level_sessions, q.state, self.cfg.codebook_size, self.cfg.levels)

    def encode_videos(self, frames: np.ndarray, pooled: Optional[np.ndarray] = None,
                      batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """frames [N,F,Dv] (pooled = their normalised mean when not given) -> (codes [N,K,L], video_vec [N,D]).
        `batch` videos per call bounds the activations' memory."""
        frames = np.asarray(frames, dtype=np.float32)
        if pooled is None:
            mean = frames.mean(axis=1)
            pooled = mean / np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-9, None)  # 0 stays 0, not NaN
        pooled = np.asarray(pooled, dtype=np.float32)
        codes, vecs = [], []
        for i in range(0, len(frames), batch):
            c, v = self.video_session.run(["codes", "video_vec"], {"frames": np.ascontiguousarray(frames[i:i + batch]),
                                                                   "pooled": np.ascontiguousarray(pooled[i:i + batch])})
            codes.append(c)
            vecs.append(v)
        if not codes:
            cfg = self.cfg
            return np.zeros((0, cfg.views, cfg.levels), np.int64), np.zeros((0, cfg.rerank_dim), np.float32)
        return np.concatenate(codes).astype(np.int64), np.concatenate(vecs)


def _runs(rows: np.ndarray) -> list[slice]:
    """Slices of equal consecutive values: [3, 3, 5, 5, 5] -> [0:2, 2:5]."""
    cut = np.flatnonzero(rows[1:] != rows[:-1]) + 1
    bounds = [0, *cut.tolist(), rows.size]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _append(past: Optional[tuple[np.ndarray, ...]], new: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Keys/values of positions 0..n-1 (None for n = 0) and position n's -> those of 0..n."""
    return tuple(new) if past is None else tuple(np.concatenate([p, x], axis=3) for p, x in zip(past, new))


class _LevelSteps:
    """`ModelRuntime.step_fn`: decoder_level{n}.onnx over the beams of some encoded queries."""

    def __init__(self, sessions: list[tuple[Any, bool]], memory: dict[str, np.ndarray], codebook_size: int,
                 levels: int):
        self.sessions, self.memory = sessions, memory
        self.codebook_size, self.levels = codebook_size, levels
        self.cache = _StepCache(codebook_size)

    def __call__(self, rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
        prefix = np.ascontiguousarray(prefix, dtype=np.int64)
        n = prefix.shape[1]
        if not rows.size:
            return np.zeros((0, self.codebook_size), dtype=np.float32)
        past = self._past(rows, prefix)
        logprobs, *new = self._run(n, rows, prefix, past)
        if n + 1 < self.levels:
            self.cache.store(rows, prefix, *_append(past, new))
        else:
            self.cache.clear()
        return logprobs

    def _run(self, n: int, rows: np.ndarray, prefix: np.ndarray,
             past: Optional[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
        """decoder_level{n}.onnx on `prefix` [R, n] of query `rows` [R] -> [logprobs, new_k, new_v]
        (the last level: [logprobs]).  One call per query: its beams share one memory row (the
        graph's contract); a beam search lists a query's beams contiguously."""
        session, takes_past = self.sessions[n]
        parts = []
        for sl in _runs(rows):
            r = rows[sl.start]
            feed = {**{name: self.memory[name][r: r + 1] for name in DECODER_MEMORY}, "prefix": prefix[sl]}
            if takes_past:
                feed.update(past_k=past[0][sl], past_v=past[1][sl])
            parts.append(session.run(None, feed))
        return [np.concatenate(x) for x in zip(*parts)] if len(parts) > 1 else parts[0]

    def _past(self, rows: np.ndarray, prefix: np.ndarray) -> Optional[tuple[np.ndarray, ...]]:
        """Self-attention keys/values of positions 0..n-1 of `prefix` [R, n] (None for n = 0): the
        previous call's where it held the parent prefix, recomputed for the rest."""
        n = prefix.shape[1]
        if n == 0:
            return None
        found = self.cache.find(rows, prefix[:, :-1])
        miss = found < 0
        if not miss.any():
            return self.cache.k[found], self.cache.v[found]
        fresh = self._replay(rows[miss], prefix[miss])
        if miss.all():
            return fresh
        past = tuple(np.empty((rows.size, *x.shape[1:]), x.dtype) for x in fresh)
        for part, kept, new in zip(past, (self.cache.k, self.cache.v), fresh):
            part[~miss], part[miss] = kept[found[~miss]], new
        return past

    def _replay(self, rows: np.ndarray, prefix: np.ndarray) -> tuple[np.ndarray, ...]:
        """Keys/values of positions 0..n-1 of `prefix` [R, n >= 1], one level graph per position."""
        past = None
        for m in range(prefix.shape[1]):
            _, *new = self._run(m, rows, np.ascontiguousarray(prefix[:, :m]), past)
            past = _append(past, new)
        return past


_PAIR_KEY = np.dtype((np.void, 16))  # two int64s, compared as raw bytes


class _StepCache:
    """The last step's self-attention keys/values, found again by (query row, prefix)."""

    def __init__(self, codebook_size: int):
        self.codebook_size = codebook_size
        self.clear()

    def clear(self) -> None:
        self.length, self.keys, self.order, self.k, self.v = -1, None, None, None, None

    def _key(self, rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
        """(row, encoded prefix) as one 16-byte key: sorted and searched bytewise, which is all an
        exact lookup needs, and no row x C**L product to overflow int64 at large ID spaces."""
        pair = np.stack([rows.astype(np.int64), encode_prefix(prefix, self.codebook_size)], axis=1)
        return pair.view(_PAIR_KEY).ravel()

    def find(self, rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
        """Index into the stored k/v of each (row, prefix [R, n]) pair, -1 where it is not stored."""
        if self.keys is None or not self.keys.size or self.length != prefix.shape[1]:
            return np.full(rows.size, -1, dtype=np.int64)
        want = self._key(rows, prefix)
        pos = np.minimum(np.searchsorted(self.keys, want, sorter=self.order), self.keys.size - 1)
        found = self.order[pos]
        return np.where(self.keys[found] == want, found, -1)

    def store(self, rows: np.ndarray, prefix: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
        """k/v [R, cached blocks, heads, n + 1, dh]: positions 0..n of each row's `prefix` [R, n]."""
        self.length, self.keys, self.k, self.v = prefix.shape[1], self._key(rows, prefix), k, v
        self.order = np.argsort(self.keys, kind="stable")
