"""The trained model at serving time: onnxruntime sessions + the text tokenizer, no torch.

Used by the ingest workers (video side), the query layer (text side + decoder) and in-process
evaluation (`grdr eval --backend onnx`). Reads only JSON, tokenizer files and ONNX graphs from a
model folder (docs/MODEL.md). Same interface as `grdr_plugin.model.torch_backend.TorchBackend`:
`cfg`, `encode_videos`, `encode_queries`, `step_fn`, `beam_search`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import numpy as np

from grdr_plugin.decoding import beam_search_by_steps, validity_masks
from grdr_plugin.model.artifacts import CONFIG, read_config
from grdr_plugin.model.ids import encode_prefix
from grdr_plugin.model.safe_files import refuse_pickles

STEP_MEMORY = ("mem_k", "mem_v", "mem_bias", "text_vec")  # what decoder_step.onnx reads of a query
LEVEL_MEMORY = ("fold_k", "fold_bias", "fold_v", "text_vec")  # ... and decoder_level{n}.onnx, decoder_search.onnx
SEARCH_OUTPUTS = ["codes", "scores"]  # of decoder_search.onnx


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
        names = [o.name for o in self.memory_session.get_outputs()]  # older exports lack the fold_* outputs
        memory = self.memory_session.run(names, {"token_states": states, "attention_mask": mask})
        return Queries(query_vec=qvec, state=dict(zip(names, memory)))

    @cached_property
    def level_sessions(self) -> Optional[list]:
        """(session, takes past_k/past_v) of decoder_level{n}.onnx for every level, or None for a
        folder exported before they existed (`grdr export` writes them)."""
        paths = [self.model_dir / "onnx" / f"decoder_level{n}.onnx" for n in range(self.cfg.levels)]
        if not all(p.is_file() for p in paths):
            return None
        sessions = [self._graph(p.stem) for p in paths]
        # past_* are inputs only where positions are cached (not at n = 0, nor when no block is)
        return [(s, "past_k" in {i.name for i in s.get_inputs()}) for s in sessions]

    @cached_property
    def search_session(self):
        """decoder_search.onnx (the whole beam search of one query), or None for a folder
        exported without it (older exports; decoders too large for per-prefix tables)."""
        path = self.model_dir / "onnx" / "decoder_search.onnx"
        return self._graph(path.stem) if path.is_file() else None

    def beam_search(self, q: Queries, valid_prefixes: list[np.ndarray], beam_size: int,
                    masks: Optional[list[np.ndarray]] = None) -> tuple[np.ndarray, np.ndarray]:
        """Trie-constrained beam search of every query, in `constrained_beam_search`'s format
        (codes int64 [Q, beam, L], scores float32 [Q, beam], padding beams -1 / -inf): one
        decoder_search.onnx call per query, the trie as `validity_masks` of `valid_prefixes`
        (pass `masks` when they are kept), or the level graphs + numpy search without it."""
        cfg = self.cfg
        if self.search_session is None:
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
            found, best = self.search_session.run(SEARCH_OUTPUTS, {**fixed, **{name: q.state[name][i: i + 1] for name in LEVEL_MEMORY}})
            codes[i, : len(found)], scores[i, : len(best)] = found, best
        return codes, scores

    def step_fn(self, q: Queries):
        """A beam-search step function over these queries (see grdr_plugin.decoding).

        Steps of one beam search extend the previous step's prefixes, so it keeps their
        self-attention keys/values and runs decoder_level{n}.onnx (one new position per beam).
        A call whose prefixes do not all extend the previous call's (a caller probing arbitrary
        prefixes), or a folder without level graphs, runs the stateless decoder_step.onnx
        instead: same log-probabilities.
        """
        levels = self.level_sessions
        cache = _StepCache(self.cfg.codebook_size, self.cfg.levels)

        def memory(rows, names) -> dict[str, np.ndarray]:
            return {name: q.state[name][rows] for name in names}

        def step(rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
            prefix = np.ascontiguousarray(prefix, dtype=np.int64)
            n = prefix.shape[1]
            past = cache.past(rows, prefix) if levels else None
            if past is None:  # decoder_step.onnx takes one memory row per beam
                cache.clear()
                return self.step_session.run(["logprobs"], {**memory(rows, STEP_MEMORY), "prefix": prefix})[0]
            if not rows.size:
                return np.zeros((0, self.cfg.codebook_size), dtype=np.float32)
            session, takes_past = levels[n]
            # one call per query: its beams share one memory row (the graph's contract); the
            # search lists a query's beams contiguously
            parts = []
            for sl in _runs(rows):
                r = rows[sl.start]
                feed = {**memory(slice(r, r + 1), LEVEL_MEMORY), "prefix": prefix[sl]}
                if takes_past:
                    feed.update(past_k=past[0][sl], past_v=past[1][sl])
                parts.append(session.run(None, feed))
            outputs = [np.concatenate(x) for x in zip(*parts)] if len(parts) > 1 else parts[0]
            if n + 1 < self.cfg.levels:
                new_k, new_v = outputs[1], outputs[2]
                if n:
                    new_k, new_v = np.concatenate([past[0], new_k], axis=3), np.concatenate([past[1], new_v], axis=3)
                cache.store(rows, prefix, new_k, new_v)
            else:
                cache.clear()
            return outputs[0]
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


def _runs(rows: np.ndarray) -> list[slice]:
    """Slices of equal consecutive values: [3, 3, 5, 5, 5] -> [0:2, 2:5]."""
    cut = np.flatnonzero(rows[1:] != rows[:-1]) + 1
    bounds = [0, *cut.tolist(), rows.size]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


class _StepCache:
    """The last step's self-attention keys/values, found again by (query row, prefix)."""

    def __init__(self, codebook_size: int, levels: int):
        self.base = codebook_size ** levels  # an encoded prefix of any length is < base
        self.codebook_size = codebook_size
        self.clear()

    def clear(self) -> None:
        self.length, self.keys, self.order, self.k, self.v = -1, None, None, None, None

    def _key(self, rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
        return rows.astype(np.int64) * self.base + encode_prefix(prefix, self.codebook_size)

    def past(self, rows: np.ndarray, prefix: np.ndarray) -> Optional[tuple[np.ndarray, ...]]:
        """past_k/past_v for `prefix` [R, n]: () for n = 0 (nothing before it), else the parents'
        stored entries (None when the previous call did not hold every parent)."""
        n = prefix.shape[1]
        if n == 0:
            return ()
        if self.length != n - 1 or self.keys is None:
            return None
        want = self._key(rows, prefix[:, :-1])
        pos = np.minimum(np.searchsorted(self.keys, want, sorter=self.order), self.keys.size - 1)
        found = self.order[pos]
        if not (self.keys[found] == want).all():
            return None
        return self.k[found], self.v[found]

    def store(self, rows: np.ndarray, prefix: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
        self.length, self.keys, self.k, self.v = prefix.shape[1], self._key(rows, prefix), k, v
        self.order = np.argsort(self.keys, kind="stable")
