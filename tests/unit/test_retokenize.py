"""`grdr retokenize` on a tiny trained model: larger codebooks, the same encoder, reranker and view heads."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.numpy import load_file  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from cli.main import app  # noqa: E402
from grdr_plugin.data import load_dataset  # noqa: E402
from grdr_plugin.decoding import prefix_tables  # noqa: E402
from grdr_plugin.model.artifacts import (  # noqa: E402
    ENCODER_PREFIX,
    WEIGHTS,
    compute_fingerprint,
    read_config,
    write_config,
)
from grdr_plugin.model.config import ServingRecord  # noqa: E402
from grdr_plugin.model.retokenize import RetokenizeOptions, new_codebook_size, retokenize  # noqa: E402
from grdr_plugin.runtime import ModelRuntime  # noqa: E402
from tests.unit.test_data import make_dataset  # noqa: E402
from tests.unit.test_model import tiny  # noqa: E402

OLD_C, NEW_C = 4, 8
KEPT = ("reranker.", "views.", ENCODER_PREFIX)  # what a retokenize must leave exactly as it was


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(dataset, old model folder, retokenized folder, retokenize summary)."""
    from grdr_plugin.model.train import run_training

    root = tmp_path_factory.mktemp("retok")
    ds = load_dataset(make_dataset(root / "d", n_videos=16, unseen=6))
    cfg, tc = tiny()
    assert cfg.codebook_size == OLD_C
    run_training(ds, root / "old", cfg, tc, log=lambda *_: None)
    tuned = ServingRecord(beam_size=700, pool_share=0.1)  # as `grdr tune` leaves it: for the old IDs only
    write_config(root / "old", read_config(root / "old").model_copy(update={"serving": tuned}))
    summary = retokenize(root / "old", ds, root / "new", RetokenizeOptions(codebook_size=NEW_C, threads=1),
                         log=lambda *_: None)
    return ds, root / "old", root / "new", summary


def test_the_new_folder_is_a_new_model_recording_its_origin(models):
    _, old, new, summary = models
    old_cfg, new_cfg = read_config(old), read_config(new)
    assert (old_cfg.codebook_size, new_cfg.codebook_size) == (OLD_C, NEW_C)
    assert new_cfg.fingerprint == compute_fingerprint(new) != old_cfg.fingerprint
    assert new_cfg.model_dump(exclude={"codebook_size", "fingerprint", "serving"}) == \
        old_cfg.model_dump(exclude={"codebook_size", "fingerprint", "serving"})
    # the old IDs' tuned beam and budget do not carry over: the new model serves the constants until tuned
    assert old_cfg.serving.beam_size == 700 and new_cfg.serving == ServingRecord()
    written = json.loads((new / "train_summary.json").read_text())
    assert written["retokenized_from"]["fingerprint"] == old_cfg.fingerprint
    assert written["codebook_size"] == {"old": OLD_C, "new": NEW_C}
    assert written["before"]["videos"] == written["stats"]["videos"] == 16
    assert written == json.loads(json.dumps(summary))
    # only the level and fit phases ran: the reranker's and warm-up's were trained once, in the old model
    history = json.loads((new / "history.json").read_text())
    assert [h["phase"] for h in history] == ["level1", "level2", "level3", "fit"]


def test_encoder_reranker_and_view_heads_are_kept_bit_for_bit(models):
    _, old, new, _ = models
    a, b = load_file(str(old / WEIGHTS)), load_file(str(new / WEIGHTS))
    assert set(a) == set(b)
    kept = [k for k in a if k.startswith(KEPT)]
    assert any(k.startswith(ENCODER_PREFIX) for k in kept) and any(k.startswith("reranker.") for k in kept)
    for k in kept:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert a["rq.codebooks"].shape[1] == OLD_C and b["rq.codebooks"].shape[1] == NEW_C
    assert not np.array_equal(a["decoder.out.weight"], b["decoder.out.weight"])  # the decoder was refit


def test_onnx_graphs_serve_every_catalog_video_new_ids_and_the_same_vectors(models):
    ds, old, new, _ = models
    old_rt, new_rt = ModelRuntime(old), ModelRuntime(new)
    old_codes, old_vecs = old_rt.encode_videos(ds.frames, ds.features)
    codes, vecs = new_rt.encode_videos(ds.frames, ds.features)
    assert codes.shape == (ds.n_videos, 2, 3) and codes.min() >= 0 and codes.max() < NEW_C
    assert codes.max() >= OLD_C  # the new codes are used, not only the old range
    np.testing.assert_allclose(vecs, old_vecs, atol=1e-6)  # the index's dense vectors stay valid
    # the decoder decodes into the new ID space: every decoded ID is one of the catalog's
    tables = prefix_tables(codes.reshape(-1, 3), NEW_C)
    found, _ = new_rt.beam_search(new_rt.encode_queries(["a dog with a cat"]), tables, beam_size=4)
    valid = {tuple(c) for c in codes.reshape(-1, 3).tolist()}
    assert {tuple(c) for c in found[0].tolist() if c[0] >= 0} <= valid and found[0, 0, 0] >= 0
    assert not np.array_equal(old_codes, codes)


def test_a_smaller_codebook_is_refused_naming_the_flag(models, tmp_path):
    ds, old, _, _ = models
    with pytest.raises(ValueError, match="--codebook-size 4 or more"):
        retokenize(old, ds, tmp_path / "x", RetokenizeOptions(codebook_size=2))
    out = CliRunner().invoke(app, ["retokenize", "--model", str(old), "--dataset", str(ds.root), "--out",
                                   str(tmp_path / "y"), "--codebook-size", "2"])
    assert out.exit_code == 1 and "--codebook-size" in out.output
    assert not (tmp_path / "y").exists()  # nothing written


def test_the_old_folder_is_never_the_output(models):
    ds, old, _, _ = models
    with pytest.raises(ValueError, match="--out"):
        retokenize(old, ds, old, RetokenizeOptions(codebook_size=NEW_C))


def test_a_catalog_without_train_captions_is_refused(models, tmp_path):
    import dataclasses

    ds, old, _, _ = models
    captionless = dataclasses.replace(ds, query_train=np.zeros_like(ds.query_train))
    with pytest.raises(ValueError, match="--dataset: .* no train queries"):
        retokenize(old, captionless, tmp_path / "x", RetokenizeOptions(codebook_size=NEW_C))
    assert not (tmp_path / "x").exists()


def test_default_codebook_size_follows_the_catalog_and_never_shrinks():
    from grdr_plugin.model.config import ModelConfig

    old = ModelConfig(codebook_size=64)
    assert new_codebook_size(old, 1_000, None) == 64  # the rule says 64 for 1k videos
    assert new_codebook_size(old, 15_000, None) == 256  # a grown catalog gets the rule's larger C
    assert new_codebook_size(ModelConfig(codebook_size=128), 1_000, None) == 128  # never below the model's
    assert new_codebook_size(old, 1_000, 128) == 128
    with pytest.raises(ValueError, match="--codebook-size"):
        new_codebook_size(old, 1_000, 32)
