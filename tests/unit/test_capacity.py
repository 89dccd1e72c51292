"""The capacity report (grdr_plugin.capacity) from constructed per-ID video counts, its fix commands as the real
CLI parses them, and /health's copy of it, computed once per trie snapshot (query.catalog_capacity)."""
from __future__ import annotations

import re
import shlex
from types import SimpleNamespace

import marisa_trie
import numpy as np
import pytest
import typer
from fastapi.testclient import TestClient

from cli.main import app as grdr_app
from grdr_plugin.capacity import (
    CROWDED_WARN_SHARE,
    RETUNE_GROWTH,
    capacity_report,
    fix_commands,
    suggested_codebook_size,
)
from grdr_plugin.model.config import ModelConfig, ServingRecord, choose_codebook_size
from grdr_plugin.pool import DEFAULT_MAX_BUDGET, Band, BudgetRule
from grdr_plugin.settings import Settings
from query.api import create_app
from query.catalog_capacity import SnapshotCapacity, index_capacity, snapshot_counts
from query.http_settings import HttpSettings
from query.trie_store import TrieSnapshot

SHAPE = dict(views=4, levels=3, codebook_size=64)


def report(counts, *, videos: int, max_pool: int = 300, mode="catalog", **shape):
    return capacity_report(np.array(counts), videos=videos, max_pool=max_pool, index="videos", mode=mode,
                           **{**SHAPE, **shape})


def test_a_healthy_catalog_reports_its_spread_and_no_warning():
    counts = [1] * 60 + [2] * 30 + [5] * 9 + [40]  # 100 IDs, 205 (video, ID) pairs
    r = report(counts, videos=80)
    assert (r.distinct_ids, r.id_space, r.postings, r.videos) == (100, 64**3, 60 + 60 + 45 + 40, 80)
    assert r.occupancy == pytest.approx(100 / 64**3)
    assert (r.videos_per_id.p50, r.videos_per_id.p99, r.videos_per_id.max) == (1, 5, 40)  # observed counts
    assert (r.crowded_ids, r.crowded_share, r.warning) == (0, 0.0, None)


def test_a_crowded_catalog_names_its_over_full_ids_and_the_commands_that_fix_them():
    counts = [1] * 900 + [350, 301, 300]  # two IDs hold more than the pool takes; 300 exactly fits
    r = report(counts, videos=500)
    assert (r.crowded_ids, r.videos_per_id.max) == (2, 350)
    assert r.crowded_share == pytest.approx(651 / (900 + 951))
    bigger = suggested_codebook_size(500, 4, 3, 64)
    assert bigger == 128  # the corpus rule says 64 for 500 videos: the retokenize at least doubles C
    assert "35.17% of its (video, ID) pairs sit in 2 IDs holding more than 300 videos" in r.warning
    assert "the fullest holds 350" in r.warning and "C=64 -> 128" in r.warning
    retokenize, reindex = re.findall(r"`([^`]+)`", r.warning)[:2]
    assert retokenize == ("grdr retokenize --model CURRENT_MODEL_DIR --dataset DATASET --out MODEL_DIR "
                          "--codebook-size 128")
    assert reindex == "grdr ingest --dataset DATASET --model MODEL_DIR --index videos --reindex --wait"
    assert "--max-pool" in r.warning  # the stopgap until the retokenize


def test_the_warning_starts_at_its_threshold():
    # one over-full ID of 301 videos among many single-video IDs, its share just under and at the threshold; a
    # model recalling 0.05 % of the postings, so that a budget of 300 covers its share
    share = dict(rule=BudgetRule((Band(0, 0.0005),)))
    under = int(301 / CROWDED_WARN_SHARE) - 301 + 1
    assert report([301] + [1] * under, videos=under, **share).warning is None
    at = int(301 / CROWDED_WARN_SHARE) - 301
    assert report([301] + [1] * at, videos=at, **share).crowded_share == pytest.approx(CROWDED_WARN_SHARE)
    assert report([301] + [1] * at, videos=at, **share).warning is not None
    assert report([301] + [1] * at, videos=at, max_pool=301, **share).warning is None  # the IDs fit a larger pool


