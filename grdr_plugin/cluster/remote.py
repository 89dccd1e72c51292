"""Whichever OpenSearch the settings point at: the checks of `grdr doctor` (alias `grdr cluster status`), and
the one-line account of a failed request that every command prints.

A check is ok, warn or fail, says what it found and, unless ok, the fix. A check the user's role may not
run (403) is a warning, not a failure: least-privilege users are the norm on a real cluster, and the
roles of docs/opensearch-roles.yml may not read cluster state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional
from urllib.parse import urlsplit

from grdr_plugin import id_registry
from grdr_plugin import index as grdr_index
from grdr_plugin.cluster import opensearch_node
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.settings import Settings

Status = Literal["ok", "warn", "fail"]
KNN_PLUGIN = "opensearch-knn"
ALLOCATION_HINT = "GET _cluster/allocation/explain says why"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# What the TLS stack says, in OpenSSL 1.1 and 3.x wordings, when ...
# ... a TLS client got a plain-HTTP answer (https:// against a plain node):
_PLAIN_HTTP_SIGNS = ("wrong version number", "wrong_version_number", "record layer failure", "http request",
                     "packet length too long", "unknown protocol")
# ... the certificate names another host:
_HOSTNAME_SIGNS = ("hostname mismatch", "doesn't match", "not valid for")
# ... a plain-HTTP client reached a TLS port (http:// against a TLS node: it hangs up on the first byte):
_HUNG_UP_SIGNS = ("remotedisconnected", "connection aborted", "connection reset", "badstatusline",
                  "remote end closed")
_DNS_SIGNS = ("name or service not known", "nodename nor servname", "name resolution", "getaddrinfo failed")


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def is_local(settings: Settings) -> bool:
    """Whether GRDR_OPENSEARCH_URL is the node `grdr cluster start` runs (loopback, its port; of a list, the first)."""
    parts = urlsplit(settings.opensearch_urls[0])
    return parts.hostname in LOOPBACK_HOSTS and parts.port == settings.opensearch_port


def _with_scheme(url: str, scheme: str) -> str:
    return ",".join(scheme + "://" + u.split("://", 1)[1] for u in url.split(","))  # each node of a list


def connection_problem(exc: BaseException, settings: Settings) -> tuple[str, str]:
    """(what went wrong, the fix) for an error raised by a request to settings.opensearch_url; both name the URL
    or the variable to change, never a credential."""
    from opensearchpy.exceptions import AuthenticationException, AuthorizationException, ConnectionTimeout, SSLError
    from opensearchpy.exceptions import ConnectionError as OSConnectionError

    url = settings.opensearch_url
    at = f"OpenSearch at {url}"
    # the transport's message and the underlying urllib3/ssl error it wraps (exc.info)
    text = f"{exc} {getattr(exc, 'info', '')!r}".lower()
    if isinstance(exc, SSLError):  # before ConnectionError, its base class
        ca = settings.opensearch_ca_file
        if ca is not None and not ca.is_file():
            return (f"GRDR_OPENSEARCH_CA_FILE={ca} is not a file",
                    "point it at the PEM bundle of the CA that signed the certificate of OpenSearch at "
                    f"{url}, or unset it to use the system CAs")
        if any(s in text for s in _PLAIN_HTTP_SIGNS):
            return (f"{at} answers plain HTTP, not TLS",
                    f"set GRDR_OPENSEARCH_URL={_with_scheme(url, 'http')} (http://, not https://)")
        if any(s in text for s in _HOSTNAME_SIGNS):
            return (f"the TLS certificate of {at} is not issued for {urlsplit(url).hostname}",
                    "use the host name the certificate names in GRDR_OPENSEARCH_URL")
        if "certificate verify failed" in text or "certificate_verify_failed" in text:
            return (f"the TLS certificate of {at} could not be verified",
                    "set GRDR_OPENSEARCH_CA_FILE to the CA that signed it"
                    + (f" ({ca} did not)" if ca else "")
                    + " (GRDR_VERIFY_CERTS=false skips the check: for a test node only)")
        return f"the TLS handshake with {at} failed ({getattr(exc, 'info', exc)})", \
            "check that this port serves HTTPS and that GRDR_OPENSEARCH_URL names it"
    if isinstance(exc, ConnectionTimeout):
        return (f"{at} did not answer within {settings.opensearch_timeout_s:g} s",
                "check the host and port in GRDR_OPENSEARCH_URL and the network between; "
                "GRDR_OPENSEARCH_TIMEOUT_S sets the limit")
    if isinstance(exc, OSConnectionError):
        if url.startswith("http://") and any(s in text for s in _HUNG_UP_SIGNS):
            return (f"{at} hung up without an HTTP answer",
                    f"if the node serves TLS, set GRDR_OPENSEARCH_URL={_with_scheme(url, 'https')}")
        if any(s in text for s in _DNS_SIGNS):
            return (f"cannot resolve the host of {at}", "check the host name in GRDR_OPENSEARCH_URL")
        refused = ": connection refused" if "refused" in text else ""
        fix = ("start the local one with `grdr cluster start`" if is_local(settings) else
               "check GRDR_OPENSEARCH_URL, that the node runs and that this machine may reach it")
        return f"cannot reach {at}{refused}", fix
    if isinstance(exc, AuthenticationException):
        if settings.opensearch_user:
            return (f"{at} refused the credentials (401) of user {settings.opensearch_user!r}",
                    "check GRDR_OPENSEARCH_USER and GRDR_OPENSEARCH_PASSWORD")
        return f"{at} asks for credentials (401)", "set GRDR_OPENSEARCH_USER and GRDR_OPENSEARCH_PASSWORD"
    if isinstance(exc, AuthorizationException):
        return (f"{at} denied this user the action (403): {exc.error}",
                "map the user to the grdr role for the job (docs/opensearch-roles.yml)")
    status = getattr(exc, "status_code", None)
    return f"{at} answered {status}: {getattr(exc, 'error', exc)}", ""


# ---- the checks ----

def _local_node(check: Check, settings: Settings) -> Check:
    """The reachability check of the node `grdr cluster start` runs, with what only this machine knows: its pid,
    or that it is still starting."""
    paths = ClusterPaths.from_settings(settings)
    pid = opensearch_node.node_pid(paths) if is_local(settings) else None
    if pid is None:
        return check
    if check.status == "ok":
        return Check(check.name, "ok", f"{check.detail}, pid {pid}")
    if opensearch_node.root_info(opensearch_node.base_url(settings)) is None:  # nothing answers on its port yet
        return Check(check.name, "warn", f"starting (pid {pid}); nothing answers yet",
                     f"wait for `grdr cluster start`, or read the node's log in {paths.logs}")
    return check


def tls_check(settings: Settings) -> Check:
    url = settings.opensearch_url
    if url.startswith("https://"):
        if not settings.verify_certs:
            return Check("TLS", "warn", "https, certificate NOT verified (GRDR_VERIFY_CERTS=false)",
                         "set GRDR_OPENSEARCH_CA_FILE and drop GRDR_VERIFY_CERTS=false outside a test node")
        ca = settings.opensearch_ca_file
        return Check("TLS", "ok", f"https, certificate verified against {ca or 'the system CA store'}")
    if all(urlsplit(u).hostname in LOOPBACK_HOSTS for u in settings.opensearch_urls):
        return Check("TLS", "ok", "plain http on loopback")
    return Check("TLS", "warn", "plain http to another host: requests and credentials travel unencrypted",
                 f"serve HTTPS and set GRDR_OPENSEARCH_URL={_with_scheme(url, 'https')}")


def _denied(name: str, what: str) -> Check:
    return Check(name, "warn", f"not checked: this user may not {what} (403)",
                 "run `grdr doctor` as an admin to check it")


def _guard(name: str, what: str, settings: Settings, fn: Callable[[], list[Check]]) -> list[Check]:
    """Run checks; a 403 is a warning (the role may not look), any other OpenSearch error a failure."""
    from opensearchpy.exceptions import AuthorizationException, OpenSearchException

    try:
        return fn()
    except AuthorizationException:
        return [_denied(name, what)]
    except OpenSearchException as exc:
        problem, fix = connection_problem(exc, settings)
        return [Check(name, "fail", problem, fix)]


def _auth(client, settings: Settings) -> Check:
    from opensearchpy.exceptions import NotFoundError, RequestError

    try:
        who = client.transport.perform_request("GET", "/_plugins/_security/authinfo")
    except (NotFoundError, RequestError):  # no security plugin: no such route
        if settings.opensearch_user:
            return Check("auth", "warn", "no security plugin: GRDR_OPENSEARCH_USER is sent but nobody checks it",
                         "unset GRDR_OPENSEARCH_USER/PASSWORD, or install the security plugin")
        return Check("auth", "ok", "no security plugin: no login")
    roles = ", ".join(who.get("roles") or []) or "none"
    return Check("auth", "ok", f"user {who.get('user_name')!r} (roles: {roles})")


def _knn(client, core_version: str) -> Check:
    nodes = client.nodes.info(metric="plugins")["nodes"].values()
    want = f"{core_version}.0"  # k-NN's version is the core's plus a fourth digit
    found = {node.get("name", "?"): {p["name"]: p.get("version", "") for p in node.get("plugins", [])}.get(KNN_PLUGIN)
             for node in nodes}
    missing = sorted(name for name, v in found.items() if v is None)
    wrong = sorted(f"{name} has {v}" for name, v in found.items() if v is not None and v != want)
    if missing or wrong:
        return Check("k-NN", "fail", "; ".join(filter(None, [
            f"{KNN_PLUGIN} missing on {', '.join(missing)}" if missing else "",
            f"{', '.join(wrong)} (OpenSearch {core_version} needs {want})" if wrong else ""])),
            f"install {KNN_PLUGIN} {want} on every node (`bin/opensearch-plugin install {KNN_PLUGIN}`), restart them")
    return Check("k-NN", "ok", f"{KNN_PLUGIN} {want} on all {len(found)} node{'s' * (len(found) != 1)}")


def _health(client) -> Check:
    h = client.cluster.health()
    status = h.get("status", "?")
    detail = (f"{status}, {h.get('number_of_nodes')} node(s), {h.get('active_shards')} active shards, "
              f"{h.get('unassigned_shards')} unassigned")
    if status == "green":
        return Check("cluster health", "ok", detail)
    if status == "yellow":
        return Check("cluster health", "warn", detail, "replicas are unassigned: add nodes or lower --replicas")
    return Check("cluster health", "fail", detail, f"a primary shard is unassigned: {ALLOCATION_HINT}")


def _index(client, alias: str) -> Check:
    from opensearchpy.exceptions import AuthorizationException

    name = f"index {alias}"
    target = grdr_index.alias_target(client, alias)
    if target is None:
        return Check(name, "fail", f"no alias {alias!r}", f"`grdr index create --model MODEL --index {alias}` "
                                                         "(or `grdr ingest`, which creates it)")
    fingerprint = grdr_index.fingerprint_of(client.indices.get_mapping(index=target))
    if fingerprint is None:
        return Check(name, "fail", f"{alias} -> {target} has no grdr fingerprint: not a grdr catalog index",
                     "point the alias at an index made by `grdr index create`")
    docs = client.count(index=target)["count"]
    detail = f"{alias} -> {target}, {docs:,} documents, model {fingerprint}"
    try:
        status = client.cluster.health(index=target)["status"]
    except AuthorizationException:  # a role without cluster monitoring still learns the rest
        return Check(name, "ok", detail + " (health not readable by this user)")
    detail += f", health {status}"
    if status == "red":
        return Check(name, "fail", detail, f"a primary shard is unassigned: {ALLOCATION_HINT}")
    return Check(name, "ok" if status == "green" else "warn", detail,
                 "" if status == "green" else "replicas are unassigned: add nodes or lower --replicas")


def _registry(client, alias: Optional[str]) -> Check:
    if not client.indices.exists(index=id_registry.REGISTRY_INDEX):
        return Check("ID registry", "warn", f"{id_registry.REGISTRY_INDEX} does not exist yet",
                     "the first `grdr ingest` creates it; query processes need it")
    if alias is None:
        return Check("ID registry", "ok", f"{id_registry.REGISTRY_INDEX} exists")
    ids = client.count(index=id_registry.REGISTRY_INDEX, body={"query": {"bool": {"filter": [
        {"term": {"alias": alias}}, {"exists": {"field": "semantic_id"}}]}}})["count"]
    generation = id_registry.current_generation(client, alias)
    detail = f"{ids:,} IDs published for {alias}, generation {generation}"
    return Check("ID registry", "ok" if ids else "warn", detail,
                 "" if ids else f"nothing published for {alias} yet: ingest it before serving it")


def check_opensearch(settings: Settings, index: Optional[str] = None, client: Any = None) -> list[Check]:
    """Reachability, TLS, auth, the k-NN plugin and its version, health, the catalog (when given), the registry."""
    from opensearchpy.exceptions import AuthenticationException, AuthorizationException, OpenSearchException, SSLError

    client = client or settings.opensearch_client()
    url = settings.opensearch_url
    try:
        info: Optional[dict[str, Any]] = client.info()
    except AuthorizationException:  # reachable and logged in, but the role may not read GET /
        info = None
    except OpenSearchException as exc:
        problem, fix = connection_problem(exc, settings)
        name = "auth" if isinstance(exc, AuthenticationException) else "TLS" if isinstance(exc, SSLError) else \
            "OpenSearch"
        return [_local_node(Check(name, "fail", problem, fix), settings)]
    checks: list[Check] = []
    if info is None:
        checks.append(Check("OpenSearch", "ok", f"answers at {url} (version not readable by this user)"))
    else:
        version = info.get("version", {})
        checks.append(_local_node(Check("OpenSearch", "ok", f"{version.get('distribution', '?')} "
                                                            f"{version.get('number', '?')} at {url}, cluster "
                                                            f"{info.get('cluster_name', '?')}"), settings))
    checks.append(tls_check(settings))
    checks += _guard("auth", "read its own auth info", settings, lambda: [_auth(client, settings)])
    if info is None:
        checks.append(_denied("k-NN", "read the cluster's version and plugins"))
    else:
        checks += _guard("k-NN", "list the nodes' plugins", settings,
                         lambda: [_knn(client, info["version"]["number"])])
    checks += _guard("cluster health", "read cluster health", settings, lambda: [_health(client)])
    if index is not None:
        checks += _guard(f"index {index}", f"read index {index}", settings, lambda: [_index(client, index)])
    checks += _guard("ID registry", f"read {id_registry.REGISTRY_INDEX}", settings, lambda: [_registry(client, index)])
    return checks
