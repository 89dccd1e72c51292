"""A local single node with the security plugin: HTTPS, TLS between nodes, basic auth, grdr's roles.

It exists so that auth, TLS and the least-privilege roles are tested against a real node
(tests/integration/test_security.py); the dev node of `grdr cluster start` stays plain HTTP.

* Version 3.4.0: ``org.opensearch.plugin:opensearch-security`` is on Maven Central for 3.4.0.0 but
  not for 3.5.0.0 (the dev node's version), and plugin and core versions must match exactly.
  k-NN 3.4.0.0 is there too, so grdr's real mapping and ``knn_score`` run through auth and TLS.
* The 3.4.0 integ-test zip ships only the transport modules: lang-painless is assembled from its
  Maven jars (``artifacts.ensure_distribution``), and ``rule-framework``, which the security plugin
  extends, is on Maven Central neither as a zip nor as jars. The plugin only plugs an attribute
  extension into it through SPI (its main class does not touch it), so its descriptor is rewritten
  to mark that extension ``optional=true``, the form OpenSearch already accepts for
  ``workload-management``. What it does need from there is the commons-collections4 jar that
  rule-framework puts on its extenders' class path (privilege checks fail with
  NoClassDefFoundError without it): the rewritten plugin zip carries that jar itself.
* Its own home and ports (default https 9243, transport 9343), never the dev node's; downloads
  come from the dev cluster's cache, so only the first start touches the network.
* Every start: a fresh data folder, fresh certificates (``certs``) and fresh random passwords; the
  security index is initialised from ``security_config``'s files
  (``plugins.security.allow_default_init_securityindex``).
"""
from __future__ import annotations

import shutil
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from grdr_plugin.cluster import maven, opensearch_node, procs
from grdr_plugin.cluster.artifacts import MARKER, Log, check_extended_plugins, ensure_distribution, install_plugin
from grdr_plugin.cluster.java import find_jdk
from grdr_plugin.cluster.maven import Artifact
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.settings import Settings
from tests.support.certs import write_certificates
from tests.support.security_config import ADMIN_ROLE, NodeUser, new_user, security_settings, write_security_config

SECURE_VERSION = "3.4.0"
SECURITY_PLUGIN = "opensearch-security"
OPTIONAL_EXTENSIONS = ("rule-framework",)
# what rule-framework would lend the security plugin (the version OpenSearch 3.4/3.5 bundle there)
LENT_JARS = (Artifact("org.apache.commons", "commons-collections4", "4.5.0"),)
INGEST_ROLE = "grdr_ingest"
QUERY_ROLE = "grdr_query"
DESCRIPTOR = "plugin-descriptor.properties"


@dataclass(frozen=True)
class SecurePaths(ClusterPaths):
    """The secured node's own home; Maven downloads are shared with the dev cluster's cache."""

    shared_cache: Path

    @property
    def cache(self) -> Path:
        return self.shared_cache


@dataclass
class SecureNode:
    url: str
    ca_file: Path
    users: dict[str, NodeUser]  # by role: all_access (admin), grdr_ingest, grdr_query
    pid: int
    settings: Settings  # the node's own (home, version, ports); not a client's
    paths: SecurePaths

    def client_settings(self, role: str, **overrides: Any) -> Settings:
        """Client settings for the user of ``role`` (CA verification on), as GRDR_* would give them."""
        user = self.users[role]
        values: dict[str, Any] = dict(opensearch_url=self.url, opensearch_user=user.name,
                                      opensearch_password=user.password, opensearch_ca_file=self.ca_file)
        return Settings(**{**values, **overrides})

    def env(self, role: str) -> dict[str, str]:
        """The same as GRDR_* environment variables, for a worker or CLI subprocess."""
        user = self.users[role]
        return {"GRDR_OPENSEARCH_URL": self.url, "GRDR_OPENSEARCH_USER": user.name,
                "GRDR_OPENSEARCH_PASSWORD": user.password.get_secret_value(),
                "GRDR_OPENSEARCH_CA_FILE": str(self.ca_file)}

    def health(self) -> Optional[str]:
        """Cluster health as the admin user; None while the node (or its security index) is not up yet."""
        from opensearchpy.exceptions import OpenSearchException

        client = self.client_settings(ADMIN_ROLE, opensearch_timeout_s=5.0).opensearch_client()
        try:
            return client.cluster.health()["status"]
        except OpenSearchException:
            return None
        finally:
            client.close()  # polled every second while the node starts: no pool left behind


