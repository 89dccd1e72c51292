"""What a failed request to OpenSearch says: the URL, what is wrong and the variable to change. The servers
are real sockets on loopback (plain HTTP, TLS with throwaway certificates, one that answers 401); no node."""
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from opensearchpy.exceptions import OpenSearchException

from grdr_plugin.cluster.remote import check_opensearch, connection_problem, tls_check
from grdr_plugin.settings import Settings
from tests.support.certs import write_certificates


class Handler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"error": "unauthorized"} if self.status == 401 else {"version": {"number": "3.5.0"}})
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args) -> None:
        pass


class Unauthorized(Handler):
    status = 401


def serve(handler=Handler, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.handle_error = lambda *a: None  # a refused handshake is the point of some tests, not news
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return write_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def plain_port():
    yield from serve()


@pytest.fixture
def tls_port(certs):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.node_cert, certs.node_key)
    yield from serve(tls=ctx)


def problem(**settings) -> tuple[str, str]:
    s = Settings(**settings)
    with pytest.raises(OpenSearchException) as err:
        s.opensearch_client().info()
    return connection_problem(err.value, s)


def test_https_against_a_plain_node_says_so_instead_of_blaming_the_ca(plain_port):
    what, fix = problem(opensearch_url=f"https://127.0.0.1:{plain_port}")
    assert what == f"OpenSearch at https://127.0.0.1:{plain_port} answers plain HTTP, not TLS"
    assert fix.startswith(f"set GRDR_OPENSEARCH_URL=http://127.0.0.1:{plain_port}")


def test_http_against_a_tls_node_says_to_use_https(tls_port):
    what, fix = problem(opensearch_url=f"http://127.0.0.1:{tls_port}")
    assert what == f"OpenSearch at http://127.0.0.1:{tls_port} hung up without an HTTP answer"
    assert fix == f"if the node serves TLS, set GRDR_OPENSEARCH_URL=https://127.0.0.1:{tls_port}"


def test_an_unverified_certificate_names_the_ca_variable(tls_port, certs):
    what, fix = problem(opensearch_url=f"https://127.0.0.1:{tls_port}")
    assert "could not be verified" in what and fix.startswith("set GRDR_OPENSEARCH_CA_FILE to the CA that signed it")
    url = f"https://127.0.0.1:{tls_port}"
    assert Settings(opensearch_url=url, opensearch_ca_file=certs.ca).opensearch_client().info()["version"]
    assert tls_check(Settings(opensearch_url=url, opensearch_ca_file=certs.ca)).detail == \
        f"https, certificate verified against {certs.ca}"


def test_a_ca_file_that_is_not_a_file_is_named_and_an_empty_one_is_unset(tls_port, tmp_path, monkeypatch):
    what, fix = problem(opensearch_url=f"https://127.0.0.1:{tls_port}", opensearch_ca_file=tmp_path)
    assert what == f"GRDR_OPENSEARCH_CA_FILE={tmp_path} is not a file" and "unset it" in fix
    monkeypatch.setenv("GRDR_OPENSEARCH_CA_FILE", "")
    assert Settings().opensearch_ca_file is None


def test_401_names_the_user_or_asks_for_one():
    for port in serve(Unauthorized):
        url = f"http://127.0.0.1:{port}"
        assert problem(opensearch_url=url, opensearch_user="grdr-query", opensearch_password="pw") == (
            f"OpenSearch at {url} refused the credentials (401) of user 'grdr-query'",
            "check GRDR_OPENSEARCH_USER and GRDR_OPENSEARCH_PASSWORD")
        assert problem(opensearch_url=url)[0] == f"OpenSearch at {url} asks for credentials (401)"


def test_nothing_listening_is_one_failed_check_naming_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    checks = check_opensearch(Settings(opensearch_url=f"http://127.0.0.1:{port}"))
    assert [(c.name, c.status) for c in checks] == [("OpenSearch", "fail")]
    assert checks[0].detail == f"cannot reach OpenSearch at http://127.0.0.1:{port}: connection refused"


def test_tls_check_warns_about_plain_http_to_another_host_and_unverified_certificates():
    assert tls_check(Settings(opensearch_url="http://search.example:9200")).status == "warn"
    assert tls_check(Settings(opensearch_url="http://127.0.0.1:9200")).status == "ok"
    assert tls_check(Settings(opensearch_url="https://x:9200", verify_certs=False)).status == "warn"
