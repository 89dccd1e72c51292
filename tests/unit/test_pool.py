import numpy as np
import pytest

from grdr_plugin.pool import (
    DEFAULT_MAX_BUDGET,
    MAX_POOL,
    MIN_POOL,
    MIN_POOL_VIDEOS,
    SIZE_PENALTY,
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
