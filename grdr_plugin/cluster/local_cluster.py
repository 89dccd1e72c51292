"""A loopback cluster of N OpenSearch nodes run from the one assembled home: start, stop, and what runs where.

One node (the default) is ``opensearch_node``'s single node; several share the distribution but each has its own
config dir, data, logs and pid files (``ClusterPaths.nodes``). A home's node count is fixed by its data."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from grdr_plugin.cluster import opensearch_node, procs
from grdr_plugin.cluster.errors import ClusterError
from grdr_plugin.cluster.http import get_json
from grdr_plugin.cluster.node_config import node_jvm_options, render_cluster_node_yml
from grdr_plugin.cluster.paths import ClusterPaths, NodePaths
from grdr_plugin.settings import Settings

Log = Callable[[str], None]

NODE_INFO = ("/_nodes/process,jvm,http?filter_path=nodes.*.name,nodes.*.roles,nodes.*.transport_address,"
             "nodes.*.process.id,nodes.*.jvm.mem.heap_max_in_bytes,nodes.*.http.publish_address")


def home_node_count(paths: ClusterPaths) -> Optional[int]:
    """How many nodes this home's data belongs to; None for a home that never ran a node."""
    count = procs.read_int(paths.node_count)
    if count is not None:
        return count
    return 1 if paths.data.is_dir() else None  # the single-node layout writes no count file


def check_node_count(paths: ClusterPaths, wanted: int) -> None:
    have = home_node_count(paths)
    if have is not None and have != wanted:
        raise ClusterError(
            f"{paths.home} holds the data of a {have}-node cluster; --nodes {wanted} cannot start on it",
            hint=f"start it with --nodes {have} (or GRDR_CLUSTER_NODES={have}), use another GRDR_HOME, or "
                 f"`grdr cluster stop` and delete {paths.opensearch} to start over (its indices are lost)")


def node_url(settings: Settings, i: int) -> str:
    return f"http://127.0.0.1:{settings.opensearch_port + i}"


@dataclass
class ClusterStart:
    already_running: bool
    pids: list[int]
    version: str
    health: str
    seconds: float


def start(settings: Settings, paths: ClusterPaths, count: int, log: Log, rebuild: bool = False) -> ClusterStart:
    """Start every node of a ``count``-node cluster that does not run; wait until all joined and it is green
    or yellow. One node is the single-node start."""
    check_node_count(paths, count)
    if count == 1:
        n = opensearch_node.start(settings, paths, log, rebuild)
        return ClusterStart(n.already_running, [n.pid] if n.pid else [], n.version, n.health, n.seconds)
    t0 = time.monotonic()
    nodes = paths.nodes(count, settings.opensearch_version)
    pids = [opensearch_node.node_pid(paths, n.pid) for n in nodes]
    if rebuild and any(pids):
        raise ClusterError("--rebuild replaces the OpenSearch home, which running nodes use",
                           hint="`grdr cluster stop` first (the data stays)")
    for i, (node, pid) in enumerate(zip(nodes, pids)):
        if pid is None and opensearch_node.root_info(node_url(settings, i)) is not None:
            raise ClusterError(f"port {settings.opensearch_port + i} ({node.name}'s HTTP port) is taken",
                               hint="free it, or set GRDR_OPENSEARCH_PORT / GRDR_OPENSEARCH_TRANSPORT_PORT")
    todo = [i for i, pid in enumerate(pids) if pid is None]
    if todo:
        dist_home, java_home = opensearch_node.prepare(settings, paths, log, rebuild)
        procs.write_int(paths.node_count, count)
        for i in todo:
            node = nodes[i]
            _copy_config(dist_home, paths, node)
            pids[i] = opensearch_node.spawn_node(paths, node, dist_home, java_home, settings.opensearch_heap,
                                                 render_cluster_node_yml(settings, nodes, i),
                                                 settings.opensearch_port + i)
            log(f"{node.name} started (pid {pids[i]}, HTTP {settings.opensearch_port + i}, "
                f"transport {settings.opensearch_transport_port + i})")
        log(f"waiting for {count} nodes to join and health yellow/green")
    live = [pid for pid in pids if pid is not None]
    status = opensearch_node.wait_healthy(node_url(settings, 0), None, paths, t0,
                                          probe=_joined_probe(paths, nodes, live, count))
    version = (opensearch_node.root_info(node_url(settings, 0)) or {}).get("version", {}).get("number", "?")
    return ClusterStart(not todo, live, version, status, time.monotonic() - t0)


