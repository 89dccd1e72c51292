"""`grdr tune`: a model's serving defaults chosen on its validation split and recorded in its folder."""
from __future__ import annotations

import json

import pytest

from grdr_plugin.data import load_dataset
from grdr_plugin.model.artifacts import read_config
from grdr_plugin.pool import MAX_POOL, MIN_POOL, POOL_SHARE
from grdr_plugin.tuning import (
    DECODE_US_PER_BEAM,
    DEFAULT_SHARES,
    SCORE_US_PER_VIDEO,
    choose,
    default_levels,
    search_cost_us,
    settings_of,
    tune,
)
from tests.unit.test_data import make_dataset
from tests.unit.test_eval import OracleBackend

DENSE = {"R@1": 50.0, "R@5": 80.0, "R@10": 90.0}


def _row(beam: int, max_pool: int, r1: float, r5: float, r10: float, cand: float = 96.0, cost: float = 0.0) -> dict:
    return {"beam": beam, "max_pool": max_pool, "R@1": r1, "R@5": r5, "R@10": r10, "candidate_recall": cand,
            "cost_us": cost or search_cost_us(beam, 3, 64, max_pool)}


def test_shares_that_give_one_budget_on_the_catalog_are_one_setting_under_the_share_nearest_the_rules():
    # 20,000 postings: 0.01, 0.025 and 0.05 all give the floor (1,000); 0.1 gives 2,000
    assert settings_of([500, 300], [0.1, 0.05, 0.01, 0.025], [3], 20_000) == [
        (300, MIN_POOL, 3, POOL_SHARE), (300, 2000, 3, 0.1), (500, MIN_POOL, 3, POOL_SHARE), (500, 2000, 3, 0.1)]
    assert settings_of([300], [0.025], [3, 2], 10_000) == [(300, MIN_POOL, 2, 0.025), (300, MIN_POOL, 3, 0.025)]
    # without the rule's own share, the nearest to it in log (0.05 is 2x, 0.01 is 2.5x away)
    assert settings_of([300], [0.01, 0.05], [3], 20_000) == [(300, MIN_POOL, 3, 0.05)]
    # 4M postings (a million videos): every share of the default grid asks the ceiling, one setting under the rule's
    assert [(pool, share) for _, pool, _, share in settings_of([300], DEFAULT_SHARES, [3], 4_000_000)] == [
        (MAX_POOL, POOL_SHARE)]


def test_the_standard_error_of_a_paired_share_counts_the_queries_one_system_finds_and_the_other_misses():
    from grdr_plugin.metrics import paired_share_se

    # 100 queries; dense finds 40 within 10; GRDR finds 38 of those and 2 others: the share is 100 %
    dense = [1] * 40 + [0] * 60
    grdr = [1] * 38 + [0] * 2 + [3] * 2 + [0] * 58
    # g - s * d: 0 for the 38 both find, -1 for the 2 dense alone finds, +1 for the 2 GRDR alone finds
    assert paired_share_se(grdr, dense, cutoffs=(10,)) == {"R@10": round(100 * 4 ** 0.5 / 40, 2)}
    assert paired_share_se(dense, dense) == {"R@1": 0.0, "R@5": 0.0, "R@10": 0.0}  # the same hits: no doubt
    assert paired_share_se([1, 2], [0, 0]) == {"R@1": 0.0, "R@5": 0.0, "R@10": 0.0}  # the reference finds none


def test_a_search_costs_its_decoded_beams_and_its_pool():
    # whole IDs of C=256 at beam 1,000: 1 + 256 + 1,000 beams scored; their prefixes one level up: 1 + 256
    assert search_cost_us(1000, 3, 256, 0) == DECODE_US_PER_BEAM * 1257
    assert search_cost_us(1000, 2, 256, 10_000) == DECODE_US_PER_BEAM * 257 + SCORE_US_PER_VIDEO * 10_000
    assert default_levels(3) == (2, 3) and default_levels(1) == (1,)


