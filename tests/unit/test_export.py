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
from tests.support.tiny_model import build_tiny_model  # noqa: E402

TEXTS = ["a man is slicing a tomato", "two dogs run on the beach", "a woman sings", "cooking pasta in a kitchen"]


@pytest.fixture(scope="module", params=[(1, True), (2, True), (2, False)],
                ids=["1-block", "2-blocks", "2-blocks-no-tables"])
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
    for key in ("views", "levels", "codebook_size", "feature_dim", "frames", "rerank_dim", "text_max_length",
                "fingerprint", "encoder"):
        assert key in cfg
    assert cfg["fingerprint"] == compute_fingerprint(exported)
    assert (exported / "tokenizer" / "tokenizer.json").is_file()
    assert read_config(exported).codebook_size == 8


def test_onnx_matches_torch(exported):
    from grdr_plugin.model.torch_backend import TorchBackend
    from grdr_plugin.runtime import ModelRuntime

    tb, ob = TorchBackend(exported), ModelRuntime(exported, encoder="float")  # torch runs the float encoder
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


def test_export_writes_the_serving_graphs_only(exported, request):
    """The export writes the encoders, the decoder memory (folded, as the level and search graphs
    read it), the level graphs and, where the tables fit, the search graph: no stateless step graph."""
    from grdr_plugin.runtime import DECODER_MEMORY, ModelRuntime

    names = {p.name for p in (exported / "onnx").iterdir()}
    want = {"text_encoder.onnx", "text_encoder.int8.onnx", "decoder_memory.onnx", "video_encoder.onnx",
            "decoder_level0.onnx", "decoder_level1.onnx", "decoder_level2.onnx"}
    if request.node.callspec.id != "2-blocks-no-tables":
        want.add("decoder_search.onnx")
    assert names == want
    assert [o.name for o in ModelRuntime(exported).memory_session.get_outputs()] == list(DECODER_MEMORY)


def test_level_steps_extend_the_previous_step_and_equal_torch(exported):
    """The serving step reuses the last step's self-attention (decoder_level{n}.onnx) for one query's
    beams (shared memory row) and for many queries (gathered rows); prefixes whose parents it did not
    see (some or all of them) get those keys/values recomputed by the level graphs of the shorter
    prefixes. Every path gives torch's log-probabilities, and no stateless step graph exists or is opened."""
    from grdr_plugin.model.torch_backend import TorchBackend
    from grdr_plugin.runtime import ModelRuntime

    tb, ob = TorchBackend(exported), ModelRuntime(exported, encoder="float")  # torch runs the float encoder
    tq, oq = tb.encode_queries(TEXTS), ob.encode_queries(TEXTS)
    rng = np.random.default_rng(1)
    for rows in (np.zeros(6, np.int64), np.array([0, 1, 1, 2, 3, 3])):  # one query's beams, then many queries'
        torch_step, onnx_step = tb.step_fn(tq), ob.step_fn(oq)
        prefix = np.zeros((rows.size, 0), np.int64)
        for _ in range(3):
            np.testing.assert_allclose(torch_step(rows, prefix), onnx_step(rows, prefix), atol=1e-3)
            prefix = np.concatenate([prefix, rng.integers(0, 8, (rows.size, 1))], axis=1)
    rows, torch_step, cache_misses = np.arange(4), tb.step_fn(tq), ob.step_fn(oq)
    cache_misses(rows[:2], np.zeros((2, 0), np.int64))
    first = rng.integers(0, 8, (4, 1))  # rows 2-3: their (empty) parents were not in the last call
    np.testing.assert_allclose(torch_step(rows, first), cache_misses(rows, first), atol=1e-3)
    second = np.concatenate([first, rng.integers(0, 8, (4, 1))], axis=1)  # extends the recomputed cache
    np.testing.assert_allclose(torch_step(rows, second), cache_misses(rows, second), atol=1e-3)
    cache_misses(rows, np.zeros((4, 0), np.int64))
    stranger = rng.integers(0, 8, (4, 2))  # length 2 after a length-0 call: no parent cached
    stranger[:, 0] = (first[:, 0] + 1) % 8  # nor the parents of the length-1 call below
    np.testing.assert_allclose(torch_step(rows, stranger), cache_misses(rows, stranger), atol=1e-3)
    cache_misses(rows, first)
    mixed = np.concatenate([second[:2], stranger[2:]])  # half extend the last call, half do not
    np.testing.assert_allclose(torch_step(rows, mixed), cache_misses(rows, mixed), atol=1e-3)
    assert not (exported / "onnx" / "decoder_step.onnx").exists()
    assert {name for name in vars(ob) if "session" in name} == {"text_session", "memory_session", "level_sessions"}