def _copy_config(dist_home: Path, paths: ClusterPaths, node: NodePaths) -> None:
    """The distribution's config files into the node's own config dir (on every start, so `--rebuild` applies);
    its keystore and opensearch.yml are the node's own."""
    src = dist_home / "config"
    shutil.copytree(src, node.config, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("opensearch.yml", "opensearch.keystore", "jvm.options"))
    (node.config / "jvm.options").write_text(node_jvm_options((src / "jvm.options").read_text(), paths, node))


def _joined_probe(paths: ClusterPaths, nodes: list[NodePaths], pids: list[int],
                  count: int) -> Callable[[str], Optional[str]]:
    """Health once all ``count`` nodes joined; a node that exits meanwhile fails the start with its log."""
    marker = opensearch_node.node_marker(paths)

    def probe(url: str) -> Optional[str]:
        for node, pid in zip(nodes, pids):
            if not procs.alive(pid, marker):
                raise ClusterError(f"{node.name} (pid {pid}) exited while starting", log=node.stdout,
                                   hint=f"read its log above (all of it in {node.logs}); after fixing the cause "
                                        "run `grdr cluster start` again")
        h = get_json(url + "/_cluster/health")
        if isinstance(h, dict) and h.get("number_of_nodes", 0) >= count:
            return h.get("status")
        return None
    return probe


@dataclass
class NodeStop:
    name: str
    pid: Optional[int]  # None: it was not running
    graceful: bool
    seconds: float


def stop(settings: Settings, paths: ClusterPaths) -> list[NodeStop]:
    """SIGTERM each node of this home and wait (data stays)."""
    count = home_node_count(paths) or 1
    if count == 1:
        t0 = time.monotonic()
        res = opensearch_node.stop(settings, paths)
        return [NodeStop(paths.nodes(1, settings.opensearch_version)[0].name, *(res or (None, True)),
                         time.monotonic() - t0)]
    out = []
    marker = opensearch_node.node_marker(paths)
    for node in paths.nodes(count, settings.opensearch_version):
        t0 = time.monotonic()
        pid = opensearch_node.node_pid(paths, node.pid)
        graceful = pid is None or procs.terminate(pid, marker, opensearch_node.STOP_TIMEOUT_S)
        node.pid.unlink(missing_ok=True)
        node.port.unlink(missing_ok=True)
        out.append(NodeStop(node.name, pid, graceful, time.monotonic() - t0))
    return out


def describe(settings: Settings, paths: ClusterPaths) -> Optional[dict[str, Any]]:
    """This home's nodes (name, pid, ports, roles, heap, up) and the health and shard allocation of its indices;
    None when the home has no local nodes."""
    count = home_node_count(paths)
    if count is None:
        return None
    nodes = paths.nodes(count, settings.opensearch_version)
    pids = [opensearch_node.node_pid(paths, n.pid) for n in nodes]
    url = next((node_url(settings, i) for i, pid in enumerate(pids) if pid is not None), None)
    api = (get_json(url + NODE_INFO) if url else None) or {}
    health = (get_json(url + "/_cluster/health?level=indices") if url else None) or {}
    shards = (get_json(url + "/_cat/shards?format=json&h=index,shard,prirep,state,node") if url else None) or []
    return {"nodes": node_rows(nodes, pids, api), "indices": index_rows(health, shards)}


def node_rows(nodes: list[NodePaths], pids: list[Optional[int]], api: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per local node: what our pid files say, joined by name with what the cluster reports."""
    by_name = {n.get("name"): n for n in (api.get("nodes") or {}).values()}
    rows = []
    for node, pid in zip(nodes, pids):
        info = by_name.get(node.name, {})
        heap = info.get("jvm", {}).get("mem", {}).get("heap_max_in_bytes")
        rows.append({
            "name": node.name,
            "pid": pid,
            "joined": bool(info),
            "http": info.get("http", {}).get("publish_address"),
            "transport": info.get("transport_address"),
            "roles": info.get("roles", []),
            "heap_mb": round(heap / 2**20) if heap else None,
        })
    return rows


def index_rows(health: dict[str, Any], shards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The health of each index (system indices, named with a leading dot, left out) and where its shards are."""
    rows = []
    for name, h in sorted((health.get("indices") or {}).items()):
        if name.startswith("."):
            continue
        rows.append({
            "index": name,
            "health": h.get("status"),
            "primaries": h.get("number_of_shards"),
            "replicas": h.get("number_of_replicas"),
            "unassigned": h.get("unassigned_shards"),
            "shards": sorted(({"shard": int(s["shard"]), "primary": s.get("prirep") == "p",
                               "state": s.get("state"), "node": s.get("node")}
                              for s in shards if s.get("index") == name),
                             key=lambda s: (s["shard"], not s["primary"], s["node"] or "")),
        })
    return rows