def test_the_choice_is_the_cheapest_setting_reaching_the_target_on_every_recall():
    grid = [_row(300, 500, 49.5, 79.0, 86.0),   # R@10 short of 98 %
            _row(300, 1000, 49.2, 79.0, 88.5),  # R@1 98.4 %, R@5 98.75 %, R@10 98.3 %: reaches
            _row(1000, 500, 50.0, 80.0, 90.0),  # reaches too, at a wider beam
            _row(300, 2000, 50.0, 80.0, 89.9)]  # reaches, at a larger budget
    assert choose(grid, DENSE, 0.98) == (grid[1], True)
    short = [{**grid[1], "candidate_recall": 94.0}, *grid[2:]]  # the pool misses the video too often
    # (300, 2000) costs 0.6 ms of scoring more than (300, 1000); (1000, 500) 4.6 ms of decoding more
    assert choose(short, DENSE, 0.98, candidate_recall=95.0) == (short[2], True)
    assert choose(short, DENSE, 0.98, candidate_recall=0.0) == (short[0], True)
    # no row reaches the candidate recall: the cheapest reaching the recall target, the record saying so
    assert choose(short, DENSE, 0.98, candidate_recall=99.0) == (short[0], False)
    # the cost decides, not the beam: a wide beam of prefixes that decodes cheaply beats a narrower one of whole IDs
    prefixes = _row(1000, 2000, 50.0, 80.0, 90.0, cost=search_cost_us(1000, 2, 64, 2000))
    assert choose([grid[2], prefixes], DENSE, 0.98) == (prefixes, True)


def test_where_no_setting_reaches_the_target_the_best_r10_is_chosen_and_said():
    grid = [_row(300, 500, 40.0, 70.0, 80.0), _row(1000, 500, 41.0, 71.0, 84.0), _row(1000, 1000, 42.0, 71.0, 84.0)]
    assert choose(grid, DENSE, 0.98) == (grid[1], False)  # equal R@10: the cheaper


def test_tune_scores_every_setting_and_records_where_it_chose(tmp_path):
    ds = load_dataset(make_dataset(tmp_path / "d"))
    backend = OracleBackend(ds, {t: int(v) for t, v in zip(ds.query_text, ds.query_video)})
    record, result = tune(ds, backend, beams=[5, 2], shares=[POOL_SHARE, 0.5], target=0.98)
    # the oracle's IDs have 3 levels: whole IDs and their 2-code prefixes, each share giving one budget (the floor)
    assert [(r["recall_level"], r["beam"], r["share"]) for r in result["grid"]] == [
        (2, 2, POOL_SHARE), (2, 5, POOL_SHARE), (3, 2, POOL_SHARE), (3, 5, POOL_SHARE)]
    assert result["queries"] == len(ds.test_queries()) and result["dense"]["R@1"] == 100.0
    for row in result["grid"]:
        assert row["cost_us"] == round(search_cost_us(row["beam"], row["recall_level"], 4, row["pool_mean"]))
        assert row["decode_ms"] >= 0
    # the oracle decodes each query's video first: every setting reaches dense, the cheapest is chosen
    cheapest = min(result["grid"], key=lambda r: (r["cost_us"], r["beam"]))
    assert (record.beam_size, record.pool_share) == (cheapest["beam"], POOL_SHARE)
    assert record.recall_level == (None if cheapest["recall_level"] == 3 else cheapest["recall_level"])
    assert record.tuned_on.met and record.tuned_on.of_dense == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0}
    assert record.tuned_on.queries == len(ds.test_queries()) and record.tuned_on.candidate_recall == 100.0
    assert (record.tuned_on.videos, record.tuned_on.postings) == (ds.n_videos, result["postings"])


def test_records_tuned_at_scale_must_say_their_size_and_come_by_it():
    from grdr_plugin.model.config import ModelConfig, ServingRecord, TunedOn

    def at(postings):
        return ServingRecord(tuned_on=TunedOn(model="0" * 64, queries=1, postings=postings, target=0.98,
                                              target_candidate_recall=95.0, met=True, of_dense={}, candidate_recall=0))

    assert ModelConfig(serving_at_scale=[at(10_000), at(100_000)]).budget_rule().bands[1].postings == 10_000
    with pytest.raises(ValueError, match="each record needs tuned_on.postings"):
        ModelConfig(serving_at_scale=[at(None)])
    with pytest.raises(ValueError, match="by distinct postings"):
        ModelConfig(serving_at_scale=[at(100_000), at(10_000)])
    with pytest.raises(ValueError, match=r"serving_at_scale\[0\].recall_level: 9 is more than"):
        ModelConfig(serving_at_scale=[at(10_000).model_copy(update={"recall_level": 9})])


