"""Shards and replicas of new indices (grdr_plugin.index layouts), the registry's replica rule, and the
through-OpenSearch eval's ranks and keys; nothing running (a stand-in client answers the two reads)."""
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from bench.evaluate import evaluate_through_opensearch, full_pool_k
from grdr_plugin import index as gi
from grdr_plugin.id_registry import REGISTRY_BODY
from grdr_plugin.settings import Settings, get_settings

SPEC = gi.IndexSpec(rerank_dim=8, fingerprint="shards-test-0001")


class FakeClient:
    """The two reads plan_layout makes: cluster health and an index's settings."""

    def __init__(self, data_nodes: int, existing: tuple[int, int] = (1, 0)):
        shards, replicas = existing
        self.cluster = SimpleNamespace(health=lambda: {"number_of_data_nodes": data_nodes})
        self.indices = SimpleNamespace(get=lambda index: {index: {"settings": {"index": {
            "number_of_shards": str(shards), "number_of_replicas": str(replicas)}}}})


@pytest.fixture
def clean_env(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("GRDR_"):
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.mark.parametrize("nodes,replicas", [(1, 0), (2, 1), (3, 1), (5, 1)])
def test_default_replicas_follow_the_data_nodes(nodes, replicas):
    layout = gi.choose_layout(1, None, nodes)
    assert (layout.shards, layout.replicas) == (1, replicas)
    assert f"{nodes} data node" in layout.describe()


def test_replicas_asked_beyond_the_nodes_are_kept_and_said_to_stay_yellow():
    layout = gi.choose_layout(3, 2, 1)
    assert (layout.shards, layout.replicas) == (3, 2)
    assert "yellow until the cluster has 3" in layout.describe()
    assert gi.choose_layout(3, 1, 3).describe() == "3 shards, 1 replica (as asked)"


def test_without_the_clusters_health_replicas_are_asked_for_or_none():
    unknown = gi.choose_layout(2, None, None)
    assert (unknown.shards, unknown.replicas) == (2, 0) and "GRDR_INDEX_REPLICAS" in unknown.describe()
    assert gi.choose_layout(2, 1, None).replicas == 1


def test_layout_bounds_are_openSearchs():
    with pytest.raises(ValidationError):
        gi.Layout(shards=0, replicas=0)
    with pytest.raises(ValidationError):
        gi.Layout(shards=gi.MAX_SHARDS + 1, replicas=0)
    with pytest.raises(ValidationError):
        gi.Layout(shards=1, replicas=-1)


def test_index_body_carries_the_layout():
    settings = gi.index_body(SPEC, shards=4, replicas=2)["settings"]["index"]
    assert (settings["number_of_shards"], settings["number_of_replicas"], settings["knn"]) == (4, 2, True)


def test_settings_default_and_environment(clean_env):
    s = Settings()
    assert (s.index_shards, s.index_replicas) == (1, None)
    clean_env.setenv("GRDR_INDEX_SHARDS", "3")
    clean_env.setenv("GRDR_INDEX_REPLICAS", "2")
    assert (Settings().index_shards, Settings().index_replicas) == (3, 2)
    clean_env.setenv("GRDR_INDEX_SHARDS", "0")
    with pytest.raises(ValidationError, match="GRDR_INDEX_SHARDS"):
        Settings()


def test_plan_layout_uses_settings_then_the_cluster(clean_env):
    assert gi.plan_layout(FakeClient(3)) == gi.choose_layout(1, None, 3)
    assert gi.plan_layout(FakeClient(1)).replicas == 0
    clean_env.setenv("GRDR_INDEX_SHARDS", "2")
    clean_env.setenv("GRDR_INDEX_REPLICAS", "0")
    get_settings.cache_clear()
    assert (gi.plan_layout(FakeClient(3)).shards, gi.plan_layout(FakeClient(3)).replicas) == (2, 0)
    assert (gi.plan_layout(FakeClient(3), 5, 1).shards, gi.plan_layout(FakeClient(3), 5, 1).replicas) == (5, 1)


def test_a_reindex_keeps_the_current_layout_unless_told(clean_env):
    client = FakeClient(3, existing=(3, 1))
    kept = gi.plan_layout(client, like="cat-v000001")
    assert (kept.shards, kept.replicas) == (3, 1)
    assert (gi.plan_layout(client, 6, None, like="cat-v000001").shards,
            gi.plan_layout(client, 6, None, like="cat-v000001").replicas) == (6, 1)
    assert gi.plan_layout(client, None, 0, like="cat-v000001").replicas == 0


def test_the_registry_gets_a_replica_wherever_a_second_data_node_exists():
    settings = REGISTRY_BODY["settings"]["index"]
    assert settings["auto_expand_replicas"] == "0-1" and "number_of_replicas" not in settings


class FakeSearcher:
    """Answers each query with fixed hits: query text -> (hit ids, pool size)."""

    def __init__(self, answers: dict[str, tuple[list[str], int]], max_pool: int = 4):
        self.answers = answers
        self.config = SimpleNamespace(max_pool=max_pool, beam_size=8)
        self.beam_size = lambda: 8
        self.recall_budget = lambda: max_pool
        self.runtime = SimpleNamespace(cfg=SimpleNamespace(levels=3))
        self.recall_level = lambda: 3
        self.asked: list[tuple[int, bool]] = []

    def search(self, text, k, hybrid, widen=True):
        self.asked.append((k, widen))
        ids, pool = self.answers[text]
        # "w..." videos stand for hits only a widening prefix recalled: a search that does not widen has none
        widening = [v for v in ids if v.startswith("w")]
        if not widen:
            ids, pool = [v for v in ids if v not in widening], pool - len(widening)
        hits = [SimpleNamespace(video_id=v, matched_id="1-2" if v.startswith("w") else "1-2-3") for v in ids[:k]]
        return SimpleNamespace(hits=hits, pool_size=pool,
                               timings_ms={"encode": 1.0, "decode": 2.0, "opensearch": 3.0, "total": 6.0})


def _dataset():
    """Three test queries: truth at rank 1, rank 3, and outside a 2-video pool."""
    return SimpleNamespace(
        name="tiny", n_videos=5, video_ids=["a", "b", "c", "d", "e"], query_video=np.array([0, 2, 4]),
        query_text=["q0", "q1", "q2"], video_split=np.array([True, True, True, False, False]),
        test_queries=lambda: np.array([0, 1, 2]))


def test_eval_through_opensearch_ranks_the_whole_pool_and_keeps_in_process_keys():
    searcher = FakeSearcher({"q0": (["a", "b", "c"], 3), "q1": (["a", "w1", "b", "c"], 4), "q2": (["a", "b", "w2"], 3)})
    res = evaluate_through_opensearch(_dataset(), searcher, k=full_pool_k(searcher))
    assert searcher.asked == [(4, False)] * 3  # the whole pool, not widened (in-process eval does not widen)
    grdr = res["grdr"]
    # ranks 1, 3 (no widened w1 ahead of it) and absent from a 2-video pool: recalled by no cutoff, ranked 3
    # (pool + 1) for MdR/MnR
    assert (grdr["R@1"], grdr["R@5"], grdr["MdR"], grdr["MnR"]) == (33.33, 66.67, 3.0, 2.33)
    assert (grdr["candidate_recall"], grdr["pool_mean"], grdr["max_pool"]) == (66.67, 2.7, 4)  # 3, 3, 2
    assert {"dataset", "queries", "videos", "grdr", "by_split", "grdr_seen", "grdr_unseen"} <= set(res)
    assert res["by_split"]["unseen"]["queries"] == 1 and res["grdr_unseen"]["candidate_recall"] == 0.0
    assert grdr["stages_ms"]["total"]["p50_ms"] == 6.0


def test_eval_k_is_capped_by_one_requests_size():
    from query.searcher import MAX_K

    assert full_pool_k(FakeSearcher({}, max_pool=MAX_K * 3)) == MAX_K
