"""The validation split: carved from train queries of seen videos only (no torch)."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from grdr_plugin.data import load_dataset
from grdr_plugin.validation import HoldoutSpec, holdout_split, load_spec, save_spec
from tests.unit.test_data import make_dataset


@pytest.fixture
def ds(tmp_path):
    return load_dataset(make_dataset(tmp_path / "d", n_videos=40, caps_per_video=6, unseen=8))


def test_no_test_query_enters_the_split(ds):
    val = holdout_split(ds, HoldoutSpec(fraction=0.25))
    test_ids = {ds.query_ids[i] for i in ds.test_queries()}
    assert test_ids and not test_ids & set(val.query_ids)
    assert set(val.query_ids) == {ds.query_ids[i] for i in ds.train_queries()}


def test_held_videos_lose_every_training_caption(ds):
    val = holdout_split(ds, HoldoutSpec(fraction=0.25))
    held = ds.video_split & ~val.video_split
    assert held.sum() == round(0.25 * ds.video_split.sum())
    assert not val.video_split[~ds.video_split].any()  # original unseen videos stay unseen
    train_videos = set(val.query_video[val.train_queries()].tolist())
    assert not train_videos & set(np.flatnonzero(held).tolist())
    # every caption of a held video validates it as an "unseen" video
    vq = val.test_queries()
    held_val = vq[held[val.query_video[vq]]]
    assert len(held_val) == sum(int((ds.query_video[ds.train_queries()] == v).sum()) for v in np.flatnonzero(held))


def test_remaining_seen_videos_keep_training_captions(ds):
    spec = HoldoutSpec(fraction=0.25, queries_per_video=2)
    val = holdout_split(ds, spec)
    tr, vq = set(val.train_queries().tolist()), val.test_queries()
    assert not tr & set(vq.tolist())
    for v in np.flatnonzero(val.video_split):
        own = np.flatnonzero(val.query_video == v)
        assert (~val.query_train[own]).sum() == 2 and val.query_train[own].sum() >= 1


def test_split_is_a_function_of_the_spec(ds, tmp_path):
    spec = HoldoutSpec(fraction=0.2, seed=3)
    a, b = holdout_split(ds, spec), holdout_split(ds, spec)
    assert (a.query_train == b.query_train).all() and (a.video_split == b.video_split).all()
    other = holdout_split(ds, HoldoutSpec(fraction=0.2, seed=4))
    assert not (other.video_split == a.video_split).all()
    save_spec(tmp_path, spec)
    assert load_spec(tmp_path) == spec and load_spec(tmp_path / "missing") is None


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_fraction_bounds(fraction):
    with pytest.raises(ValidationError, match="fraction"):
        HoldoutSpec(fraction=fraction)


@pytest.fixture
def cli():
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("args, message", [
    (["--holdout", "1.5"], "--holdout must be a share between 0 and 1"),
    (["--decoder-layers", "0"], "Invalid value for '--decoder-layers'"),
    (["--set", "epochs_fitt=1"], "--set 'epochs_fitt=1': expected KEY=VALUE with KEY one of"),
    (["--set", "epochs_fit"], "expected KEY=VALUE"),
    (["--set", "epochs_fit=many"], "--set: epochs_fit: Input should be a valid integer"),
])
def test_train_rejects_bad_flags_before_training(cli, tmp_path, args, message):
    data = make_dataset(tmp_path / "d")
    res = cli("train", "--dataset", data, "--out", tmp_path / "m", *args)
    assert res.exit_code == 2 and message in res.output
    assert not (tmp_path / "m").exists()  # refused before anything was written


def test_eval_validation_needs_a_holdout_model(cli, tmp_path):
    data = make_dataset(tmp_path / "d")
    (tmp_path / "m").mkdir()
    res = cli("eval", "--dataset", data, "--model", tmp_path / "m", "--validation")
    assert res.exit_code == 2 and "trained without --holdout" in res.output
