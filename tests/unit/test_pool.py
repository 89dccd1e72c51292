import math

import numpy as np
import pytest

from grdr_plugin.pool import (
    DEFAULT_MAX_BUDGET,
    MAX_POOL,
    MIN_POOL,
    MIN_POOL_VIDEOS,
    SIZE_PENALTY,
    Band,
    BudgetRule,
    budget_ids,
    check_max_pool,
    default_max_pool,
    pool_ids,
)


def test_budget_takes_whole_ids_best_first_while_their_counts_fit():
    assert budget_ids([100, 150, 50, 10], 300) == 3  # 100 + 150 + 50 = 300 fits; + 10 would not
    assert budget_ids([100, 150, 60, 10], 300) == 2  # the third would pass 300: it and every later ID wait
    assert budget_ids([5, 5], 1000) == 2  # every decoded ID when they all fit


def test_budget_always_takes_the_first_id_even_a_crowded_one():
    assert budget_ids([5000, 1], 300) == 1
    assert budget_ids(np.array([], dtype=np.int64), 300) == 0


def test_ids_are_taken_until_they_reach_the_minimum_pool_whatever_the_budget():
    assert MIN_POOL_VIDEOS == 10
    assert budget_ids([4, 200, 1], 100) == 2  # 4 videos alone would leave k=10 to widening: the crowded one too
    assert budget_ids([4, 3, 2, 1, 7], 5) == 4  # 4+3+2+1 = 10: reached at the fourth, the budget long passed
    assert budget_ids([4, 3, 3, 50], 5) == 3  # 4+3+3 = 10 reached
    assert budget_ids([1, 2], 5) == 2  # every decoded ID when they hold fewer


def test_default_budget_is_a_share_of_the_catalog_between_floor_and_ceiling():
    assert default_max_pool(0) == MIN_POOL
    assert default_max_pool(3_663) == MIN_POOL == 1000  # msrvtt's 1k videos
    assert default_max_pool(382_827) == 9_571  # msrvtt grown to 100k: a fortieth of its postings
    assert default_max_pool(3_656_998) == 91_425  # msrvtt grown to 1M: still the share
    assert default_max_pool(10**9) == DEFAULT_MAX_BUDGET == MAX_POOL  # the ceiling: what one query may recall


def test_budget_out_of_bounds_is_refused_naming_the_field():
    assert check_max_pool(MAX_POOL) == MAX_POOL
    for bad in (0, MAX_POOL + 1):
        with pytest.raises(ValueError, match="max_pool"):
            check_max_pool(bad)


def test_after_the_best_ids_take_their_turn_by_score_less_a_share_of_their_log_count():
    assert SIZE_PENALTY == 0.75
    scores = np.log([0.5, 0.3, 0.2])  # the decoder's order
    counts = np.array([40, 100, 25])  # after the best, turns: 0.3 / 100 ** 0.75 < 0.2 / 25 ** 0.75
    assert pool_ids(scores, counts, 1000).tolist() == [0, 2, 1]  # all fit: the smaller, likelier-per-video next
    assert pool_ids(scores, counts, 100).tolist() == [0, 2]  # 40 + 25 fit; 100 more would not
    assert pool_ids(scores, counts, 100, size_penalty=0).tolist() == [0]  # the decoder's order: 40 + 100 would not
    assert pool_ids(scores, [10, 10, 10], 1000).tolist() == [0, 1, 2]  # equal counts keep the decoder's order


def test_the_best_id_goes_first_whatever_its_size():
    # a budget thinner than the IDs are crowded: the best alone, not the small ones behind it
    assert pool_ids(np.log([0.5, 0.3, 0.2]), np.array([400, 100, 25]), 200).tolist() == [0]


def test_a_stale_zero_count_is_taken_like_a_single_video():
    assert pool_ids(np.array([-1.0, -1.0, -1.0]), np.array([5, 0, 1]), 10).tolist() == [0, 1, 2]  # ties: in order
    assert pool_ids(np.array([], dtype=np.float32), np.array([], dtype=np.int64), 10).tolist() == []


def test_one_band_is_the_share_between_floor_and_ceiling_at_every_size():
    rule = BudgetRule((Band(0, 0.05),))
    for postings in (0, 3_653, 382_400, 3_824_280, 10_000_000):
        assert rule.budget(postings) == default_max_pool(postings, 0.05)
    assert BudgetRule().budget(382_400) == default_max_pool(382_400)  # the pool rule's share, untuned
    assert rule.share_at(382_400) == 0.05


def test_between_two_tuned_sizes_the_budget_lies_on_the_line_between_theirs_in_log_log():
    small, large = Band(400_000, 0.05, 100_000), Band(4_000_000, 0.015, 1_000_000)  # budgets 20,000 and 60,000
    rule = BudgetRule((small, large))
    assert (rule.budget(400_000), rule.budget(4_000_000)) == (20_000, 60_000)
    assert rule.budget(1_264_911) == pytest.approx(math.sqrt(20_000 * 60_000), abs=1)  # halfway in log size
    assert 20_000 < rule.budget(1_000_000) < 60_000
    # outside the tuned sizes, the nearest band's share: a catalog grown past 1M keeps 1.5 %, a small one 5 %
    assert (rule.budget(6_000_000), rule.budget(40_000)) == (90_000, 2_000)
    assert rule.wanted(20_000_000) == 300_000 and rule.budget(20_000_000) == DEFAULT_MAX_BUDGET
    assert [rule.nearest(p) for p in (40_000, 1_200_000, 1_300_000, 9_000_000)] == [0, 0, 1, 1]


def test_a_band_of_unknown_size_serves_the_catalogs_below_the_first_known_one():
    rule = BudgetRule((Band(0, 0.025), Band(400_000, 0.05)))
    assert (rule.nearest(399_999), rule.nearest(400_000)) == (0, 1)
    assert (rule.budget(399_999), rule.budget(500_000)) == (10_000, 25_000)


def test_bands_must_come_by_size_each_once():
    for bands in ((), (Band(400_000, 0.05), Band(40_000, 0.1)), (Band(40_000, 0.05), Band(40_000, 0.1))):
        with pytest.raises(ValueError, match="bands: one or more, by distinct postings"):
            BudgetRule(bands)
