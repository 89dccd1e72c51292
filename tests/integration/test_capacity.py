"""The capacity report on the real node: `grdr index info --json` counts what the index holds, a crowded catalog
gets the warning with its fix, and GET /health carries the same report from the query process's trie snapshot."""
import json
import os
import subprocess
import sys
import uuid
from collections import Counter

import numpy as np
import pytest
from fastapi.testclient import TestClient

from grdr_plugin import index as gi
from grdr_plugin.capacity import RETUNE_GROWTH
from grdr_plugin.id_registry import REGISTRY_INDEX, publish_ids
from grdr_plugin.model.artifacts import read_config, write_config
from grdr_plugin.model.config import TunedOn
from grdr_plugin.pool import default_max_pool
from ingest.docs import build_sources
from ingest.indexer import RetryPolicy, bulk_index
from ingest.target import prepare_target
from query.api import create_app
from query.searcher import Searcher
from tests.conftest import TINY_SERVING

VIDEOS = 120
CROWD = 45  # videos whose first view shares one ID: more than POOL, so that ID is over-full
POOL = 30


def grdr(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))


@pytest.fixture(scope="module")
def catalog(client, tiny_model_dir):
    """A 2-shard catalog of the tiny model holding VIDEOS videos with random IDs, CROWD of them sharing "1-1-1"."""
    alias = f"test-capacity-{uuid.uuid4().hex[:8]}"
    target = prepare_target(client, alias, tiny_model_dir, shards=2, replicas=0)
    rng = np.random.default_rng(7)
    shape = (VIDEOS, TINY_SERVING["views"], 3)
    codes = rng.integers(0, TINY_SERVING["codebook_size"], size=shape)
    codes[:CROWD, 0] = 1
    vectors = rng.standard_normal((VIDEOS, TINY_SERVING["rerank_dim"])).astype(np.float32)
    sources, _ = build_sources([{"video_id": f"v{i}", "title": f"video {i}"} for i in range(VIDEOS)], codes, vectors)
    outcome = bulk_index(client, target.index, [f"v{i}" for i in range(VIDEOS)], sources, chunk_size=VIDEOS,
                         policy=RetryPolicy(max_retries=0, initial_s=0.1, max_s=0.1))
    assert len(outcome.created) == VIDEOS and not outcome.failed
    client.indices.refresh(index=target.index)
    yield alias
    gi.drop_index(client, alias)
    client.delete_by_query(index=REGISTRY_INDEX, body={"query": {"term": {"alias": alias}}}, ignore=[404], refresh=True)


def held_counts(client, alias: str) -> Counter:
    """Videos per ID as the documents themselves say (not through the aggregation the report uses)."""
    hits = client.search(index=alias, body={"size": VIDEOS, "_source": [gi.ID_FIELD]})["hits"]["hits"]
    assert len(hits) == VIDEOS
    return Counter(sid for h in hits for sid in h["_source"][gi.ID_FIELD])