def security_artifact(version: str) -> Artifact:
    return Artifact("org.opensearch.plugin", SECURITY_PLUGIN, f"{version}.0", "zip")


def mark_optional(descriptor: str, names: tuple[str, ...]) -> str:
    """The descriptor with ``names`` in ``extended.plugins`` marked ``;optional=true``."""
    out = []
    for line in descriptor.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "extended.plugins":
            entries = [e.strip() for e in value.split(",") if e.strip()]
            value = ",".join(f"{e};optional=true" if e in names else e
                             for e in entries)
            line = f"{key}={value}"
        out.append(line)
    return "\n".join(out) + "\n"


def _without_rule_framework(plugin_zip: Path, jars: list[Path], out: Path) -> Path:
    """A copy of the plugin zip whose descriptor marks OPTIONAL_EXTENSIONS optional, plus ``jars``."""
    with zipfile.ZipFile(plugin_zip) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == DESCRIPTOR:
                data = mark_optional(data.decode(), OPTIONAL_EXTENSIONS).encode()
            dst.writestr(info, data)
        for jar in jars:
            dst.write(jar, jar.name)
    return out


def ensure_security_plugin(home: Path, paths: SecurePaths, java_home: Path, log: Log) -> None:
    """Install opensearch-security into the assembled home once (a marker says it is complete)."""
    plugin_dir = home / "plugins" / SECURITY_PLUGIN
    if (plugin_dir / MARKER).is_file():
        return
    shutil.rmtree(plugin_dir, ignore_errors=True)  # a half-done earlier install
    plugin_zip, _ = maven.fetch(security_artifact(SECURE_VERSION), paths.maven_repo)
    jars = [maven.fetch(art, paths.maven_repo)[0] for art in LENT_JARS]
    patched = _without_rule_framework(plugin_zip, jars, paths.opensearch / f"{SECURITY_PLUGIN}-{SECURE_VERSION}.zip")
    check_extended_plugins(home, patched)
    install_plugin(home, patched, java_home, log)
    patched.unlink()
    (plugin_dir / MARKER).write_text(f"{SECURE_VERSION}.0 with {', '.join(OPTIONAL_EXTENSIONS)} optional\n")


def start(home: Path, cache: Path, roles_file: Path, *, http_port: int = 9243, transport_port: int = 9343,
          heap: str = "512m", log: Log = lambda _msg: None) -> SecureNode:
    """Assemble (first time only) and start the secured node; return once its health is yellow/green."""
    settings = Settings(home=home, opensearch_version=SECURE_VERSION, opensearch_port=http_port,
                        opensearch_heap=heap)
    paths = SecurePaths(home=home.expanduser().resolve(), shared_cache=cache.expanduser().resolve())
    with procs.exclusive(paths.lock):
        opensearch_node.stop(settings, paths)  # one left over by a killed test run
        jdk = find_jdk(settings.java_home)
        dist = ensure_distribution(paths, SECURE_VERSION, settings.knn_version(), jdk.home, log)
        ensure_security_plugin(dist.home, paths, jdk.home, log)
        shutil.rmtree(paths.data, ignore_errors=True)  # the security index is initialised from the files below
        conf = dist.home / "config"
        certs = write_certificates(conf / "grdr-certs")
        users = [new_user("grdr-admin", ADMIN_ROLE), new_user("grdr-ingest", INGEST_ROLE),
                 new_user("grdr-query", QUERY_ROLE)]
        write_security_config(conf / SECURITY_PLUGIN, roles_file, users)
        t0 = time.monotonic()
        pid = opensearch_node.spawn(settings, paths, dist.home, jdk.home,
                                    security_settings(certs, conf, transport_port))
        node = SecureNode(url=f"https://127.0.0.1:{http_port}", ca_file=certs.ca, users={u.role: u for u in users},
                          pid=pid, settings=settings, paths=paths)
        try:
            opensearch_node.wait_healthy(node.url, pid, paths, t0, probe=lambda _url: node.health())
        except BaseException:
            opensearch_node.stop(settings, paths)
            raise
    log(f"secured OpenSearch {SECURE_VERSION} up at {node.url} in {time.monotonic() - t0:.1f} s")
    return node


def stop(node: SecureNode) -> None:
    with procs.exclusive(node.paths.lock):
        opensearch_node.stop(node.settings, node.paths)


@contextmanager
def running(home: Path, cache: Path, roles_file: Path, **kwargs: Any) -> Iterator[SecureNode]:
    """``start`` ... ``stop``, whatever happens in between."""
    node = start(home, cache, roles_file, **kwargs)
    try:
        yield node
    finally:
        stop(node)
