"""Auth, TLS and the least-privilege roles against a real secured node, beside the dev cluster.

The node (tests.support.secure_node): OpenSearch 3.4.0 + opensearch-security + k-NN, HTTPS and
TLS transport with certificates made at start, users with bcrypt hashes, and the roles of
docs/opensearch-roles.yml, the file the docs point at. An ingest user fills the catalog through a
real Celery worker; a query user searches it with grdr's Searcher; neither may do the other's job.
"""
import base64
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from opensearchpy.exceptions import AuthenticationException, AuthorizationException, SSLError

from grdr_plugin import index as gi
from grdr_plugin.cluster.errors import ClusterError, tail
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.id_registry import REGISTRY_INDEX
from grdr_plugin.runtime import ModelRuntime
from ingest.indexer import record_errors
from ingest.schemas import RecordError
from ingest.submit import enqueue, make_plan, wait
from ingest.target import prepare_target
from ingest.worker_process import celery_worker
from query.searcher import Searcher, clean_query
from tests.conftest import shared_dataset
from tests.support.secure_node import INGEST_ROLE, QUERY_ROLE, SecureNode, running
from tests.support.security_config import ADMIN_ROLE

ROLES_FILE = Path(__file__).resolve().parents[2] / "docs" / "opensearch-roles.yml"
ALIAS = "msrvtt"  # the example catalog docs/opensearch-roles.yml grants
ERRORS_INDEX = "grdr-ingest-errors"
CONSTANT_SCRIPTS = {"knn_score"}  # every script source grdr sends
INJECTION = ('"}}, "script": {"source": "ctx._source.title = \'pwned\'", "lang": "painless"}}\n'
             '{"index": "grdr-id-registry"}\n{"query": {"match_all": {}}} cooking')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def secure(settings) -> Iterator[SecureNode]:
    """A fresh secured node under <GRDR_HOME>/secure (downloads shared with the dev cluster's cache)."""
    home = ClusterPaths.from_settings(settings)
    try:
        with running(home.home / "secure", home.cache, ROLES_FILE, http_port=free_port(),
                     transport_port=free_port()) as node:
            yield node
    except ClusterError as exc:  # a node that does not start is a failure, with its log
        pytest.fail(f"secured node: {exc.message} ({exc.hint})\n" + "\n".join(tail(exc.log)))


def client_of(secure: SecureNode, role: str, **overrides: Any):
    return secure.client_settings(role, **overrides).opensearch_client()


@pytest.fixture(scope="module")
def catalog(secure, tiny_model_dir, tmp_path_factory) -> Path:
    """msrvtt ingested as the ingest user by a real worker whose only credentials are GRDR_* env; its log."""
    log = tmp_path_factory.mktemp("secure-worker") / "worker.log"
    target = prepare_target(client_of(secure, INGEST_ROLE), ALIAS, tiny_model_dir)
    with celery_worker(log_path=log, extra_env=secure.env(INGEST_ROLE)) as queue:
        summary, _ = wait(enqueue(make_plan(dataset=shared_dataset("msrvtt"), batch_size=500), target, queue=queue))
    assert (summary.indexed, summary.failed) == (1000, 0), summary.errors[:3]
    return log


def secrets_of(secure: SecureNode) -> list[str]:
    """Every password, and each basic-auth header value (base64 of user:password)."""
    out = []
    for u in secure.users.values():
        pw = u.password.get_secret_value()
        out += [pw, base64.b64encode(f"{u.name}:{pw}".encode()).decode()]
    return out


def grdr_cli(secure: SecureNode, role: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`grdr ...` in a subprocess whose OpenSearch settings are the user's GRDR_* variables (plus ``env``);
    whatever it printed is checked for every password of the node."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRDR_OPENSEARCH_")}
    out = subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True,
                         timeout=120, env={**base, **secure.env(role), **env})
    for secret in secrets_of(secure) + list(env.values()):
        assert not secret or secret not in out.stdout + out.stderr, f"`grdr {' '.join(args)}` printed a secret"
    return out


def said(out: subprocess.CompletedProcess) -> str:
    """stdout + stderr with the console's line wrapping undone."""
    return " ".join((out.stdout + out.stderr).split())


# ---- roles ----

