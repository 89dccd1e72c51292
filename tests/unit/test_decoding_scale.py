"""Constrained decoding at any ID-space size (tiny random models, no index).

Where the per-prefix tables fit, decoder_search.onnx searches with dense validity masks (C**n x C per
level); elsewhere the level graphs run and numpy walks the trie's valid children per prefix (the
prefix tables), so memory follows the valid IDs and the beams, not the C**L ID space. Both are
reached through `Searcher.decode`, the query layer's call.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import marisa_trie  # noqa: E402

from grdr_plugin.decoding import beam_search_by_steps  # noqa: E402
from grdr_plugin.model.ids import format_id  # noqa: E402
from grdr_plugin.runtime import ModelRuntime  # noqa: E402
from query.trie_store import TrieSnapshot  # noqa: E402
from tests.support.tiny_model import build_tiny_model  # noqa: E402

TEXTS = ["a man is slicing a tomato", "two dogs run on the beach", "a woman sings", "cooking pasta in a kitchen",
         "a car drives down a road", "kids play football in the rain", "a cat sleeps on a sofa",
         "news anchor talks about politics"]
BEAMS = (1, 20, 100, 300)


def _model(tmp_path_factory, codebook_size: int, levels: int):
    out = tmp_path_factory.mktemp(f"c{codebook_size}-l{levels}")
    build_tiny_model(out, codebook_size=codebook_size, levels=levels)
    return out


def _snapshot(runtime: ModelRuntime, seed: int = 0) -> tuple[TrieSnapshot, set[tuple[int, ...]]]:
    """A trie of the IDs the model gives 1,500 random videos, plus 1,000 random IDs (sparse subtrees)."""
    cfg = runtime.cfg
    rng = np.random.default_rng(seed)
    codes, _ = runtime.encode_videos(rng.standard_normal((1500, cfg.frames, cfg.feature_dim)).astype(np.float32))
    ids = np.unique(np.concatenate([codes.reshape(-1, cfg.levels),
                                    rng.integers(0, cfg.codebook_size, (1000, cfg.levels))]), axis=0)
    trie = marisa_trie.Trie([format_id(i) for i in ids])
    snap = TrieSnapshot.of(trie, np.ones(len(trie), dtype=np.int64), {}, levels=cfg.levels,
                           codebook_size=cfg.codebook_size)
    return snap, {tuple(i) for i in ids.tolist()}


def _searcher(model_dir):
    from query.searcher import Searcher

    return Searcher(model_dir, "unused")  # decode() over a given snapshot makes no network call


def _valid_beams(codes: np.ndarray, scores: np.ndarray) -> list[list[tuple[int, ...]]]:
    return [[tuple(c) for c, s in zip(q_codes, q_scores) if np.isfinite(s)]
            for q_codes, q_scores in zip(codes.tolist(), scores)]


@pytest.mark.parametrize("codebook_size,levels", [(64, 3), (16, 4)], ids=["C64-L3", "C16-L4"])
def test_masks_and_the_trie_walk_return_the_same_ids_and_scores(tmp_path_factory, codebook_size, levels):
    """Where both run: the Searcher decodes with the mask graph (building the snapshot's masks), and
    the level graphs + prefix-table walk return the same IDs in the same order, scores within 1e-4."""
    searcher = _searcher(_model(tmp_path_factory, codebook_size, levels))
    runtime = searcher.runtime
    assert runtime.search_session is not None
    snap, valid = _snapshot(runtime)
    q = runtime.encode_queries(TEXTS)
    for beam in BEAMS:
        masked, masked_scores = searcher.decode(q, beam, snap)
        walked, walked_scores = beam_search_by_steps(runtime, q, snap.tables, beam)
        np.testing.assert_array_equal(masked, walked)
        np.testing.assert_allclose(masked_scores, walked_scores, atol=1e-4)
        found = _valid_beams(walked, walked_scores)
        assert all(len(f) == min(beam, len(valid)) and set(f) <= valid for f in found)
    assert "masks" in vars(snap)  # the mask path ran


@pytest.mark.parametrize("codebook_size,levels", [(128, 4), (256, 4)], ids=["C128-L4", "C256-L4"])
def test_large_id_spaces_serve_from_the_trie_without_masks(tmp_path_factory, codebook_size, levels):
    """ID spaces whose per-prefix tables do not fit export without the mask graph; the Searcher decodes every
    query to min(beam, valid) valid IDs, never builds the snapshot's masks, and the search allocates less than
    C**L bytes: a dense mask of the last level alone would hold C**L entries. The level graphs return torch's IDs."""
    from grdr_plugin.model.torch_backend import TorchBackend

    model_dir = _model(tmp_path_factory, codebook_size, levels)
    assert not (model_dir / "onnx" / "decoder_search.onnx").exists()
    searcher = _searcher(model_dir)
    runtime = searcher.runtime
    assert runtime.search_session is None
    snap, valid = _snapshot(runtime)
    q = runtime.encode_queries(TEXTS[:4])
    tracemalloc.start()
    try:
        codes, scores = searcher.decode(q, 300, snap)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < codebook_size ** levels
    assert "masks" not in vars(snap)
    found = _valid_beams(codes, scores)
    assert all(len(f) == min(300, len(valid)) and set(f) <= valid for f in found)
    torch_backend, float_runtime = TorchBackend(model_dir), ModelRuntime(model_dir, encoder="float")  # torch's encoder
    torch_codes, torch_scores = torch_backend.beam_search(torch_backend.encode_queries(TEXTS[:4]), snap.tables, 300)
    onnx_codes, onnx_scores = float_runtime.beam_search(float_runtime.encode_queries(TEXTS[:4]), snap.tables, 300)
    np.testing.assert_array_equal(onnx_codes, torch_codes)
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=1e-3)