def test_an_empty_index_reports_zeros():
    r = report([], videos=0)
    assert (r.distinct_ids, r.postings, r.occupancy, r.crowded_ids, r.crowded_share, r.warning) == (0, 0, 0, 0, 0, None)
    assert r.videos_per_id.model_dump() == {"p50": 0, "p99": 0, "max": 0}


def test_an_id_without_videos_is_refused_by_name():
    with pytest.raises(ValueError, match="counts: every ID listed must hold at least one video"):
        report([3, 0], videos=3)


def test_the_suggested_codebook_follows_the_corpus_rule_when_it_asks_for_more():
    assert suggested_codebook_size(1_000_000, 4, 3, 64) == choose_codebook_size(1_000_000, 4, 3) == 256
    assert suggested_codebook_size(1_000, 4, 3, 64) == 128


@pytest.mark.parametrize("mode, refits", [("catalog", ["ingest"]), ("attached", ["backfill"]),
                                          (None, ["ingest", "backfill"])])
def test_every_fix_command_parses_under_the_real_cli(mode, refits):
    """The warning's commands are real: each one's flags parse under `grdr`'s own command (nothing runs)."""
    commands = fix_commands("videos", 128, mode)
    assert [shlex.split(c)[1] for c in commands] == ["retokenize", *refits]
    root = typer.main.get_command(grdr_app)
    for command in commands:
        name, *args = shlex.split(command)[1:]
        sub = root.commands[name]
        with sub.make_context(name, list(args)) as ctx:
            assert ctx.params["model" if name != "retokenize" else "out"].name == "MODEL_DIR"


def test_index_capacity_of_an_index_without_the_models_id_shape_is_unknown():
    assert index_capacity(None, "videos", "videos-v000001", {}, 300) is None  # nothing read


# ---- /health: the capacity of the query process's trie snapshot ----

def snapshot(counts: dict[str, int], delta=()) -> TrieSnapshot:
    trie = marisa_trie.Trie(counts)
    by_key = np.zeros(len(trie), dtype=np.int64)
    for sid, n in counts.items():
        by_key[trie.key_id(sid)] = n
    return TrieSnapshot.of(trie, by_key, dict.fromkeys(delta, 1), levels=3, codebook_size=8)


class Store:
    def __init__(self, snap: TrieSnapshot, videos: int) -> None:
        self.snapshot, self.base_videos = snap, videos

    def __len__(self) -> int:
        return len(self.snapshot)


def test_snapshot_counts_are_the_base_counts_and_one_per_published_id():
    snap = snapshot({"1-2-3": 4, "1-2-4": 2}, delta=["7-7-7"])
    assert sorted(snapshot_counts(snap).tolist()) == [1, 2, 4]


def test_the_snapshot_report_is_computed_once_per_snapshot():
    store = Store(snapshot({"1-2-3": 4, "1-2-4": 2}), videos=5)
    cache = SnapshotCapacity()
    shape = dict(alias="videos", views=4, levels=3, codebook_size=8, max_pool=3)
    first = cache.report(store, **shape)
    assert cache.report(store, **shape) is first  # the same snapshot: not recomputed
    assert (first.distinct_ids, first.crowded_ids, first.videos) == (2, 1, 5)
    store.snapshot = snapshot({"1-2-3": 4, "1-2-4": 2}, delta=["7-7-7"])  # a refresh published new IDs
    second = cache.report(store, **shape)
    assert second is not first and second.distinct_ids == 3 and second.postings == 7


