"""`grdr cluster start --nodes 3` for real: a 3-node cluster with its own home, ports and Redis beside the default
node (which it never touches), reusing the default home's download cache. It checks the nodes join and turn green,
the status listing, that data survives stop/start, and that another node count is refused."""
import pytest
from opensearchpy import helpers

from grdr_plugin.cluster import procs
from grdr_plugin.cluster.paths import node_name
from tests.support.multinode import HEAP_MB, LocalCluster, ok

NODES = 3
DOCS = 30


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster(http=9250, transport=9350, redis=6390)  # clear of the default node's 9200/9300 and Redis 6379
    yield c
    c.remove()


def test_three_nodes_join_list_keep_data_and_refuse_another_count(cluster):
    cluster.start(NODES)
    c = cluster.client()
    health = c.cluster.health(wait_for_nodes=NODES, wait_for_status="green")
    assert (health["number_of_nodes"], health["status"]) == (NODES, "green")
    assert {n["name"] for n in c.nodes.info()["nodes"].values()} == {node_name(i) for i in range(NODES)}

    c.indices.create(index="keep", body={"settings": {"number_of_shards": 3, "number_of_replicas": 1}})
    helpers.bulk(c, ({"_index": "keep", "_id": str(i), "_source": {"n": i}} for i in range(DOCS)), refresh=True)
    assert c.cluster.health(index="keep", wait_for_status="green")["status"] == "green"

    listing = cluster.status()
    rows = listing["local_nodes"]
    assert [r["name"] for r in rows] == [node_name(i) for i in range(NODES)]
    for i, r in enumerate(rows):
        assert r["joined"] and procs.alive(r["pid"])
        assert (r["http"], r["transport"]) == (f"127.0.0.1:{cluster.http + i}", f"127.0.0.1:{cluster.transport + i}")
        assert {"cluster_manager", "data"} <= set(r["roles"]) and r["heap_mb"] == HEAP_MB
    (keep,) = [ix for ix in listing["indices"] if ix["index"] == "keep"]
    assert (keep["health"], keep["primaries"], keep["replicas"], keep["unassigned"]) == ("green", 3, 1, 0)
    assert len(keep["shards"]) == 6 and {s["state"] for s in keep["shards"]} == {"STARTED"}
    for shard in range(3):  # a primary and its replica never share a node
        assert len({s["node"] for s in keep["shards"] if s["shard"] == shard}) == 2

    refused = cluster.grdr("cluster", "start", "--nodes", "2")
    assert refused.returncode == 1
    assert "3-node cluster; --nodes 2 cannot start" in refused.stderr + refused.stdout
    assert "--nodes 3" in refused.stderr + refused.stdout

    pids = [r["pid"] for r in rows]
    stopped = ok(cluster.stop()).stdout
    assert all(f"grdr-node-{i + 1} (pid {pid}) stopped" in stopped for i, pid in enumerate(pids)), stopped
    assert not any(procs.alive(pid) for pid in pids)

    cluster.start(NODES)
    c = cluster.client()
    assert c.cluster.health(index="keep", wait_for_status="green")["status"] == "green"
    assert c.count(index="keep")["count"] == DOCS
    assert sorted(int(h["_id"]) for h in c.search(index="keep", size=DOCS)["hits"]["hits"]) == list(range(DOCS))
