"""Query-encoder variants: `grdr export` writes text_encoder.int8.onnx beside the float graph and records
both in config.json (outside the fingerprint); ModelRuntime serves the variant asked for (GRDR_QUERY_ENCODER,
`grdr eval --encoder`) with vectors close to float's, and a folder without it serves float, naming the fix.
A tiny random model: plumbing and agreement, not recall (docs/MODEL.md measures that)."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from grdr_plugin.model.artifacts import CONFIG, compute_fingerprint, load_model, read_config  # noqa: E402
from grdr_plugin.model.config import DEFAULT_QUERY_ENCODER  # noqa: E402
from grdr_plugin.runtime import ModelRuntime  # noqa: E402
from grdr_plugin.settings import Settings  # noqa: E402
from tests.support.tiny_model import build_tiny_model  # noqa: E402

TEXTS = ["a man is slicing a tomato", "two dogs run on the beach", "a woman sings",
         "a long query about cooking pasta in a small kitchen while a radio plays old songs"]
INT8 = "text_encoder.int8.onnx"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    build_tiny_model(d)  # saves, then exports as `grdr train` does
    return d


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_config(folder, edit) -> None:
    raw = json.loads((folder / CONFIG).read_text())
    edit(raw)
    (folder / CONFIG).write_text(json.dumps(raw))


def test_export_writes_the_int8_graph_and_records_both_variants(exported):
    graph = onnx.load(str(exported / "onnx" / INT8))
    assert "MatMulInteger" in {n.op_type for n in graph.graph.node}  # the weight GEMMs run in int8
    record = read_config(exported).query_encoder
    assert record.variants == ["float", "int8"] and record.trained_with == "float"
    assert read_config(exported).fingerprint == compute_fingerprint(exported)


def test_grdr_export_records_the_variants_of_an_older_folder_and_keeps_its_fingerprint(tmp_path):
    """A folder written before the record existed (no query_encoder in config.json, no int8 graph) keeps
    its fingerprint, so the indices it built stay valid, and `grdr export` adds both."""
    from typer.testing import CliRunner

    from cli.main import app

    build_tiny_model(tmp_path, export=False)
    _edit_config(tmp_path, lambda raw: raw.pop("query_encoder"))
    before = read_config(tmp_path)
    assert before.query_encoder.variants == ["float"]
    assert compute_fingerprint(tmp_path) == before.fingerprint
    result = CliRunner().invoke(app, ["export", "--model", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert INT8 in result.output
    after = read_config(tmp_path)
    assert after.query_encoder.variants == ["float", "int8"]
    assert after.fingerprint == before.fingerprint == compute_fingerprint(tmp_path)
    load_model(tmp_path)  # verifies the fingerprint against weights + config


def test_int8_serves_vectors_close_to_float(exported):
    floats, int8 = ModelRuntime(exported, encoder="float"), ModelRuntime(exported, encoder="int8")
    assert (floats.query_encoder, int8.query_encoder) == ("float", "int8")
    a, b = floats.encode_queries(TEXTS), int8.encode_queries(TEXTS)
    assert not np.array_equal(a.query_vec, b.query_vec)  # another graph indeed
    cos = (a.query_vec * b.query_vec).sum(1)  # unit vectors
    assert cos.min() > 0.99, cos
    np.testing.assert_allclose(np.linalg.norm(b.query_vec, axis=1), 1.0, atol=1e-5)
    cos_code = (a.state["text_vec"] * b.state["text_vec"]).sum(1) / (
        np.linalg.norm(a.state["text_vec"], axis=1) * np.linalg.norm(b.state["text_vec"], axis=1))
    assert cos_code.min() > 0.99, cos_code  # the decoder's input, from the int8 token states
    codes, scores = int8.beam_search(b, [np.arange(8), np.arange(64), np.arange(512)], 4)
    assert codes.shape == (len(TEXTS), 4, 3) and np.isfinite(scores).all()


def test_an_int8_query_vector_does_not_depend_on_its_batch(exported):
    """int8 quantises a call's activations with one scale over the whole batch: each query gets its own
    call, so batched evaluation scores exactly what a search (batch 1) gets."""
    rt = ModelRuntime(exported, encoder="int8")
    together = rt.encode_queries(TEXTS)
    alone = [rt.encode_queries([t]) for t in TEXTS]
    np.testing.assert_array_equal(together.query_vec, np.concatenate([q.query_vec for q in alone]))
    np.testing.assert_allclose(together.state["text_vec"], np.concatenate([q.state["text_vec"] for q in alone]),
                               atol=1e-6)


def test_the_setting_selects_the_searchers_encoder(exported, monkeypatch):
    from query.searcher import Searcher

    monkeypatch.delenv("GRDR_QUERY_ENCODER", raising=False)
    assert Settings().query_encoder == DEFAULT_QUERY_ENCODER == "int8"
    assert Searcher(exported, "catalog", settings=Settings(), client=object()).runtime.query_encoder == "int8"
    monkeypatch.setenv("GRDR_QUERY_ENCODER", "float")
    searcher = Searcher(exported, "catalog", settings=Settings(), client=object())
    assert searcher.runtime.query_encoder == "float"
    np.testing.assert_array_equal(searcher.runtime.query_vectors(TEXTS[:1]),
                                  ModelRuntime(exported, encoder="float").query_vectors(TEXTS[:1]))
    monkeypatch.setenv("GRDR_QUERY_ENCODER", "fp16")
    with pytest.raises(ValueError, match="GRDR_QUERY_ENCODER"):
        Settings()
    with pytest.raises(ValueError, match="encoder: 'fp16' is not one of float, int8"):
        ModelRuntime(exported, encoder="fp16")


@pytest.mark.parametrize("lack", ["graph", "record"])
def test_a_folder_without_int8_serves_float_naming_the_fix(exported, tmp_path, caplog, lack):
    folder = _copy(exported, tmp_path / "m")
    if lack == "graph":
        (folder / "onnx" / INT8).unlink()
        why = f"{folder / 'onnx' / INT8} is missing"
    else:  # exported before the int8 graph existed: config.json records only float
        _edit_config(folder, lambda raw: raw.pop("query_encoder"))
        why = "records only float (query_encoder.variants)"
    rt = ModelRuntime(folder, encoder="int8")
    with caplog.at_level(logging.WARNING, logger="grdr_plugin.runtime"):
        vec = rt.query_vectors(TEXTS)
    assert rt.query_encoder == "float"
    np.testing.assert_array_equal(vec, ModelRuntime(exported, encoder="float").query_vectors(TEXTS))
    (message,) = [r.getMessage() for r in caplog.records]
    assert "query encoder int8 asked for" in message and why in message and "serving float" in message
    assert f"`grdr export --model {folder}`" in message


def test_a_config_naming_an_unknown_variant_is_refused(exported, tmp_path):
    """Ingest and query read config.json through read_config: a record they cannot serve is refused there."""
    folder = _copy(exported, tmp_path / "unknown")
    _edit_config(folder, lambda raw: raw["query_encoder"]["variants"].append("fp4"))
    with pytest.raises(ValueError, match=r"query_encoder\.variants\.2: Input should be 'float' or 'int8'"):
        read_config(folder)
    _edit_config(folder, lambda raw: raw.update(query_encoder={"trained_with": "float", "variants": ["int8"]}))
    with pytest.raises(ValueError, match=r"lack trained_with 'float'; rewrite the graphs with `grdr export`"):
        ModelRuntime(folder)


def test_grdr_eval_encoder_flag(exported, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    from tests.unit.test_data import make_dataset

    ds = make_dataset(tmp_path / "d")
    run = CliRunner().invoke
    for encoder in ("float", "int8"):
        result = run(app, ["eval", "--dataset", str(ds), "--model", str(exported), "--encoder", encoder, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output.strip().splitlines()[-1])["encoder"] == encoder
    bad = run(app, ["eval", "--dataset", str(ds), "--model", str(exported), "--encoder", "fp16"])
    assert bad.exit_code == 2 and "--encoder must be one of float, int8" in bad.output
    torch_int8 = run(app, ["eval", "--dataset", str(ds), "--model", str(exported), "--backend", "torch",
                           "--encoder", "int8"])
    assert torch_int8.exit_code == 2 and "use --backend onnx" in torch_int8.output


def test_bench_encoder_times_every_variant_on_the_same_queries(exported):
    from bench.encoder import BLOCK, TIMES, measure

    runtimes = {v: ModelRuntime(exported, encoder=v) for v in ("float", "int8")}
    texts = (TEXTS * BLOCK)[: BLOCK + 3]  # two blocks, the second short
    out = measure(runtimes, texts)
    for v in runtimes:
        assert set(out[v]) == {*TIMES, "cosine_to_float"}
        assert all(0 < out[v][t]["p50_ms"] <= out[v][t]["p99_ms"] for t in TIMES)
    assert out["float"]["cosine_to_float"] == {"min": 1.0, "mean": 1.0}
    assert 0.99 < out["int8"]["cosine_to_float"]["min"] <= 1.0  # rounded to 4 places
