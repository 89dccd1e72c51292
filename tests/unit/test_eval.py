"""Evaluation metrics and the in-process GRDR protocol with a fake backend (no torch)."""
from __future__ import annotations

import numpy as np

from grdr_plugin.data import load_dataset
from grdr_plugin.decoding import beam_search_by_steps
from grdr_plugin.evaluation import evaluate, rank_metrics
from grdr_plugin.model.config import ModelConfig
from grdr_plugin.model.torch_backend import Queries
from tests.unit.test_data import make_dataset


def test_rank_metrics():
    m = rank_metrics(np.array([1, 2, 6, 11]))
    assert m == {"R@1": 25.0, "R@5": 50.0, "R@10": 75.0, "MdR": 4.0, "MnR": 5.0}


class OracleBackend:
    """Video i has IDs derived from i; the decoder puts all mass on the ground truth's first ID."""

    def __init__(self, ds, gt_of_text):
        self.cfg = ModelConfig(views=2, levels=3, codebook_size=4, feature_dim=16, frames=3, rerank_dim=4)
        self.ds, self.gt_of_text = ds, gt_of_text
        n = ds.n_videos
        ids = [np.stack([[i % 4, (i // 4) % 4, v] for v in range(2)]) for i in range(n)]
        self.codes = np.stack(ids).astype(np.int64)

    def encode_videos(self, frames, pooled):
        vec = np.random.default_rng(0).standard_normal((len(pooled), 4)).astype(np.float32)
        self.vvec = vec / np.linalg.norm(vec, axis=1, keepdims=True)
        return self.codes, self.vvec

    def encode_queries(self, texts):
        gt = np.array([self.gt_of_text[t] for t in texts])
        return Queries(query_vec=self.vvec[gt], state=gt)

    def step_fn(self, q):
        def step(rows, prefix):
            want = self.codes[q.state[rows], 0, prefix.shape[1]]
            out = np.full((len(rows), 4), -20.0)
            out[np.arange(len(rows)), want] = 0.0
            return out
        return step

    def beam_search(self, q, valid_prefixes, beam_size, masks=None):
        return beam_search_by_steps(self, q, valid_prefixes, beam_size)


def test_evaluate_oracle(tmp_path):
    ds = load_dataset(make_dataset(tmp_path / "d"))
    gt_of_text = {t: int(v) for t, v in zip(ds.query_text, ds.query_video)}
    res = evaluate(ds, OracleBackend(ds, gt_of_text), beam=3, max_pool=5)
    assert res["queries"] == len(ds.test_queries()) and res["videos"] == 12
    assert res["grdr"]["candidate_recall"] == 100.0 and res["grdr"]["R@1"] == 100.0
    assert res["dense"]["R@1"] == 100.0
    assert res["grdr"]["pool_mean"] <= 5
    assert set(res["by_split"]) == {"seen", "unseen"} and res["grdr_unseen"]["R@10"] == 100.0
    assert res["grdr"]["recall_level"] == 3  # whole IDs: the model's default


def test_a_pool_recalled_at_a_shorter_level_holds_every_video_under_the_taken_prefixes(tmp_path):
    from grdr_plugin.evaluation import encode_catalog

    ds = load_dataset(make_dataset(tmp_path / "d"))
    backend = OracleBackend(ds, {t: int(v) for t, v in zip(ds.query_text, ds.query_video)})
    whole = evaluate(ds, backend, beam=1, max_pool=100)
    short = evaluate(ds, backend, beam=1, max_pool=100, recall_level=2)
    assert short["grdr"]["recall_level"] == 2 and short["grdr"]["candidate_recall"] == 100.0
    # one decoded prefix recalls every video under it: at least the videos of the one whole ID
    assert short["grdr"]["pool_mean"] >= whole["grdr"]["pool_mean"]
    catalog = encode_catalog(ds, backend)
    by_prefix = catalog.index_at(2)
    first = catalog.codes[0, 0, :2]
    pool = by_prefix.lookup_pool(first[None], np.zeros(1, np.float32), 100)
    assert set(pool) == {v for v in range(ds.n_videos) if (catalog.codes[v, :, :2] == first).all(1).any()}
    assert catalog.index_at(3) is catalog.index