def test_grdr_export_rewrites_the_serving_graphs_and_keeps_the_fingerprint(tmp_path):
    """`grdr export` brings a folder exported before the level graphs up to date (the stale
    stateless step graphs go), and refuses a folder without weights, naming the flag."""
    from typer.testing import CliRunner

    from cli.main import app

    build_tiny_model(tmp_path, export=False)
    before = json.loads((tmp_path / "config.json").read_text())["fingerprint"]
    (tmp_path / "onnx").mkdir()
    for stale in ("decoder_step.onnx", "decoder_step_cached.onnx"):
        (tmp_path / "onnx" / stale).write_bytes(b"an older export")
    result = CliRunner().invoke(app, ["export", "--model", str(tmp_path)])
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "onnx").glob("*.onnx")}
    assert {"decoder_level0.onnx", "decoder_level1.onnx", "decoder_level2.onnx", "decoder_memory.onnx",
            "decoder_search.onnx"} <= names
    assert not names & {"decoder_step.onnx", "decoder_step_cached.onnx"}
    assert compute_fingerprint(tmp_path) == before
    missing = CliRunner().invoke(app, ["export", "--model", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "--model" in missing.output and "grdr train" in missing.output


def test_a_folder_missing_a_level_graph_names_the_file_and_the_fix(exported, tmp_path):
    """Without decoder_search.onnx beam search runs the level graphs; with one of them missing too
    there is no decoder left, and the error names the file and `grdr export`."""
    import shutil

    from grdr_plugin.runtime import ModelRuntime

    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    (folder / "onnx" / "decoder_search.onnx").unlink(missing_ok=True)
    (folder / "onnx" / "decoder_level1.onnx").unlink()
    ob = ModelRuntime(folder)
    with pytest.raises(FileNotFoundError, match=r"decoder_level1\.onnx is missing.*grdr export --model"):
        ob.beam_search(ob.encode_queries(TEXTS), prefix_tables(np.array([[0, 1, 2]]), 8), 4)


def _finite_ids(codes: np.ndarray, scores: np.ndarray) -> list[list[tuple[int, ...]]]:
    return [[tuple(c) for c, s in zip(q_codes, q_scores) if np.isfinite(s)]
            for q_codes, q_scores in zip(codes.tolist(), scores)]


def test_search_graph_returns_the_level_search_ids(exported, request):
    """decoder_search.onnx (the whole search of a query in one graph, the trie as validity masks)
    returns constrained_beam_search's IDs and scores over the level graphs, for one to every valid
    ID and beams below and above their count.  A folder too large for per-prefix tables has no
    such graph; beam_search then runs the level search."""
    from grdr_plugin.runtime import ModelRuntime

    ob = ModelRuntime(exported)
    has_tables = request.node.callspec.id != "2-blocks-no-tables"
    assert (ob.search_session is not None) == has_tables
    oq = ob.encode_queries(TEXTS)
    rng = np.random.default_rng(2)
    for n_ids in (1, 6, 60, 512):
        ids = np.unique(rng.integers(0, 8, (n_ids, 3)), axis=0)
        tables = prefix_tables(ids, 8)
        valid = {tuple(i) for i in ids.tolist()}
        for beam in (1, 3, 50, 600):
            graph_codes, graph_scores = ob.beam_search(oq, tables, beam)
            level_codes, level_scores = constrained_beam_search(ob.step_fn(oq), len(TEXTS), 3, 8, tables, beam)
            assert graph_codes.shape == level_codes.shape == (len(TEXTS), beam, 3)
            found = _finite_ids(graph_codes, graph_scores)
            assert found == _finite_ids(level_codes, level_scores)
            assert all(len(f) == min(beam, len(valid)) and set(f) <= valid for f in found)
            np.testing.assert_allclose(graph_scores, level_scores, atol=1e-4)
            assert (graph_codes[~np.isfinite(graph_scores)] == -1).all()
    no_ids = [np.zeros(0, np.int64)] * 3
    codes, scores = ob.beam_search(oq, no_ids, 4)
    assert (codes == -1).all() and np.isneginf(scores).all()


def test_a_search_given_the_short_levels_tables_stops_at_their_prefixes(exported):
    """A pool recalled at a shorter level (ServingRecord.recall_level): the search decodes only the levels whose
    tables it is given, through the level graphs whatever the folder holds: the level search's prefixes, valid ones
    only, every one for a beam as wide as their count."""
    from grdr_plugin.runtime import ModelRuntime

    ob = ModelRuntime(exported)
    oq = ob.encode_queries(TEXTS)
    ids = np.unique(np.random.default_rng(4).integers(0, 8, (60, 3)), axis=0)
    tables = prefix_tables(ids, 8)
    prefixes = {tuple(i) for i in ids[:, :2].tolist()}
    codes, scores = ob.beam_search(oq, tables[:2], 5)
    expected, expected_scores = constrained_beam_search(ob.step_fn(oq), len(TEXTS), 2, 8, tables[:2], 5)
    assert codes.shape == (len(TEXTS), 5, 2)
    np.testing.assert_array_equal(codes, expected)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    assert all(len(f) == 5 and set(f) <= prefixes for f in _finite_ids(codes, scores))
    # a beam that keeps every prefix: the short search's prefixes, best first, are the whole search's own
    wide_codes, wide_scores = ob.beam_search(oq, tables[:2], len(prefixes))
    assert all(set(f) == prefixes for f in _finite_ids(wide_codes, wide_scores))
    with pytest.raises(ValueError, match="valid_prefixes has 4 levels, expected 1 to 3"):
        ob.beam_search(oq, [*tables, tables[-1]], 5)


def test_search_graph_emits_only_valid_ids_from_a_broken_model(tmp_path):
    """A decoder whose every log-probability is NaN (corrupt weights) still yields exactly
    min(beam, valid) IDs, all of them valid: validity comes from the masks, not the model."""
    from grdr_plugin.model.export import export_onnx
    from grdr_plugin.runtime import ModelRuntime

    model, encoder, _ = build_tiny_model(tmp_path, export=False, decoder_layers=2)
    with torch.no_grad():
        model.decoder.out.weight.fill_(float("nan"))
    export_onnx(tmp_path, model, encoder)
    ob = ModelRuntime(tmp_path)
    assert ob.search_session is not None
    oq = ob.encode_queries(TEXTS)
    ids = np.array([[0, 1, 2], [0, 1, 3], [5, 5, 5], [7, 0, 0]])
    for beam in (1, 2, 4, 10):
        codes, scores = ob.beam_search(oq, prefix_tables(ids, 8), beam)
        for found in _finite_ids(codes, scores):
            assert len(found) == min(beam, len(ids)) and set(found) <= {tuple(i) for i in ids.tolist()}


def test_a_table_budget_that_fits_only_the_short_levels_serves_without_tables(tmp_path, monkeypatch):
    """Per-prefix tables are all levels or none: with a budget that fits levels 0-1's tables but
    not level 2's, a level with tables would hand the next one a cache without the first block
    (a C=256 model used to fail so at its last step).  Beam search through the level graphs
    equals torch's."""
    from grdr_plugin.model import export
    from grdr_plugin.model.torch_backend import TorchBackend
    from grdr_plugin.runtime import ModelRuntime

    build_tiny_model(tmp_path, export=False, decoder_layers=2)
    monkeypatch.setattr(export, "MAX_TABLE_BYTES", 5000)  # level 1: 8 rows x 42 floats; level 2: 64 rows
    export.export_onnx(tmp_path)
    tb, ob = TorchBackend(tmp_path), ModelRuntime(tmp_path, encoder="float")
    assert ob.search_session is None
    ids = np.unique(np.random.default_rng(3).integers(0, 8, (40, 3)), axis=0)
    tables = prefix_tables(ids, 8)
    ct, st = tb.beam_search(tb.encode_queries(TEXTS), tables, 5)
    co, so = ob.beam_search(ob.encode_queries(TEXTS), tables, 5)
    np.testing.assert_array_equal(ct, co)
    np.testing.assert_allclose(st, so, atol=1e-3)