def test_index_info_reports_what_the_index_holds_and_warns_when_ids_outgrow_the_pool(client, catalog):
    held = held_counts(client, catalog)
    counts = sorted(held.values())
    healthy = grdr("index", "info", catalog, "--json")
    assert healthy.returncode == 0 and healthy.stderr == ""
    cap = json.loads(healthy.stdout.strip().splitlines()[-1])["capacity"]
    assert (cap["videos"], cap["distinct_ids"], cap["postings"]) == (VIDEOS, len(held), sum(counts))
    assert (cap["views"], cap["levels"], cap["codebook_size"], cap["id_space"]) == (4, 3, 8, 512)
    assert cap["videos_per_id"] == {"p50": counts[(len(counts) - 1) // 2],
                                    "p99": counts[int(np.ceil(0.99 * len(counts))) - 1], "max": held["1-1-1"]}
    budget = default_max_pool(sum(counts))  # the catalog's default recall budget
    assert held["1-1-1"] >= CROWD and (cap["max_pool"], cap["crowded_ids"], cap["warning"]) == (budget, 0, None)

    crowded = grdr("index", "info", catalog, "--max-pool", POOL, "--json")
    cap = json.loads(crowded.stdout.strip().splitlines()[-1])["capacity"]
    over = {sid: n for sid, n in held.items() if n > POOL}
    assert cap["crowded_ids"] == len(over) >= 1
    assert cap["crowded_share"] == pytest.approx(sum(over.values()) / sum(counts))
    fix = f"grdr ingest --dataset DATASET --model MODEL_DIR --index {catalog} --reindex --wait"
    assert "outgrown its codebook" in cap["warning"] and fix in cap["warning"]
    assert "--codebook-size 16" in cap["warning"]  # 120 videos: the corpus rule's 16, twice the tiny model's 8

    table = grdr("index", "info", catalog, "--max-pool", POOL)
    assert table.returncode == 0
    said = " ".join(table.stdout.split())
    assert f"IDs over the budget ({POOL})" in said and f"max {held['1-1-1']}" in said
    assert fix in " ".join(table.stderr.split())  # the warning goes with the other warnings, to stderr


def test_index_info_measures_the_budget_against_the_model_that_serves_the_index(catalog, tiny_model_dir, tmp_path):
    """--model: the report reads the serving record (its budget share, the catalog size it was tuned on); the model
    of other IDs is refused by name. Only config.json is read, so a folder holding it stands for the model."""
    served = read_config(tiny_model_dir)
    tuned_on = VIDEOS // (RETUNE_GROWTH + 1)  # the catalog is more than RETUNE_GROWTH times that
    record = served.serving.model_copy(update={"pool_share": 0.5, "tuned_on": TunedOn(
        model=served.fingerprint, queries=1, videos=tuned_on, target=0.98, target_candidate_recall=95.0, met=True,
        of_dense={"R@1": 99.0, "R@5": 99.0, "R@10": 99.0}, candidate_recall=96.0)})
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    write_config(tuned, served.model_copy(update={"serving": record}))
    res = grdr("index", "info", catalog, "--model", tuned, "--json")
    assert res.returncode == 0, res.stderr
    cap = json.loads(res.stdout.strip().splitlines()[-1])["capacity"]
    assert (cap["pool_share"], cap["tuned_videos"]) == (0.5, tuned_on)
    assert cap["max_pool"] == default_max_pool(cap["postings"], 0.5)
    assert f"tuned on {tuned_on} videos" in cap["warning"] and f"--scale {VIDEOS}`" in cap["warning"]

    other = tmp_path / "other"
    other.mkdir()
    write_config(other, served.model_copy(update={"fingerprint": "0" * 64}))
    refused = grdr("index", "info", catalog, "--model", other)
    assert refused.returncode == 1 and "name the model that serves it" in " ".join(refused.stderr.split())


def test_health_carries_the_report_of_the_trie_snapshot(client, catalog, tiny_model_dir):
    searcher = Searcher(tiny_model_dir, catalog, client=client, max_pool=POOL, poll_interval_s=0).connect()
    api = TestClient(create_app(searcher))
    from_index = json.loads(grdr("index", "info", catalog, "--max-pool", POOL, "--json")
                            .stdout.strip().splitlines()[-1])["capacity"]
    health = api.get("/health").json()
    cap = health["capacity"]
    for key in ("videos", "distinct_ids", "postings", "videos_per_id", "crowded_ids", "crowded_share"):
        assert cap[key] == from_index[key], key
    assert cap["distinct_ids"] == health["ids"] and "outgrown its codebook" in cap["warning"]

    fresh = sorted({f"{a}-{b}-7" for a in range(8) for b in range(8)} - set(held_counts(client, catalog)))[:3]
    publish_ids(client, catalog, fresh)  # as an ingest batch publishes new IDs
    searcher.store.refresh(force=True)
    grown = api.get("/health").json()["capacity"]
    assert grown["distinct_ids"] == cap["distinct_ids"] + 3 and grown["postings"] == cap["postings"] + 3