def test_the_ingest_user_creates_the_index_and_a_worker_indexes_through_tls_and_auth(secure, catalog):
    admin = client_of(secure, ADMIN_ROLE)
    assert gi.alias_target(admin, ALIAS) == f"{ALIAS}-v000001"
    assert admin.count(index=ALIAS)["count"] == 1000
    assert admin.count(index=REGISTRY_INDEX)["count"] > 1  # IDs + the generation counter, published by the worker


def test_the_ingest_user_records_failures_in_the_errors_index(secure, catalog):
    ingest = client_of(secure, INGEST_ROLE)
    record_errors(ingest, ERRORS_INDEX, ALIAS, f"{ALIAS}-v000001", "task-1",
                  [RecordError(video_id="bad-1", reason="wrong feature dimension")])
    admin = client_of(secure, ADMIN_ROLE)  # ingest writes failures; reading them back is not its job
    admin.indices.refresh(index=ERRORS_INDEX)
    assert admin.count(index=ERRORS_INDEX, body={"query": {"term": {"video_id": "bad-1"}}})["count"] == 1


@pytest.mark.parametrize("action", [
    lambda c: gi.drop_index(c, ALIAS),
    lambda c: c.indices.create(index="not-grdr"),
    lambda c: c.index(index="not-grdr", body={"x": 1}),
    lambda c: c.search(index=".opendistro_security"),
], ids=["drop-catalog", "create-foreign-index", "write-foreign-index", "read-security-index"])
def test_the_ingest_user_is_refused_what_ingest_never_does(secure, catalog, action: Callable):
    with pytest.raises(AuthorizationException):
        action(client_of(secure, INGEST_ROLE))


@pytest.mark.parametrize("action", [
    lambda c: c.index(index=ALIAS, id="x", body={"video_id": "x"}),
    lambda c: c.bulk(body=[{"index": {"_index": ALIAS, "_id": "x"}}, {"video_id": "x"}]),
    lambda c: c.update(index=REGISTRY_INDEX, id=f"{ALIAS}|__generation__", body={"doc": {"generation": 0}}),
    lambda c: c.delete(index=ALIAS, id="video7000.mp4"),
    lambda c: c.indices.create(index=f"{ALIAS}-v000002"),
    lambda c: c.indices.put_alias(index=f"{ALIAS}-v000001", name="elsewhere"),
    lambda c: c.indices.delete(index=f"{ALIAS}-v000001"),
], ids=["index", "bulk", "registry-update", "delete", "create-index", "put-alias", "delete-index"])
def test_the_query_user_is_refused_every_write(secure, catalog, action: Callable):
    with pytest.raises(AuthorizationException):
        action(client_of(secure, QUERY_ROLE))
    assert client_of(secure, ADMIN_ROLE).count(index=ALIAS)["count"] == 1000


def test_the_query_user_searches_with_grdr(secure, catalog, tiny_model_dir):
    searcher = Searcher(tiny_model_dir, ALIAS, client=client_of(secure, QUERY_ROLE), beam_size=8, max_pool=40)
    for mode in ("off", "rrf", "union"):
        res = searcher.search("a man is cooking in a kitchen", k=5, hybrid=mode)
        assert len(res.hits) == 5
        assert [h.score for h in res.hits] == sorted((h.score for h in res.hits), reverse=True)


# ---- text and vectors travel only as values ----

