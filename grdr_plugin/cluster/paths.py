"""Every file of the local cluster lives under ``settings.home`` (default ``.grdr/``, project-local)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grdr_plugin.settings import Settings


@dataclass(frozen=True)
class ClusterPaths:
    home: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> "ClusterPaths":
        # absolute, because the node runs with its own working directory
        return cls(home=settings.home.expanduser().resolve())

    @property
    def lock(self) -> Path:
        return self.home / "cluster.lock"

    # downloads (kept across `stop`/`start` and across reassembly)
    @property
    def cache(self) -> Path:
        return self.home / "cache"

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
