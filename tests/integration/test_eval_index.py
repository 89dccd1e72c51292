"""Shards and replicas of new catalog indices, and `grdr eval --index` (evaluation through OpenSearch), against
the real node, Redis and a real Celery worker."""
import json
import os
import subprocess
import sys

import pytest

from grdr_plugin import index as gi
from grdr_plugin.data import load_dataset
from grdr_plugin.evaluation import evaluate
from grdr_plugin.runtime import ModelRuntime
from ingest.target import prepare_target
from tests.conftest import shared_dataset
from tests.support.catalogs import ingested

MSRVTT = shared_dataset("msrvtt")
BEAM, POOL, QUERIES = 8, 40, 60


def grdr(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def test_index_create_takes_shards_and_replicas_and_says_how_they_were_chosen(client, alias, tiny_model_dir):
    expected = gi.choose_layout(2, None, gi.data_nodes(client))
    made = grdr("index", "create", "--model", tiny_model_dir, "--index", alias, "--shards", "2")
    assert made.returncode == 0, made.stderr
    assert expected.describe() in " ".join(made.stdout.split())
    info = json.loads(grdr("index", "info", alias, "--json").stdout.strip().splitlines()[-1])
    assert (info["shards"], info["replicas"]) == (2, expected.replicas)
    assert info["health"] == client.cluster.health(index=info["index"])["status"]
    refused = grdr("index", "create", "--model", tiny_model_dir, "--index", alias, "--shards", "0")
    assert refused.returncode == 2 and "--shards" in refused.stderr


def test_a_reindex_keeps_the_layout_or_takes_the_one_asked_for(client, ingest_alias, tiny_model_dir):
    first = prepare_target(client, ingest_alias, tiny_model_dir, shards=2, replicas=0)
    assert gi.layout_of(client, first.index).shards == 2
    kept = prepare_target(client, ingest_alias, tiny_model_dir, reindex=True)
    assert (gi.layout_of(client, kept.index).shards, gi.layout_of(client, kept.index).replicas) == (2, 0)
    moved = prepare_target(client, ingest_alias, tiny_model_dir, reindex=True, shards=3)
    assert (gi.layout_of(client, moved.index).shards, gi.layout_of(client, moved.index).replicas) == (3, 0)
    with pytest.raises(ValueError, match="add --reindex"):  # only a new index can take another layout
        prepare_target(client, ingest_alias, tiny_model_dir, shards=3)
    assert prepare_target(client, ingest_alias, tiny_model_dir, shards=2).index == first.index  # same: no change


@pytest.fixture(scope="module")
def catalog(client, tiny_model_dir, queue):
    """msrvtt (1,000 videos) ingested by the module's worker into a 1-shard index; its alias."""
    with ingested(client, MSRVTT, tiny_model_dir, queue, "test-eval") as alias:
        yield alias


def test_eval_through_opensearch_equals_in_process_eval(catalog, tiny_model_dir):
    out = grdr("eval", "--index", catalog, "--dataset", MSRVTT, "--model", tiny_model_dir, "--beam", BEAM,
               "--max-pool", POOL, "--limit", QUERIES, "--threads", 1, "--json")
    assert out.returncode == 0, out.stderr
    through = json.loads(out.stdout.strip().splitlines()[-1])
    ds = load_dataset(MSRVTT)
    inproc = evaluate(ds, ModelRuntime(tiny_model_dir, threads=1), ("grdr",), beam=BEAM, max_pool=POOL,
                      query_rows=ds.test_queries()[:QUERIES])
    assert (through["dataset"], through["queries"], through["videos"]) == (inproc["dataset"], QUERIES, 1000)
    assert set(inproc["grdr"]) <= set(through["grdr"]) and set(inproc) <= set(through)
    for key in ("R@1", "R@5", "R@10", "candidate_recall"):
        assert through["grdr"][key] == inproc["grdr"][key], key
    # a video outside the pool ranks pool + 1 through OpenSearch: a lower bound of the in-process rank
    assert through["grdr"]["MnR"] <= inproc["grdr"]["MnR"] and through["grdr"]["MdR"] <= inproc["grdr"]["MdR"]
    stages = through["grdr"]["stages_ms"]
    assert set(stages) == {"encode", "decode", "opensearch", "total"} and stages["total"]["p50_ms"] > 0
    assert "p99_ms" in stages["opensearch"] and f"eval {catalog}" not in out.stdout  # progress goes to stderr


def test_eval_index_refuses_what_it_cannot_do(catalog, tiny_model_dir):
    dense = grdr("eval", "--index", catalog, "--dataset", MSRVTT, "--model", tiny_model_dir, "--mode", "dense")
    assert dense.returncode == 2 and "drop --index" in dense.stderr
    missing = grdr("eval", "--index", f"{catalog}-nowhere", "--dataset", MSRVTT, "--model", tiny_model_dir,
                   "--limit", 1)
    assert missing.returncode == 1 and f"{catalog}-nowhere" in missing.stderr
