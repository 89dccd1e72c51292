"""Constrained beam search never emits an ID outside the valid set."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from grdr_plugin.decoding import InvertedIndex, constrained_beam_search, prefix_tables
from grdr_plugin.model.ids import encode_prefix, format_id, parse_id


def _valid_set(ids: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(c) for c in row) for row in ids}


def test_id_format_roundtrip():
    assert format_id([12, 201, 7]) == "12-201-7"
    assert parse_id("12-201-7") == [12, 201, 7]
    with pytest.raises(ValueError):
        parse_id("12-x-7")
    assert encode_prefix(np.array([[1, 2, 3]]), 10).tolist() == [123]


@pytest.mark.parametrize("adversary", ["invalid_mass", "neg_inf", "random"])
def test_never_emits_invalid_ids(adversary):
    rng = np.random.default_rng(0)
    C, L, Q = 8, 3, 5
    ids = np.unique(rng.integers(0, C, size=(20, L)), axis=0)
    tables = prefix_tables(ids, C)
    valid = _valid_set(ids)

    def step(q, prefix):
        t = prefix.shape[1]
        out = np.full((len(q), C), -50.0)
        if adversary == "random":
            return rng.standard_normal((len(q), C))
        # put all mass on codes that are NOT valid continuations
        for r in range(len(q)):
            for c in range(C):
                key = int(encode_prefix(np.r_[prefix[r], c][None], C)[0])
                if key not in set(tables[t].tolist()):
                    out[r, c] = 0.0
                elif adversary == "neg_inf":
                    out[r, c] = -np.inf
        return out

    codes, scores = constrained_beam_search(step, Q, L, C, tables, beam_size=6)
    assert codes.shape == (Q, 6, L) and scores.shape == (Q, 6)
    for q in range(Q):
        for b in range(6):
            if np.isfinite(scores[q, b]):
                assert tuple(codes[q, b]) in valid
            else:
                assert (codes[q, b] == -1).all()
        finite = scores[q][np.isfinite(scores[q])]
        assert np.all(np.diff(finite) <= 1e-6)  # best first


def test_fewer_valid_ids_than_beams_is_padded():
    C, L = 4, 3
    ids = np.array([[0, 1, 2], [3, 3, 3]])
    tables = prefix_tables(ids, C)
    codes, scores = constrained_beam_search(lambda q, p: np.zeros((len(q), C)), 2, L, C, tables, beam_size=5)
    assert np.isfinite(scores).sum(axis=1).tolist() == [2, 2]
    got = {tuple(c) for c in codes[0][np.isfinite(scores[0])]}
    assert got == {(0, 1, 2), (3, 3, 3)}
    assert (codes[0][~np.isfinite(scores[0])] == -1).all()


def test_equal_scores_keep_the_order_of_their_beams_and_codes():
    """Ties are ranked the same way every time: by parent beam, then code, so a batch and its queries one by
    one decode the same IDs."""
    C, L = 4, 2
    ids = np.array([[a, b] for a in range(C) for b in range(C) if (a + b) % 2 == 0])
    tables = prefix_tables(ids, C)
    flat = lambda q, p: np.zeros((len(q), C))  # noqa: E731
    codes, scores = constrained_beam_search(flat, 3, L, C, tables, beam_size=5)
    assert codes[0].tolist() == [[0, 0], [0, 2], [1, 1], [1, 3], [2, 0]]
    assert (codes == codes[0]).all() and np.isfinite(scores).all()
    one, _ = constrained_beam_search(flat, 1, L, C, tables, beam_size=5)
    assert one[0].tolist() == codes[1].tolist()
    # a tie across the beam's edge keeps the first of the tied candidates: of codes 0, 2, 4, 6 (all -1), 0 and 2
    alternating = lambda q, p: np.tile(np.arange(8) % 2 - 1.0, (len(q), 1))  # noqa: E731
    edge, _ = constrained_beam_search(alternating, 1, 1, 8, prefix_tables(np.arange(8)[:, None], 8), beam_size=6)
    assert edge[0, :, 0].tolist() == [1, 3, 5, 7, 0, 2]


def test_exhaustive_beam_finds_best_valid_id():
    """With a beam as wide as the ID set, the result is the exact arg-max over valid IDs."""
    rng = np.random.default_rng(1)
    C, L = 5, 3
    ids = np.unique(rng.integers(0, C, size=(30, L)), axis=0)
    tables = prefix_tables(ids, C)
    table = rng.standard_normal((L, C))  # position-dependent, prefix-independent scores

    def step(q, prefix):
        return np.tile(table[prefix.shape[1]], (len(q), 1))

    codes, scores = constrained_beam_search(step, 1, L, C, tables, beam_size=len(ids))
    best = max(itertools.chain(ids.tolist()), key=lambda i: sum(table[level, c] for level, c in enumerate(i)))
    assert codes[0, 0].tolist() == best


def test_inverted_index_pool_takes_whole_ids_within_the_budget():
    video_codes = np.array([[[0, 0, 0], [1, 1, 1]], [[1, 1, 1], [2, 2, 2]], [[2, 2, 2], [0, 0, 1]]])
    inv = InvertedIndex(video_codes, 4)
    assert inv.postings == 6
    ids = np.array([[2, 2, 2], [1, 1, 1], [0, 0, 0]])  # 2, 2 and 1 videos
    assert inv.lookup_pool(ids, np.zeros(3), 10).tolist() == [0, 1, 2]
    # 5 postings in all, under MIN_POOL_VIDEOS: every decoded ID, whatever the budget
    assert inv.lookup_pool(ids, np.zeros(3), 1).tolist() == [0, 1, 2]
    assert inv.lookup_pool(ids, np.array([0, -np.inf, -np.inf]), 10).tolist() == [1, 2]
    assert inv.lookup_pool(ids[2:], np.zeros(1), 10).tolist() == [0]


def test_inverted_index_pool_stops_at_the_budget_once_the_minimum_is_reached():
    # 24 videos: IDs [0,0,0] (12 videos), [1,1,1] (6), [2,2,2] (6)
    video_codes = np.array([[[v // 12 if v < 12 else 1 + (v - 12) // 6] * 3] for v in range(24)])
    inv = InvertedIndex(video_codes, 4)
    ids = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]])
    scores = np.array([0.0, -1.0, -2.0])  # far enough apart that the counts do not reorder them
    assert inv.lookup_pool(ids, scores, 18).tolist() == list(range(18))  # 12 + 6 fit; + 6 would not
    assert inv.lookup_pool(ids, scores, 5).tolist() == list(range(12))  # the first ID whole, however full
    # after the best, at equal scores the smaller IDs go first (grdr_plugin.pool.pool_ids): 6 + 6 fit 18, 12 more
    # would not
    assert inv.lookup_pool(ids[[1, 0, 2]], np.zeros(3), 18).tolist() == list(range(12, 24))


def test_inverted_index_counts_a_video_once_per_id():
    video_codes = np.array([[[1, 1, 1], [1, 1, 1]], [[1, 1, 1], [2, 2, 2]]])  # video 0 has one ID twice
    inv = InvertedIndex(video_codes, 4)
    key = int(encode_prefix(np.array([1, 1, 1]), 4))
    assert inv.keys.tolist().count(key) == 2
    assert inv.lookup_pool(np.array([[1, 1, 1]]), np.zeros(1), 2).tolist() == [0, 1]


def test_validity_masks_mark_each_valid_continuation():
    from grdr_plugin.decoding import validity_masks

    ids = np.array([[0, 1, 2], [0, 1, 3], [2, 0, 1]])
    masks = validity_masks(prefix_tables(ids, 4), 4)
    assert [m.shape for m in masks] == [(1, 4), (4, 4), (16, 4)]
    assert masks[0][0].tolist() == [True, False, True, False]
    assert masks[1][0].tolist() == [False, True, False, False] and masks[1][2].tolist() == [True, False, False, False]
    assert masks[2][1].tolist() == [False, False, True, True] and masks[2][8].tolist() == [False, True, False, False]
    assert [int(m.sum()) for m in masks] == [2, 2, 3]