def test_a_tunes_record_takes_the_place_of_the_one_at_its_size_and_the_rest_stay_by_size():
    from grdr_plugin.model.config import ModelConfig, ServingRecord, TunedOn

    def at(videos, postings, beam=300):
        return ServingRecord(beam_size=beam, tuned_on=TunedOn(
            model="0" * 64, queries=1, videos=videos, postings=postings, target=0.98, target_candidate_recall=95.0,
            met=True, of_dense={}, candidate_recall=0))

    cfg = ModelConfig().with_tuned(at(1_000_000, 4_000_000), scaled=True).with_tuned(at(100_000, 400_000), scaled=True)
    assert [r.tuned_on.videos for r in cfg.serving_at_scale] == [100_000, 1_000_000]
    again = cfg.with_tuned(at(100_000, 390_000, beam=500), scaled=True)  # the same size tuned again: replaced
    assert [(r.tuned_on.postings, r.beam_size) for r in again.serving_at_scale] == [(390_000, 500), (4_000_000, 300)]
    # the dataset's own catalog: `serving`, and a record of a size no larger than it is dropped
    base = again.with_tuned(at(200_000, 800_000, beam=1000), scaled=False)
    assert base.serving.beam_size == 1000 and [r.tuned_on.videos for r in base.serving_at_scale] == [1_000_000]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("torch")
    from tests.support.tiny_model import build_tiny_model

    folder = tmp_path_factory.mktemp("model")
    build_tiny_model(folder)  # the synthetic datasets' shapes (make_dataset)
    return folder


@pytest.fixture
def holdout_model(tiny_model, tmp_path):
    import shutil

    from grdr_plugin.validation import HoldoutSpec, save_spec

    folder = shutil.copytree(tiny_model, tmp_path / "m")
    save_spec(folder, HoldoutSpec(fraction=0.25))
    return folder