def test_health_carries_the_capacity_of_the_current_snapshot():
    counts = {"1-2-3": 400, "1-2-4": 2, "5-0-1": 1}
    searcher = SimpleNamespace(index="videos", native_hybrid=False, store=Store(snapshot(counts), videos=401),
                               recall_budget=lambda: 300,  # the searcher's budget is what IDs are measured by
                               runtime=SimpleNamespace(fingerprint="f" * 64, cfg=ModelConfig(
                                   views=4, levels=3, codebook_size=8, serving=ServingRecord(pool_share=0.5))))
    api = TestClient(create_app(searcher, settings=Settings(), http=HttpSettings()))
    health = api.get("/health").json()
    capacity = health["capacity"]
    assert health["ids"] == capacity["distinct_ids"] == 3
    assert (capacity["videos"], capacity["postings"], capacity["crowded_ids"]) == (401, 403, 1)
    assert capacity["videos_per_id"] == {"p50": 2, "p99": 400, "max": 400}
    # the budget is measured against the served model's share: 300 of 403 pairs is more than its 50 %
    assert (capacity["pool_share"], capacity["budget_share"]) == (0.5, pytest.approx(300 / 403))
    assert "covers" not in capacity["warning"]
    # a query process does not know whether grdr writes the index or is attached to it: both refits are named
    assert "grdr ingest --dataset DATASET --model MODEL_DIR --index videos --reindex --wait" in capacity["warning"]
    assert "grdr backfill --index videos --model MODEL_DIR --dataset DATASET --reindex --wait" in capacity["warning"]


# ---- the budget against the model's share, and the catalog against the size its defaults were tuned on ----

def test_a_budget_under_the_models_share_says_so_and_what_restores_it():
    counts = [4] * 250_000  # 1,000,000 postings: the 2.5 % share is a budget of 25,000
    assert report(counts, videos=250_000, max_pool=None).max_pool == 25_000
    thin = report(counts, videos=250_000, max_pool=10_000)
    assert (thin.pool_share, thin.budget_share, thin.crowded_ids) == (0.025, 0.01, 0)
    assert "covers 1.00% of the catalog's (video, ID) pairs, under the 2.5%" in thin.warning
    assert "A budget of 25,000 (`--max-pool` of grdr serve) restores the share" in thin.warning
    assert report(counts, videos=250_000, max_pool=25_000).warning is None  # the share, asked for
    # a model tuned to recall at a smaller share is measured against its own
    assert report(counts, videos=250_000, max_pool=10_000, rule=BudgetRule((Band(0, 0.01),))).warning is None
    # past the ceiling no budget restores it: the report says which comes closest
    huge = report([4] * 2_500_000, videos=2_500_000, max_pool=None)
    assert (huge.max_pool, huge.budget_share) == (DEFAULT_MAX_BUDGET, DEFAULT_MAX_BUDGET / 10_000_000)
    assert "(the default budget's ceiling)" in huge.warning and "The share needs 250,000" in huge.warning
    assert f"`--max-pool {DEFAULT_MAX_BUDGET}` comes closest" in huge.warning


def test_a_catalog_many_times_the_size_the_model_was_tuned_on_is_told_to_tune_again():
    kw = dict(videos=50_000, max_pool=None)

    def tuned_on(videos):
        return BudgetRule((Band(0, 0.025, videos),))

    grown = report([2] * 20_000, rule=tuned_on(50_000 // RETUNE_GROWTH - 1), **kw)
    assert "tuned on 4,999 videos and the catalog holds 50,000" in grown.warning
    assert "grdr tune --dataset DATASET --model MODEL_DIR --validation-model M_VAL --scale 50000" in grown.warning
    assert grown.tuned_videos == 4_999
    tune = next(c for c in re.findall(r"`([^`]+)`", grown.warning) if c.startswith("grdr tune"))
    name, *args = shlex.split(tune)[1:]
    with typer.main.get_command(grdr_app).commands[name].make_context(name, list(args)) as ctx:
        assert ctx.params["scale"] == 50_000  # the command parses under the real CLI (nothing runs)
    assert report([2] * 20_000, rule=tuned_on(50_000 // RETUNE_GROWTH), **kw).warning is None
    assert report([2] * 20_000, rule=tuned_on(None), **kw).warning is None  # untuned: nothing to compare
