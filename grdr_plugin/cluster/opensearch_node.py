"""Start, stop and inspect the local OpenSearch node."""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from grdr_plugin.cluster import procs
from grdr_plugin.cluster.artifacts import ensure_distribution
from grdr_plugin.cluster.errors import ClusterError
from grdr_plugin.cluster.http import get_json
from grdr_plugin.cluster.java import find_jdk
from grdr_plugin.cluster.node_config import CLUSTER_NAME, YmlValue, heap_opts, node_env, render_opensearch_yml
from grdr_plugin.cluster.paths import ClusterPaths, NodePaths
from grdr_plugin.settings import Settings

Log = Callable[[str], None]

# A starting node loads its plugins and recovers its indices before it turns yellow; 3 minutes leave room
# for a loaded machine before the start counts as failed.
HEALTH_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0  # a node flushes its shards on SIGTERM; a minute before SIGKILL
PROBE_TIMEOUT_S = 3.0  # "is anything there?": a node that is up answers GET / at once
POLL_S = 1.0  # between health checks while the node starts


def base_url(settings: Settings) -> str:
    # the local node always listens on loopback; GRDR_OPENSEARCH_URL may point elsewhere for other commands
    return f"http://127.0.0.1:{settings.opensearch_port}"


@dataclass
class NodeStart:
    already_running: bool
    pid: Optional[int]
    version: str
    health: str
    seconds: float


def root_info(url: str) -> Optional[dict[str, Any]]:
    info = get_json(url + "/", timeout=PROBE_TIMEOUT_S)
    return info if isinstance(info, dict) else None


def is_opensearch(info: Optional[dict[str, Any]]) -> bool:
    return bool(info) and info.get("version", {}).get("distribution") == "opensearch"


def node_marker(paths: ClusterPaths) -> str:
    """What the node's command line always contains, both while bin/opensearch (bash) runs and after it execs
    java: our .grdr/opensearch folder. It tells our node apart from a recycled pid."""
    return str(paths.opensearch)


def node_pid(paths: ClusterPaths, pid_file: Optional[Path] = None) -> Optional[int]:
    """The live node whose pid ``pid_file`` (default: the single node's) names; None when it does not run."""
    pid = procs.read_int(pid_file or paths.opensearch_pid)
    return pid if procs.alive(pid, node_marker(paths)) else None


def health(url: str) -> Optional[str]:
    h = get_json(url + "/_cluster/health")
    return h.get("status") if isinstance(h, dict) else None


def start(settings: Settings, paths: ClusterPaths, log: Log, rebuild: bool = False) -> NodeStart:
    """Start the node unless it already runs; wait until the cluster is yellow or green."""
    t0 = time.monotonic()
    url = base_url(settings)
    info = root_info(url)
    if rebuild and (info is not None or node_pid(paths) is not None):
        raise ClusterError("--rebuild replaces the OpenSearch home, which the running node uses",
                           hint="`grdr cluster stop` first (the data stays)")
    if info is not None:
        if not is_opensearch(info):
            raise ClusterError(f"port {settings.opensearch_port} answers, but not as OpenSearch",
                               hint="free the port or set GRDR_OPENSEARCH_PORT")
        status = wait_healthy(url, None, paths, t0)
        return NodeStart(True, node_pid(paths), info["version"]["number"], status, time.monotonic() - t0)

    pid = node_pid(paths)
    if pid is not None:  # started earlier and still booting: wait for it instead of starting a second node
        port = procs.read_int(paths.opensearch_port)
        if port is not None and port != settings.opensearch_port:
            raise ClusterError(f"the node under {paths.opensearch} (pid {pid}) runs on port {port}, "
                               f"not {settings.opensearch_port}",
                               hint="`grdr cluster stop` first, then start with the new GRDR_OPENSEARCH_PORT")
        log(f"OpenSearch (pid {pid}) is still starting; waiting")
        status = wait_healthy(url, pid, paths, t0)
        return NodeStart(True, pid, (root_info(url) or {}).get("version", {}).get("number", "?"), status,
                         time.monotonic() - t0)

    dist_home, java_home = prepare(settings, paths, log, rebuild)
    pid = spawn(settings, paths, dist_home, java_home)
    log(f"OpenSearch started (pid {pid}); waiting for cluster health yellow/green")
    status = wait_healthy(url, pid, paths, t0)
    version = (root_info(url) or {}).get("version", {}).get("number", "?")
    return NodeStart(False, pid, version, status, time.monotonic() - t0)


def prepare(settings: Settings, paths: ClusterPaths, log: Log, rebuild: bool) -> tuple[Path, Path]:
    """The JDK and the assembled OpenSearch home (fetched and assembled on first use): (home, java_home)."""
    heap_opts(settings.opensearch_heap)  # a bad GRDR_OPENSEARCH_HEAP fails before any download
    jdk = find_jdk(settings.java_home)
    log(f"Java {jdk.version} at {jdk.home}")
    t_dist = time.monotonic()
    dist = ensure_distribution(paths, settings.opensearch_version, settings.knn_version(), jdk.home, log, rebuild)
    if dist.downloaded:
        log(f"downloaded {', '.join(dist.downloaded)} into {paths.maven_repo}")
    if dist.built:
        log(f"fetched and assembled {dist.home} in {time.monotonic() - t_dist:.1f} s "
            f"(lang-painless {'assembled from Maven jars' if dist.painless_source == 'maven' else 'from the zip'})")
    return dist.home, jdk.home


