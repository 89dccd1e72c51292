"""Every file of the local cluster lives under ``settings.home`` (default ``.grdr/``, project-local)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from grdr_plugin.settings import Settings


@dataclass(frozen=True)
class NodePaths:
    """One node's own folders: its config dir, data, logs and pid/port files."""
    name: str
    config: Path
    data: Path
    logs: Path
    run: Path

    @property
    def pid(self) -> Path:
        return self.run / "opensearch.pid"

    @property
    def port(self) -> Path:
        return self.run / "opensearch.port"

    @property
    def stdout(self) -> Path:
        # what bin/opensearch prints before log4j is up (java version errors, bad settings)
        return self.logs / "stdout.log"


@dataclass(frozen=True)
class ClusterPaths:
    home: Path
    # GRDR_CACHE_DIR: another home's cache, so a second home downloads nothing (keyword-only: subclasses add fields)
    cache_root: Optional[Path] = field(default=None, kw_only=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> "ClusterPaths":
        # absolute, because the node runs with its own working directory
        cache = settings.cache_dir.expanduser().resolve() if settings.cache_dir else None
        return cls(home=settings.home.expanduser().resolve(), cache_root=cache)

    @property
    def lock(self) -> Path:
        return self.home / "cluster.lock"

    # downloads (kept across `stop`/`start` and across reassembly)
    @property
    def cache(self) -> Path:
        return self.cache_root or self.home / "cache"

    @property
    def maven_repo(self) -> Path:
        # a project-local Maven repository: no ~/.m2 side effects, and deleting .grdr/ is a clean slate
        return self.cache / "m2"

    # OpenSearch
    @property
    def opensearch(self) -> Path:
        return self.home / "opensearch"

    def dist_home(self, version: str) -> Path:
        """The assembled OpenSearch home (bin/, lib/, modules/, plugins/, config/)."""
        return self.opensearch / f"opensearch-{version}"

    @property
    def data(self) -> Path:
        return self.opensearch / "data"

    @property
    def logs(self) -> Path:
        return self.opensearch / "logs"

    @property
    def run(self) -> Path:
        return self.opensearch / "run"

    @property
    def opensearch_pid(self) -> Path:
        return self.run / "opensearch.pid"

    @property
    def opensearch_port(self) -> Path:
        return self.run / "opensearch.port"

    @property
    def opensearch_stdout(self) -> Path:
        # what bin/opensearch prints before log4j is up (java version errors, bad settings)
        return self.logs / "stdout.log"

    @property
    def node_count(self) -> Path:
        # the number of nodes this home's data belongs to, written at its first multi-node start
        return self.opensearch / "nodes.count"

    def nodes(self, count: int, version: str) -> list[NodePaths]:
        """The folders of each of ``count`` nodes. One node keeps the single-node layout (config in the
        distribution home, data/logs/run directly under opensearch/); several get opensearch/nodes/<name>/."""
        if count == 1:
            return [NodePaths(node_name(0), self.dist_home(version) / "config", self.data, self.logs, self.run)]
        out = []
        for i in range(count):
            d = self.opensearch / "nodes" / node_name(i)
            out.append(NodePaths(node_name(i), d / "config", d / "data", d / "logs", d / "run"))
        return out

    # Redis
    @property
    def redis(self) -> Path:
        return self.home / "redis"

    @property
    def redis_pid(self) -> Path:
        return self.redis / "redis.pid"

    @property
    def redis_log(self) -> Path:
        return self.redis / "redis.log"


def node_name(i: int) -> str:
    return f"grdr-node-{i + 1}"
