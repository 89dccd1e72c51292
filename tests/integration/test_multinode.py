"""`grdr cluster start --nodes 3` for real: a 3-node cluster with its own home, ports and Redis beside the default
node (which it never touches), reusing the default home's download cache. It checks the nodes join and turn green,
the status listing, that data survives stop/start, and that another node count is refused."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from opensearchpy import OpenSearch, helpers

from grdr_plugin.cluster import procs
from grdr_plugin.cluster.paths import ClusterPaths, node_name
from grdr_plugin.settings import Settings

NODES = 3
HTTP, TRANSPORT, REDIS = 9250, 9350, 6390  # clear of the default node's 9200/9300 and Redis 6379
HEAP_MB = 512  # three of these fit beside the default node's 1 GiB on a 24 GiB machine
DOCS = 30
GRDR = [sys.executable, "-m", "cli.main"]


@pytest.fixture(scope="module")
def home():
    # not pytest's tmp_path: its parents are 0700, and under root the node user must traverse the home's parents
    path = Path(tempfile.mkdtemp(prefix="grdr-3nodes-"))
    path.chmod(0o755)
    yield path
    grdr(path, "cluster", "stop")
    shutil.rmtree(path, ignore_errors=True)


def grdr(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GRDR_HOME": str(home), "GRDR_OPENSEARCH_PORT": str(HTTP),
           "GRDR_OPENSEARCH_TRANSPORT_PORT": str(TRANSPORT), "GRDR_OPENSEARCH_HEAP": f"{HEAP_MB}m",
           "GRDR_REDIS_PORT": str(REDIS), "GRDR_OPENSEARCH_URL": f"http://127.0.0.1:{HTTP}",
           "GRDR_BROKER_URL": f"redis://127.0.0.1:{REDIS}/0", "GRDR_RESULT_BACKEND": f"redis://127.0.0.1:{REDIS}/1",
           # the default home's cache: the 200 MB distribution is not downloaded a second time
           "GRDR_CACHE_DIR": str(ClusterPaths.from_settings(Settings()).cache),
           "COLUMNS": "200"}  # rich wraps at 80 columns without a terminal; the asserts read whole lines
    return subprocess.run([*GRDR, *args], env=env, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[2])


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def client() -> OpenSearch:
    return OpenSearch(hosts=[f"http://127.0.0.1:{HTTP}"], timeout=60)  # above the health waits (30 s on the server)


def status(home: Path) -> dict:
    proc = grdr(home, "cluster", "status", "--json")  # exit 1 is expected: no ingest worker serves its Redis
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_three_nodes_join_list_keep_data_and_refuse_another_count(home):
    ok(grdr(home, "cluster", "start", "--nodes", str(NODES)))
    c = client()
    health = c.cluster.health(wait_for_nodes=NODES, wait_for_status="green")
    assert (health["number_of_nodes"], health["status"]) == (NODES, "green")
    assert {n["name"] for n in c.nodes.info()["nodes"].values()} == {node_name(i) for i in range(NODES)}

    c.indices.create(index="keep", body={"settings": {"number_of_shards": 3, "number_of_replicas": 1}})
    helpers.bulk(c, ({"_index": "keep", "_id": str(i), "_source": {"n": i}} for i in range(DOCS)), refresh=True)
    assert c.cluster.health(index="keep", wait_for_status="green")["status"] == "green"

    listing = status(home)
    rows = listing["local_nodes"]
    assert [r["name"] for r in rows] == [node_name(i) for i in range(NODES)]
    for i, r in enumerate(rows):
        assert r["joined"] and procs.alive(r["pid"])
        assert (r["http"], r["transport"]) == (f"127.0.0.1:{HTTP + i}", f"127.0.0.1:{TRANSPORT + i}")
        assert {"cluster_manager", "data"} <= set(r["roles"]) and r["heap_mb"] == HEAP_MB
    (keep,) = [ix for ix in listing["indices"] if ix["index"] == "keep"]
    assert (keep["health"], keep["primaries"], keep["replicas"], keep["unassigned"]) == ("green", 3, 1, 0)
    assert len(keep["shards"]) == 6 and {s["state"] for s in keep["shards"]} == {"STARTED"}
    for shard in range(3):  # a primary and its replica never share a node
        assert len({s["node"] for s in keep["shards"] if s["shard"] == shard}) == 2

    refused = grdr(home, "cluster", "start", "--nodes", "2")
    assert refused.returncode == 1
    assert "3-node cluster; --nodes 2 cannot start" in refused.stderr + refused.stdout
    assert "--nodes 3" in refused.stderr + refused.stdout

    pids = [r["pid"] for r in rows]
    stopped = ok(grdr(home, "cluster", "stop")).stdout
    assert all(f"grdr-node-{i + 1} (pid {pid}) stopped" in stopped for i, pid in enumerate(pids)), stopped
    assert not any(procs.alive(pid) for pid in pids)

    ok(grdr(home, "cluster", "start", "--nodes", str(NODES)))
    c = client()
    assert c.cluster.health(index="keep", wait_for_status="green")["status"] == "green"
    assert c.count(index="keep")["count"] == DOCS
    assert sorted(int(h["_id"]) for h in c.search(index="keep", size=DOCS)["hits"]["hits"]) == list(range(DOCS))