def spawn(settings: Settings, paths: ClusterPaths, home: Path, java_home: Path,
          extra_yml: Optional[Mapping[str, YmlValue]] = None) -> int:
    """The single node: its config in the distribution home, its data/logs/run directly under opensearch/."""
    node = replace(paths.nodes(1, settings.opensearch_version)[0], config=home / "config")
    return spawn_node(paths, node, home, java_home, settings.opensearch_heap,
                      render_opensearch_yml(settings, paths, extra_yml), settings.opensearch_port)


def spawn_node(paths: ClusterPaths, node: NodePaths, home: Path, java_home: Path, heap: str, yml: str,
               http_port: int) -> int:
    """bin/opensearch detached in its own session (it outlives the CLI), as the node user under root."""
    who = procs.node_user()
    if who.switches:
        blocked = procs.untraversable_parent(paths.home)
        if blocked is not None:
            raise ClusterError(f"the node user {who.name!r} cannot enter {blocked}",
                               hint="chmod o+x that folder, or set GRDR_HOME to a folder outside it")
    for d in (node.config, node.data, node.logs, node.run):
        d.mkdir(parents=True, exist_ok=True)
    (node.config / "opensearch.yml").write_text(yml)
    # the node writes its keystore into config/ and its data/logs below .grdr/opensearch
    procs.chown_tree(paths.opensearch, who)

    env = node_env(os.environ, java_home, heap, node.config, node.run)
    with open(node.stdout, "wb") as out:
        proc = subprocess.Popen(
            [str(home / "bin" / "opensearch")], cwd=home, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # no SIGHUP/SIGINT from the caller's terminal
            user=who.uid, group=who.gid, extra_groups=[] if who.switches else None,
        )
    # bin/opensearch execs java, so this pid is the node's own
    procs.write_int(node.pid, proc.pid)
    procs.write_int(node.port, http_port)  # lets a later start spot a port change
    return proc.pid


def wait_healthy(url: str, pid: Optional[int], paths: ClusterPaths, t0: float,
                 timeout_s: float = HEALTH_TIMEOUT_S, probe: Callable[[str], Optional[str]] = health) -> str:
    """Poll ``probe(url)`` (the cluster health status, None while nothing answers) until yellow/green."""
    deadline = t0 + timeout_s
    while time.monotonic() < deadline:
        status = probe(url)
        if status in ("green", "yellow"):
            return status
        if pid is not None and not procs.alive(pid, node_marker(paths)):
            _reap(pid)
            raise ClusterError("OpenSearch exited while starting", log=paths.opensearch_stdout,
                               hint=f"read the node log above (all of it in {paths.logs}); "
                                    "after fixing the cause run `grdr cluster start` again")
        time.sleep(POLL_S)
    main_log = paths.logs / f"{CLUSTER_NAME}.log"
    raise ClusterError(f"OpenSearch did not reach yellow/green within {timeout_s:.0f} s",
                       log=main_log if main_log.is_file() else paths.opensearch_stdout,
                       hint="it may still be starting (`grdr cluster status`); otherwise `grdr cluster stop` "
                            "and check memory (GRDR_OPENSEARCH_HEAP) and the log")


def _reap(pid: int) -> None:
    # our own child exited: collect it so it does not linger as a zombie
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def find_running_pid(settings: Settings, paths: ClusterPaths) -> Optional[int]:
    """The node's pid from our pid file, else from the node itself when it answers on the port."""
    pid = node_pid(paths)
    if pid is not None:
        return pid
    nodes = get_json(base_url(settings) + "/_nodes/_local/process?filter_path=nodes.*.process.id")
    try:
        pid = int(next(iter(nodes["nodes"].values()))["process"]["id"])  # type: ignore[index]
    except (TypeError, KeyError, StopIteration, ValueError):
        return None
    # only stop a node we started: its command line names our distribution home
    return pid if node_marker(paths) in procs.cmdline(pid) else None


def stop(settings: Settings, paths: ClusterPaths) -> Optional[tuple[int, bool]]:
    """SIGTERM the node and wait (data stays). None when it was not running; else (pid, graceful)."""
    pid = find_running_pid(settings, paths)
    if pid is None:
        if root_info(base_url(settings)) is not None:
            raise ClusterError(f"something on port {settings.opensearch_port} answers, but it is not the node "
                               f"under {paths.opensearch}", hint="stop it with whatever started it")
        paths.opensearch_pid.unlink(missing_ok=True)
        return None
    graceful = procs.terminate(pid, node_marker(paths), STOP_TIMEOUT_S)
    paths.opensearch_pid.unlink(missing_ok=True)
    paths.opensearch_port.unlink(missing_ok=True)
    return pid, graceful