def test_grdr_tune_records_the_choice_which_eval_then_serves_with(holdout_model, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    from grdr_plugin.model.artifacts import compute_fingerprint

    data = make_dataset(tmp_path / "d", n_videos=40, caps_per_video=6, unseen=8)
    run = CliRunner().invoke
    before = read_config(holdout_model)
    dry = run(app, ["tune", "--dataset", str(data), "--model", str(holdout_model), "--beam", "7", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert read_config(holdout_model).serving == before.serving  # --dry-run writes nothing
    res = run(app, ["tune", "--dataset", str(data), "--model", str(holdout_model), "--beam", "7", "--beam", "3",
                    "--share", "0.05", "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output.strip().splitlines()[-1])
    assert {r["beam"] for r in result["grid"]} == {3, 7} and "chosen: level" in res.output
    after = read_config(holdout_model)
    assert after.serving.model_dump() == result["chosen"] and after.serving.beam_size in (3, 7)
    assert after.serving.tuned_on.model == before.fingerprint
    # tuning changes no ID: the fingerprint (and so every index the model built) stays valid
    assert after.fingerprint == before.fingerprint == compute_fingerprint(holdout_model)
    ev = run(app, ["eval", "--dataset", str(data), "--model", str(holdout_model), "--mode", "grdr", "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.output.strip().splitlines()[-1])["grdr"]["beam"] == after.serving.beam_size


def test_grdr_tune_scores_over_the_catalog_grown_to_the_size_it_will_serve(holdout_model, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    data = make_dataset(tmp_path / "d", n_videos=40, caps_per_video=6, unseen=8)
    run = CliRunner().invoke
    base = ["tune", "--dataset", str(data), "--model", str(holdout_model), "--beam", "7", "--json"]
    own = json.loads(run(app, [*base, "--dry-run"]).output.strip().splitlines()[-1])
    res = run(app, [*base, "--scale", "400"])
    assert res.exit_code == 0, res.output
    grown = json.loads(res.output.strip().splitlines()[-1])
    assert "over 400 videos, grown from 40 by noisy copies" in res.output
    # the same validation queries, over ten times the videos: more postings, and the copies compete with them
    assert grown["queries"] == own["queries"] and (own["videos"], grown["videos"]) == (40, 400)
    assert grown["postings"] > 9 * own["postings"]
    # recorded beside the defaults for the dataset's own size, which still serve catalogs of that size
    after = read_config(holdout_model)
    assert [r.tuned_on.videos for r in after.serving_at_scale] == [400]
    assert after.serving_at_scale[0].tuned_on.postings == grown["postings"]
    assert after.serving_for(own["postings"]) is after.serving
    assert after.serving_for(grown["postings"]) == after.serving_at_scale[0]
    assert run(app, [*base, "--scale", "200"]).exit_code == 0  # another size: kept by size
    assert run(app, [*base, "--scale", "400"]).exit_code == 0  # the same size again: in place of the first
    assert [r.tuned_on.videos for r in read_config(holdout_model).serving_at_scale] == [200, 400]
    refused = run(app, [*base, "--scale", "40"])
    assert refused.exit_code == 2 and "--scale: 40 is not more than the dataset's 40 videos" in refused.output


@pytest.mark.parametrize("args, message", [
    (["--beam", "0"], "beam_size: must be between 1 and 3000"),
    (["--share", "1.5"], "--share: each must be in (0, 1]"),
    (["--target", "0"], "--target: a share in (0, 1]"),
])
def test_grdr_tune_refuses_bad_flags_naming_them(holdout_model, tmp_path, args, message):
    from typer.testing import CliRunner

    from cli.main import app

    data = make_dataset(tmp_path / "d")
    res = CliRunner().invoke(app, ["tune", "--dataset", str(data), "--model", str(holdout_model), *args])
    assert res.exit_code != 0 and message in res.output


def test_grdr_tune_needs_a_validation_split_of_a_model_shaped_alike(tiny_model, holdout_model, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from cli.main import app
    from grdr_plugin.model.artifacts import write_config

    data = make_dataset(tmp_path / "d")
    run = CliRunner().invoke
    plain = run(app, ["tune", "--dataset", str(data), "--model", str(tiny_model)])
    assert plain.exit_code == 2 and "--model: " in plain.output and "trained without --holdout" in plain.output
    other = shutil.copytree(holdout_model, tmp_path / "other")
    write_config(other, read_config(other).model_copy(update={"codebook_size": 16}))
    res = run(app, ["tune", "--dataset", str(data), "--model", str(tiny_model), "--validation-model", str(other)])
    assert res.exit_code == 2 and "codebook_size 16 != 8" in res.output


def test_the_recall_budget_sweep_recalls_at_the_level_asked(holdout_model, tmp_path):
    from bench.recall_budget import run as sweep_budgets

    data = make_dataset(tmp_path / "d", n_videos=40, caps_per_video=6, unseen=8)
    levels = read_config(holdout_model).levels
    at_prefixes = sweep_budgets(data, holdout_model, scales=[40], budgets=[5, 20], beam=7, level=levels - 1)
    rows = at_prefixes["scales"][0]["rows"]
    assert at_prefixes["recall_level"] == levels - 1 and {r["recall_level"] for r in rows} == {levels - 1}
    assert {r["max_pool"] for r in rows} >= {5, 20}
    whole = sweep_budgets(data, holdout_model, scales=[40], budgets=[5], beam=7)
    assert whole["recall_level"] == levels
    served = sweep_budgets(data, holdout_model, scales=[40], budgets=[5], beam=7, served_by=holdout_model)
    scale = served["scales"][0]
    marked = [r["max_pool"] for r in scale["rows"] if r["default"]]
    assert marked == [read_config(holdout_model).budget_rule().budget(scale["postings"])]
    # each budget's share of dense's R@10 is printed with its standard error
    from bench.recall_budget import table
    assert all(f"± {r['of_dense_se']['R@10']:.1f} |" in table(served) for r in scale["rows"])
    with pytest.raises(SystemExit, match="--level"):
        sweep_budgets(data, holdout_model, scales=[40], budgets=[5], beam=7, level=levels + 1)