def test_the_tables_fit_every_three_level_codebook_and_no_four_level_one_at_the_default_width():
    """Which path a model of the default decoder width serves on (MODEL.md's table): the mask graph up to C=256 at
    L=3, the trie walk at L=4 from C=64 on (its last level's tables alone would take 322 MiB)."""
    from grdr_plugin.model.config import ModelConfig
    from grdr_plugin.model.export import tables_fit

    fits = {(c, n): tables_fit(ModelConfig(codebook_size=c, levels=n)) for c in (16, 64, 128, 256) for n in (3, 4)}
    assert fits == {(16, 3): True, (64, 3): True, (128, 3): True, (256, 3): True,
                    (16, 4): True, (64, 4): False, (128, 4): False, (256, 4): False}


def test_the_step_cache_tells_query_rows_apart_at_any_id_space():
    """The level search's self-attention cache is keyed by (query row, prefix) without a row x C**L
    product: at C=256, L=7 (2**56 IDs, a valid config) row 256 times C**L wraps int64 to 0, and row
    256 would find row 0's entry."""
    from grdr_plugin.runtime import _StepCache

    cache = _StepCache(256)
    prefix = np.array([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7], [255] * 6])
    kv = np.arange(3.0)[:, None]
    cache.store(np.array([0, 0, 3]), prefix, kv, kv)
    asked = np.array([[255] * 6, [1, 2, 3, 4, 5, 7], [1, 2, 3, 4, 5, 6], [0] * 6])
    assert cache.find(np.array([3, 0, 256, 0]), asked).tolist() == [2, 1, -1, -1]


def test_a_config_whose_id_space_overflows_the_id_encoding_is_refused():
    from pydantic import ValidationError

    from grdr_plugin.model.config import ModelConfig

    assert ModelConfig(codebook_size=256, levels=7).levels == 7  # 2**56 IDs: encodable
    for size, levels in ((256, 8), (2, 10**9)):
        with pytest.raises(ValidationError, match=r"levels, codebook_size: .* exceed the int64 ID encoding.*--levels"):
            ModelConfig(codebook_size=size, levels=levels)


def test_decode_paths_times_both_paths_where_the_folder_has_both(tmp_path_factory):
    """`python -m bench.decode_paths` (MODEL.md's timings): both paths on the same queries and trie, their
    agreement, and only the trie walk for a folder without the mask graph."""
    from bench.decode_paths import measure

    for size, levels, paths in ((16, 3, {"masks", "trie_walk"}), (128, 4, {"trie_walk"})):
        runtime = ModelRuntime(_model(tmp_path_factory, size, levels))
        snap, _ = _snapshot(runtime)
        row = measure(runtime, TEXTS[:3], snap.tables, beam=20, warmup=1)
        assert {p for p in ("masks", "trie_walk") if p in row} == paths and row["queries"] == 3
        assert all(row[p]["p50_ms"] > 0 for p in paths)
        if len(paths) == 2:
            assert row["same_ids_share"] == 1.0 and row["max_score_diff"] < 1e-4
        else:
            assert "same_ids_share" not in row
        # prefixes (a search recalled at a shorter level): the trie walk alone, whatever the folder holds
        short = measure(runtime, TEXTS[:3], snap.tables[:2], beam=20, warmup=1)
        assert "masks" not in short and short["trie_walk"]["p50_ms"] > 0
