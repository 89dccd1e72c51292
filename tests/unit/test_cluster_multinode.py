"""The multi-node local cluster's pure parts: per-node folders, each node's config, the node-count guard, the
status listing, and the Docker 3-node variant (parsed: there is no Docker engine here)."""
from pathlib import Path

import pytest
import yaml

from grdr_plugin.cluster import local_cluster
from grdr_plugin.cluster.errors import ClusterError
from grdr_plugin.cluster.node_config import node_jvm_options, render_cluster_node_yml, rewrite_jvm_options
from grdr_plugin.cluster.paths import ClusterPaths, node_name
from grdr_plugin.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_one_node_keeps_the_single_node_layout(tmp_path):
    p = ClusterPaths(home=tmp_path)
    (node,) = p.nodes(1, "3.5.0")
    assert (node.name, node.config, node.data, node.logs) == (
        "grdr-node-1", p.dist_home("3.5.0") / "config", p.data, p.logs)
    assert node.pid == p.opensearch_pid and node.stdout == p.opensearch_stdout


def test_several_nodes_have_their_own_config_data_logs_and_pid(tmp_path):
    nodes = ClusterPaths(home=tmp_path).nodes(3, "3.5.0")
    assert [n.name for n in nodes] == ["grdr-node-1", "grdr-node-2", "grdr-node-3"]
    for field in ("config", "data", "logs", "run"):
        assert len({getattr(n, field) for n in nodes}) == 3
    assert nodes[1].data == tmp_path / "opensearch" / "nodes" / "grdr-node-2" / "data"


def test_cache_dir_setting_shares_another_homes_cache(tmp_path):
    p = ClusterPaths.from_settings(Settings(home=tmp_path / "b", cache_dir=tmp_path / "a" / "cache"))
    assert p.maven_repo == tmp_path / "a" / "cache" / "m2"
    assert ClusterPaths(home=tmp_path).maven_repo == tmp_path / "cache" / "m2"


def test_node_yml_has_ports_plus_i_seeds_and_initial_managers(tmp_path):
    s = Settings(home=tmp_path, opensearch_port=9250, opensearch_transport_port=9350)
    nodes = ClusterPaths.from_settings(s).nodes(3, s.opensearch_version)
    yml = yaml.safe_load(render_cluster_node_yml(s, nodes, 2))
    assert yml["node.name"] == "grdr-node-3"
    assert (yml["http.port"], yml["transport.port"]) == (9252, 9352)
    assert yml["discovery.seed_hosts"] == ["127.0.0.1:9350", "127.0.0.1:9351", "127.0.0.1:9352"]
    assert yml["cluster.initial_cluster_manager_nodes"] == ["grdr-node-1", "grdr-node-2", "grdr-node-3"]
    assert yml["path.data"] == str(nodes[2].data) and yml["path.logs"] == str(nodes[2].logs)
    assert "discovery.type" not in yml and yml["network.host"] == "127.0.0.1"


def test_node_jvm_options_point_gc_log_and_heap_dumps_at_the_node(tmp_path):
    p = ClusterPaths(home=tmp_path)
    node = p.nodes(2, "3.5.0")[1]
    dist = rewrite_jvm_options("-XX:HeapDumpPath=data\n9-:-Xlog:gc*:file=logs/gc.log:utctime\n"
                               "-XX:ErrorFile=logs/hs_err_pid%p.log\n", p)
    out = node_jvm_options(dist, p, node)
    assert f"file={node.logs}/gc.log" in out and f"-XX:ErrorFile={node.logs}/hs_err" in out
    assert f"-XX:HeapDumpPath={node.data}" in out
    assert str(p.logs) + "/" not in out


def test_a_different_node_count_on_an_existing_home_is_refused(tmp_path):
    p = ClusterPaths(home=tmp_path)
    assert local_cluster.home_node_count(p) is None
    local_cluster.check_node_count(p, 3)  # a fresh home takes any count
    p.data.mkdir(parents=True)  # the single-node layout's data: a 1-node home
    assert local_cluster.home_node_count(p) == 1
    with pytest.raises(ClusterError, match="1-node cluster; --nodes 3") as exc:
        local_cluster.check_node_count(p, 3)
    assert "--nodes 1" in exc.value.hint and "GRDR_HOME" in exc.value.hint
    p.node_count.write_text("3\n")
    local_cluster.check_node_count(p, 3)
    with pytest.raises(ClusterError, match="3-node cluster; --nodes 2"):
        local_cluster.check_node_count(p, 2)


def test_node_rows_join_pid_files_with_the_cluster_by_name(tmp_path):
    nodes = ClusterPaths(home=tmp_path).nodes(2, "3.5.0")
    api = {"nodes": {"x": {"name": "grdr-node-2", "roles": ["data"], "transport_address": "127.0.0.1:9351",
                           "http": {"publish_address": "127.0.0.1:9251"}, "process": {"id": 42},
                           "jvm": {"mem": {"heap_max_in_bytes": 512 * 2**20}}}}}
    rows = local_cluster.node_rows(nodes, [None, 42], api)
    assert rows[0] == {"name": "grdr-node-1", "pid": None, "joined": False, "http": None, "transport": None,
                       "roles": [], "heap_mb": None}
    assert rows[1] == {"name": "grdr-node-2", "pid": 42, "joined": True, "http": "127.0.0.1:9251",
                       "transport": "127.0.0.1:9351", "roles": ["data"], "heap_mb": 512}


def test_index_rows_skip_system_indices_and_order_shards():
    health = {"indices": {".kibana": {"status": "green"},
                          "cat": {"status": "yellow", "number_of_shards": 2, "number_of_replicas": 1,
                                  "unassigned_shards": 1}}}
    shards = [{"index": "cat", "shard": "1", "prirep": "p", "state": "STARTED", "node": "n2"},
              {"index": "cat", "shard": "0", "prirep": "r", "state": "UNASSIGNED", "node": None},
              {"index": "cat", "shard": "0", "prirep": "p", "state": "STARTED", "node": "n1"},
              {"index": ".kibana", "shard": "0", "prirep": "p", "state": "STARTED", "node": "n1"}]
    (row,) = local_cluster.index_rows(health, shards)
    assert (row["index"], row["health"], row["primaries"], row["replicas"], row["unassigned"]) == (
        "cat", "yellow", 2, 1, 1)
    assert [(s["shard"], s["primary"], s["node"]) for s in row["shards"]] == [(0, True, "n1"), (0, False, None),
                                                                              (1, True, "n2")]


def test_compose_3nodes_matches_the_local_cluster_settings():
    single = yaml.safe_load((ROOT / "docker" / "compose.yml").read_text())
    three = yaml.safe_load((ROOT / "docker" / "compose.3nodes.yml").read_text())
    nodes = [three["services"][f"opensearch-{i}"] for i in (1, 2, 3)]
    names = [n["environment"]["node.name"] for n in nodes]
    assert names == [node_name(i) for i in range(3)]
    for n in nodes:
        env = n["environment"]
        assert n["image"] == single["services"]["opensearch"]["image"]
        assert env["cluster.initial_cluster_manager_nodes"].split(",") == names
        assert env["discovery.seed_hosts"].split(",") == ["opensearch-1", "opensearch-2", "opensearch-3"]
        assert env["OPENSEARCH_JAVA_OPTS"] == single["services"]["opensearch"]["environment"]["OPENSEARCH_JAVA_OPTS"]
        assert "discovery.type" not in env
    assert three["services"]["worker"]["command"] == single["services"]["worker"]["command"]
    assert set(three["volumes"]) == {"opensearch-data-1", "opensearch-data-2", "opensearch-data-3"}