def json_paths(obj: Any, wanted: Callable[[Any], bool], path: tuple = ()) -> list[tuple]:
    """Paths of every value (and every dict key, as path + ("<key>",)) for which ``wanted`` holds."""
    found = [path] if wanted(obj) else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += [path + (key, "<key>")] if wanted(key) else []
            found += json_paths(value, wanted, path + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += json_paths(value, wanted, path + (i,))
    return found


def at(obj: Any, path: tuple) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def msearch_bodies(records: list[logging.LogRecord]) -> list[str]:
    """The _msearch bodies opensearch-py logged: its "METHOD URL [status...]" line, then "> BODY" (debug)."""
    url, bodies = "", []
    for r in records:
        if r.name == "opensearch" and r.msg.startswith("%s %s [status"):
            url = r.args[1]
        elif r.name == "opensearch" and r.msg == "> %s" and "/_msearch" in url:
            bodies.append(r.args[0])
    return bodies


def test_query_text_and_vector_reach_opensearch_only_as_values(secure, catalog, tiny_model_dir, caplog):
    """The bodies opensearch-py sent (its own debug log), for an injection-shaped query in every mode."""
    searcher = Searcher(tiny_model_dir, ALIAS, client=client_of(secure, QUERY_ROLE), beam_size=8, max_pool=40)
    text = clean_query(INJECTION)  # what the Searcher sends: control characters (the newlines) become spaces
    qvec = ModelRuntime(tiny_model_dir).query_vectors([text])[0]
    for mode in ("off", "rrf", "union"):
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="opensearch"):
            hits = searcher.search(INJECTION, k=5, hybrid=mode).hits
        assert len(hits) == 5
        sent = msearch_bodies(caplog.records)
        lines = [json.loads(line) for body in sent for line in body.strip().split("\n")]
        # the text's newlines and JSON added no _msearch lines: every header is ours, on every other line
        assert lines and all(header == {"index": ALIAS} for header in lines[0::2])
        assert json_paths(lines, lambda v: isinstance(v, dict) and "knn" in v), "the GRDR request: a knn query"
        for body in lines[1::2]:
            # the text: only ever the value of a DSL "query" key (the BM25 multi_match), never a key or a script
            for p in json_paths(body, lambda v: isinstance(v, str) and "pwned" in v):
                assert p[-1] == "query" and "multi_match" in p, p
            # every script source is one of grdr's constants; the vector is only their params.query_value
            # and the knn query's `vector`
            scripts = {p: at(body, p) for p in json_paths(body, lambda v: isinstance(v, dict) and "source" in v)}
            assert all(script["source"] in CONSTANT_SCRIPTS for script in scripts.values()), scripts
            knn = json_paths(body, lambda v: isinstance(v, dict) and "knn" in v)
            assert all(list(at(body, p)["knn"]) == ["grdr_vec"] for p in knn)
            vectors = json_paths(body, lambda v: isinstance(v, list) and len(v) == len(qvec)
                                 and all(isinstance(x, float) for x in v))
            assert sorted([*(p + ("params", "query_value") for p in scripts),
                           *(p + ("knn", "grdr_vec", "vector") for p in knn)]) == sorted(vectors)
            for p in knn:
                np.testing.assert_allclose(at(body, p)["knn"]["grdr_vec"]["vector"], qvec, rtol=1e-5, atol=1e-6)
            for script in scripts.values():
                knn = (script["lang"], script["source"]) == ("knn", "knn_score")  # else the best-rank script (painless)
                want = {"field", "query_value", "space_type"} if knn else {"field", "n", "rank"}
                assert set(script["params"]) == want
                np.testing.assert_allclose(script["params"]["query_value"], qvec, rtol=1e-5, atol=1e-6)
    admin = client_of(secure, ADMIN_ROLE)
    assert admin.count(index=ALIAS, body={"query": {"term": {"title.raw": "pwned"}}})["count"] == 0


# ---- TLS ----

def test_tls_verified_with_the_ca_file(secure):
    assert client_of(secure, ADMIN_ROLE).info()["version"]["number"] == "3.4.0"


def test_tls_without_the_ca_fails_fast_and_clearly(secure, catalog):
    t0 = time.monotonic()
    with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        client_of(secure, ADMIN_ROLE, opensearch_ca_file=None).info()
    assert time.monotonic() - t0 < 10, "a verification failure must not hang"
    out = grdr_cli(secure, QUERY_ROLE, "index", "info", ALIAS, GRDR_OPENSEARCH_CA_FILE="")
    assert out.returncode == 1
    assert "could not be verified; set GRDR_OPENSEARCH_CA_FILE" in said(out)


def test_tls_without_verification_works_and_warns(secure):
    with pytest.warns(UserWarning, match="GRDR_VERIFY_CERTS is off"):
        client = client_of(secure, ADMIN_ROLE, opensearch_ca_file=None, verify_certs=False)
    assert client.info()["version"]["number"] == "3.4.0"


# ---- credentials never leak ----

def test_a_wrong_password_is_a_clear_error_without_the_password(secure, catalog):
    wrong = "Wr0ng-" + secure.users[QUERY_ROLE].password.get_secret_value()[::-1]
    with pytest.raises(AuthenticationException) as err:
        client_of(secure, QUERY_ROLE, opensearch_password=wrong).search(index=ALIAS)
    assert err.value.status_code == 401
    assert wrong not in str(err.value) and wrong not in repr(err.value)
    out = grdr_cli(secure, QUERY_ROLE, "index", "info", ALIAS, GRDR_OPENSEARCH_PASSWORD=wrong)
    assert out.returncode == 1 and "refused the credentials (401)" in said(out)


