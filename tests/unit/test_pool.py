import numpy as np

from grdr_plugin.pool import pool_members, pool_order_key


def test_pool_orders_by_best_rank_then_dense_score():
    best_rank = np.array([2, 0, 1, 0, 2])
    cosine = np.array([0.9, 0.1, 0.5, 0.3, -0.2])
    assert pool_members(best_rank, 3, cosine, max_pool=10).tolist() == [3, 1, 2, 0, 4]


def test_cap_cuts_inside_an_id_keeping_its_best_dense_videos():
    best_rank = np.array([0, 0, 1, 1, 1])
    cosine = np.array([0.1, 0.2, 0.3, 0.9, 0.5])
    assert pool_members(best_rank, 2, cosine, max_pool=3).tolist() == [1, 0, 3]


def test_key_is_what_the_painless_script_returns():
    # (n - best) + (1 + cos) / 2, as float32: a video's rank always outweighs any cosine
    key = pool_order_key(np.array([0, 1, 1]), 2, np.array([-1.0, 1.0, 0.0]))
    assert key.dtype == np.float32 and key.tolist() == [2.0, 2.0, 1.5]
    assert pool_members(np.array([], dtype=np.int64), 0, np.array([]), 5).size == 0
