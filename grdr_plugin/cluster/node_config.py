"""Render the node's configuration: opensearch.yml, jvm.options and the process environment."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from grdr_plugin.cluster.paths import ClusterPaths, NodePaths, node_name
from grdr_plugin.settings import Settings

CLUSTER_NAME = "grdr-local"


YmlValue = Union[str, Sequence[str]]


def render_opensearch_yml(settings: Settings, paths: ClusterPaths,
                          extra: Optional[Mapping[str, YmlValue]] = None) -> str:
    """A loopback-only single node; rewritten on every start so a changed port applies.

    ``extra`` adds or overrides settings (the secured test node's TLS and security plugin settings)."""
    lines = {
        "cluster.name": CLUSTER_NAME,
        "node.name": node_name(0),
        # one node, no discovery, no bootstrap checks (they apply only when binding beyond loopback)
        "discovery.type": "single-node",
        "network.host": "127.0.0.1",
        "http.port": str(settings.opensearch_port),
        "path.data": str(paths.data),
        "path.logs": str(paths.logs),
        # a dev disk that fills past 85/90/95 % would otherwise turn indices read-only mid-test
        "cluster.routing.allocation.disk.threshold_enabled": "false",
        # one node cannot host replicas: keep auto-created indices green
        "cluster.default_number_of_replicas": "0",
        **(extra or {}),
    }
    header = "# written by `grdr cluster start` on every start; edit grdr_plugin/cluster/node_config.py instead\n"
    return header + "".join(f"{k}: {_yaml_value(v)}\n" for k, v in lines.items())


def render_cluster_node_yml(settings: Settings, nodes: Sequence[NodePaths], i: int) -> str:
    """Node ``i`` of a loopback cluster of ``len(nodes)``: HTTP on port+i, transport on transport_port+i, and
    every node seeded with all transport ports, so any of them can find the others after a restart."""
    lines: dict[str, YmlValue] = {
        "cluster.name": CLUSTER_NAME,
        "node.name": nodes[i].name,
        "network.host": "127.0.0.1",
        "http.port": str(settings.opensearch_port + i),
        "transport.port": str(settings.opensearch_transport_port + i),
        "discovery.seed_hosts": [f"127.0.0.1:{settings.opensearch_transport_port + j}" for j in range(len(nodes))],
        # read only when the cluster first forms; afterwards the nodes keep their elected state on disk
        "cluster.initial_cluster_manager_nodes": [node_name(j) for j in range(len(nodes))],
        "path.data": str(nodes[i].data),
        "path.logs": str(nodes[i].logs),
        # a dev disk that fills past 85/90/95 % would otherwise turn indices read-only mid-test
        "cluster.routing.allocation.disk.threshold_enabled": "false",
    }
    header = "# written by `grdr cluster start --nodes N` on every start; edit grdr_plugin/cluster/node_config.py\n"
    return header + "".join(f"{k}: {_yaml_value(v)}\n" for k, v in lines.items())


def node_jvm_options(dist_text: str, paths: ClusterPaths, node: NodePaths) -> str:
    """The assembled home's jvm.options (logs and heap dumps pointed at the single-node folders) for one node of
    a cluster: its own logs and data folders, so two JVMs never write one GC log."""
    return (dist_text.replace(f"{paths.logs}/", f"{node.logs}/")
            .replace(f"HeapDumpPath={paths.data}", f"HeapDumpPath={node.data}"))


def _yaml_value(value: YmlValue) -> str:
    # a list becomes a JSON flow sequence (valid YAML), e.g. the security plugin's DN lists
    return _yaml_scalar(value) if isinstance(value, str) else json.dumps(list(value))


def _yaml_scalar(value: str) -> str:
    # quote anything that is not a plain word/number/bool so paths with spaces or ':' survive
    return value if re.fullmatch(r"[A-Za-z0-9_.\-/]+", value) else '"' + value.replace('"', '\\"') + '"'


def rewrite_jvm_options(text: str, paths: ClusterPaths) -> str:
    """The distribution's jvm.options with heap lines dropped (OPENSEARCH_JAVA_OPTS sets it from settings)
    and the relative ``logs/`` / ``data`` paths (relative to the OpenSearch home) pointed into .grdr/."""
    out = []
    for line in text.splitlines():
        if re.fullmatch(r"\s*(\d+(-\d*)?:)?-Xm[sx]\S+\s*", line):
            continue
        line = line.replace("file=logs/", f"file={paths.logs}/")
        line = line.replace("-XX:ErrorFile=logs/", f"-XX:ErrorFile={paths.logs}/")
        line = line.replace("-Xloggc:logs/", f"-Xloggc:{paths.logs}/")
        line = re.sub(r"-XX:HeapDumpPath=data\b", f"-XX:HeapDumpPath={paths.data}", line)
        out.append(line)
    return "\n".join(out) + "\n"


def heap_opts(heap: str) -> str:
    """``1g`` -> ``-Xms1g -Xmx1g`` (equal min/max, as OpenSearch's bootstrap expects)."""
    if not re.fullmatch(r"\d+[kKmMgG]?", heap):
        raise ValueError(f"GRDR_OPENSEARCH_HEAP must look like 512m or 1g, not {heap!r}")
    return f"-Xms{heap} -Xmx{heap}"


def node_env(base: Mapping[str, str], java_home: Path, heap: str, conf_dir: Path, run_home: Path) -> dict[str, str]:
    """The environment of bin/opensearch: the JDK, the heap, the config dir; no caller JVM options leak in."""
    env = {k: v for k, v in base.items() if k not in ("JAVA_TOOL_OPTIONS", "JAVA_OPTS", "_JAVA_OPTIONS")}
    env.update({
        "JAVA_HOME": str(java_home),
        "OPENSEARCH_JAVA_HOME": str(java_home),
        "OPENSEARCH_JAVA_OPTS": heap_opts(heap),
        "OPENSEARCH_PATH_CONF": str(conf_dir),
        # the node user may have no home of its own (nologin system user)
        "HOME": str(run_home),
    })
    return env