def test_the_cli_never_prints_the_password(secure, catalog, tiny_model_dir):
    """A search that works, a drop the role refuses, and `grdr cluster status`; grdr_cli checks their output."""
    found = grdr_cli(secure, QUERY_ROLE, "search", "a man is cooking", "--model", str(tiny_model_dir),
                     "--index", ALIAS, "-k", "3", "--json")
    assert len(json.loads(found.stdout.strip().splitlines()[-1])["hits"]) == 3
    refused = grdr_cli(secure, QUERY_ROLE, "index", "drop", ALIAS, "--yes")
    assert refused.returncode == 1 and "denied this user the action (403)" in said(refused)
    assert client_of(secure, ADMIN_ROLE).count(index=ALIAS)["count"] == 1000
    status = grdr_cli(secure, QUERY_ROLE, "cluster", "status")
    assert "OpenSearch" in status.stdout


# ---- grdr doctor on a secured cluster ----

def doctor(secure: SecureNode, role: str, url: str = "", **env: str) -> tuple[subprocess.CompletedProcess,
                                                                               dict[str, dict]]:
    """`grdr doctor` as the user of `role`, its settings changed by `env` (secrets: never printed) or `url`."""
    out = grdr_cli(secure, role, "doctor", "--index", ALIAS, "--json", **env) if not url else \
        subprocess.run([sys.executable, "-m", "cli.main", "doctor", "--json"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, **secure.env(role), "GRDR_OPENSEARCH_URL": url})
    return out, {c["name"]: c for c in json.loads(out.stdout.strip().splitlines()[-1])["checks"]}


def test_doctor_as_admin_checks_tls_auth_knn_and_the_catalog(secure, catalog):
    out, checks = doctor(secure, ADMIN_ROLE)
    assert out.returncode == 0, out.stdout
    assert checks["TLS"] == {"name": "TLS", "status": "ok", "fix": "",
                             "detail": f"https, certificate verified against {secure.ca_file}"}
    assert checks["auth"]["detail"].startswith(f"user {secure.users[ADMIN_ROLE].name!r}")
    assert checks["k-NN"]["status"] == "ok" and "opensearch-knn 3.4.0.0" in checks["k-NN"]["detail"]
    assert checks[f"index {ALIAS}"]["status"] == "ok" and "1,000 documents" in checks[f"index {ALIAS}"]["detail"]


def test_doctor_as_the_query_user_warns_where_its_role_may_not_look(secure, catalog):
    out, checks = doctor(secure, QUERY_ROLE)
    assert out.returncode == 0, out.stdout  # a least-privilege user is not a failure
    assert checks["auth"]["detail"] == f"user {secure.users[QUERY_ROLE].name!r} (roles: {QUERY_ROLE})"
    assert checks["cluster health"]["status"] == "warn" and "(403)" in checks["cluster health"]["detail"]
    assert checks[f"index {ALIAS}"]["status"] == "ok" and checks["ID registry"]["status"] == "ok"


def test_doctor_names_what_to_fix_for_a_wrong_scheme_ca_or_password(secure, catalog):
    out, checks = doctor(secure, QUERY_ROLE, url=secure.url.replace("https://", "http://"))
    assert out.returncode == 1
    assert checks["OpenSearch"]["fix"] == f"if the node serves TLS, set GRDR_OPENSEARCH_URL={secure.url}"
    out, checks = doctor(secure, QUERY_ROLE, GRDR_OPENSEARCH_CA_FILE="")
    assert out.returncode == 1 and "could not be verified" in checks["TLS"]["detail"]
    out, checks = doctor(secure, QUERY_ROLE, GRDR_OPENSEARCH_PASSWORD="not-it")
    assert out.returncode == 1 and checks["auth"]["detail"].endswith(f"of user {secure.users[QUERY_ROLE].name!r}")


def test_client_and_worker_logs_never_hold_credentials(secure, catalog, caplog):
    with caplog.at_level(logging.DEBUG):  # opensearch-py's and urllib3's request logs, at their most verbose
        client_of(secure, QUERY_ROLE).count(index=ALIAS)
        with pytest.raises(AuthenticationException):
            client_of(secure, QUERY_ROLE, opensearch_password="not-it").count(index=ALIAS)
    logged = caplog.text + catalog.read_text()
    assert "POST" in logged or "GET" in logged  # the request logs were on
    for secret in secrets_of(secure):
        assert secret not in logged
