"""ONNX export parity: onnxruntime and torch agree, and beam search returns the same IDs.

Uses a tiny random model and a tiny random BERT (the real MiniLM tokenizer files), so it needs
no trained model on disk and runs in seconds.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from grdr_plugin.decoding import constrained_beam_search, prefix_tables  # noqa: E402
from grdr_plugin.model.artifacts import compute_fingerprint, read_config  # noqa: E402
from grdr_plugin.model.tiny import build_tiny_model  # noqa: E402

TEXTS = ["a man is slicing a tomato", "two dogs run on the beach", "a woman sings", "cooking pasta in a kitchen"]


@pytest.fixture(scope="module", params=[(1, True), (2, True), (2, False)], ids=["1-block", "2-blocks", "2-blocks-no-tables"])
def exported(tmp_path_factory, request):
    """A tiny model folder exported from disk.  With per-prefix tables a one-block decoder caches
    nothing (its only block's self-attention is a table) and two blocks cache the second's
    keys/values; without them (too many prefixes) every block is computed and cached."""
    from grdr_plugin.model import export

    layers, tables = request.param
    d = tmp_path_factory.mktemp("model")
    build_tiny_model(d, export=False, decoder_layers=layers)
    with pytest.MonkeyPatch.context() as mp:
        if not tables:
            mp.setattr(export, "MAX_TABLE_BYTES", 0)
        export.export_onnx(d)  # from the saved folder, as `grdr train` does
    return d


def test_config_and_fingerprint(exported):
    cfg = json.loads((exported / "config.json").read_text())
    for key in ("views", "levels", "codebook_size", "feature_dim", "frames", "rerank_dim", "text_max_length", "fingerprint", "encoder"):
        assert key in cfg
    assert cfg["fingerprint"] == compute_fingerprint(exported)
    assert (exported / "tokenizer" / "tokenizer.json").is_file()
    assert read_config(exported).codebook_size == 8


def test_onnx_matches_torch(exported):
    from grdr_plugin.model.runtime import TorchBackend
    from grdr_plugin.runtime import ModelRuntime

    tb, ob = TorchBackend(exported), ModelRuntime(exported)
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((5, 3, 16)).astype(np.float32)
    pooled = frames.mean(1)
    tc, tv = tb.encode_videos(frames, pooled)
    oc, ov = ob.encode_videos(frames, pooled)
    assert oc.dtype == np.int64 and oc.shape == (5, 2, 3)
    np.testing.assert_array_equal(tc, oc)
    np.testing.assert_allclose(tv, ov, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(ov, axis=1), 1.0, atol=1e-4)

    tq, oq = tb.encode_queries(TEXTS), ob.encode_queries(TEXTS)
    np.testing.assert_allclose(tq.query_vec, oq.query_vec, atol=1e-4)
    rows = np.arange(len(TEXTS))
    for t in range(3):  # includes the empty prefix t = 0
        prefix = rng.integers(0, 8, (len(TEXTS), t)).astype(np.int64)
        lt, lo = tb.step_fn(tq)(rows, prefix), ob.step_fn(oq)(rows, prefix)
        assert lo.shape == (len(TEXTS), 8)
        np.testing.assert_allclose(lt, lo, atol=1e-3)

    ids = np.unique(rng.integers(0, 8, (40, 3)), axis=0)
    tables = prefix_tables(ids, 8)
    ct, st = constrained_beam_search(tb.step_fn(tq), len(TEXTS), 3, 8, tables, 5)
    co, so = constrained_beam_search(ob.step_fn(oq), len(TEXTS), 3, 8, tables, 5)
    np.testing.assert_array_equal(ct, co)
    np.testing.assert_allclose(st, so, atol=1e-3)


def test_level_steps_extend_the_previous_step_and_equal_torch(exported):
    """The serving step reuses the last step's self-attention (decoder_level{n}.onnx) for one query's
    beams (shared memory row) and for many queries (gathered rows); a prefix whose parent it did not
    see runs the stateless graph. Every path gives torch's log-probabilities."""
    from grdr_plugin.model.runtime import TorchBackend
    from grdr_plugin.runtime import ModelRuntime

    tb, ob = TorchBackend(exported), ModelRuntime(exported)
    tq, oq = tb.encode_queries(TEXTS), ob.encode_queries(TEXTS)
    rng = np.random.default_rng(1)
    for rows in (np.zeros(6, np.int64), np.array([0, 1, 1, 2, 3, 3])):  # one query's beams, then many queries'
        torch_step, onnx_step = tb.step_fn(tq), ob.step_fn(oq)
        prefix = np.zeros((rows.size, 0), np.int64)
        for _ in range(3):
            np.testing.assert_allclose(torch_step(rows, prefix), onnx_step(rows, prefix), atol=1e-3)
            prefix = np.concatenate([prefix, rng.integers(0, 8, (rows.size, 1))], axis=1)
    assert "step_session" not in vars(ob)  # every step above ran a level graph
    cache_misses = ob.step_fn(oq)
    cache_misses(np.arange(4), np.zeros((4, 0), np.int64))
    stranger = rng.integers(0, 8, (4, 2))  # length 2 after a length-0 call: no parent cached
    np.testing.assert_allclose(tb.step_fn(tq)(np.arange(4), stranger), cache_misses(np.arange(4), stranger), atol=1e-3)
    assert "step_session" in vars(ob)


def test_grdr_export_rewrites_the_serving_graphs_and_keeps_the_fingerprint(tmp_path):
    """`grdr export` brings a folder exported before the level graphs up to date (the stale cached
    step graph goes), and refuses a folder without weights, naming the flag."""
    from typer.testing import CliRunner

    from grdr_plugin.cli import app

    build_tiny_model(tmp_path, export=False)
    before = json.loads((tmp_path / "config.json").read_text())["fingerprint"]
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "decoder_step_cached.onnx").write_bytes(b"an older export")
    result = CliRunner().invoke(app, ["export", "--model", str(tmp_path)])
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "onnx").glob("*.onnx")}
    assert {"decoder_level0.onnx", "decoder_level1.onnx", "decoder_level2.onnx", "decoder_memory.onnx"} <= names
    assert "decoder_step_cached.onnx" not in names
    assert compute_fingerprint(tmp_path) == before
    missing = CliRunner().invoke(app, ["export", "--model", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "--model" in missing.output and "grdr train" in missing.output
