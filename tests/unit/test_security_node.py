"""The secured node's parts that need no node: certificates, security files, plugin descriptor, roles file."""
import json
import stat
from pathlib import Path

import bcrypt
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from grdr_plugin.cluster.artifacts import required_extended_plugins
from grdr_plugin.cluster.errors import ClusterError
from grdr_plugin.cluster.node_config import render_opensearch_yml
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.settings import Settings
from tests.support.certs import write_certificates
from tests.support.secure_node import INGEST_ROLE, QUERY_ROLE, mark_optional
from tests.support.security_config import new_user, security_settings, write_security_config

ROLES_FILE = Path(__file__).resolve().parents[2] / "docs" / "opensearch-roles.yml"


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificates_chain_to_the_ca_and_name_the_loopback_host(tmp_path):
    certs = write_certificates(tmp_path / "certs")
    ca, node, admin = load_cert(certs.ca), load_cert(certs.node_cert), load_cert(certs.admin_cert)
    node.verify_directly_issued_by(ca)
    admin.verify_directly_issued_by(ca)
    san = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert (certs.node_dn, certs.admin_dn) == (node.subject.rfc4514_string(), admin.subject.rfc4514_string())
    for key in (certs.node_key, certs.admin_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, what the plugin reads


def test_security_files_hold_bcrypt_hashes_and_the_roles_file_unchanged(tmp_path):
    users = [new_user("grdr-ingest", INGEST_ROLE), new_user("grdr-query", QUERY_ROLE)]
    write_security_config(tmp_path, ROLES_FILE, users)
    written = {p.name: json.loads(p.read_text()) for p in tmp_path.iterdir()}
    assert written["roles.yml"] == yaml.safe_load(ROLES_FILE.read_text())
    assert written["roles_mapping.yml"][QUERY_ROLE] == {"users": ["grdr-query"]}
    for u in users:
        clear = u.password.get_secret_value()
        assert bcrypt.checkpw(clear.encode(), written["internal_users.yml"][u.name]["hash"].encode())
        assert all(clear not in p.read_text() for p in tmp_path.iterdir())


def test_a_role_the_roles_file_lacks_is_refused(tmp_path):
    with pytest.raises(ClusterError, match="does not define the role"):
        write_security_config(tmp_path, ROLES_FILE, [new_user("someone", "grdr_admin")])


def test_the_query_role_is_read_only():
    query = yaml.safe_load(ROLES_FILE.read_text())[QUERY_ROLE]
    actions = query["cluster_permissions"] + [a for p in query["index_permissions"] for a in p["allowed_actions"]]
    writes = ("write", "create", "delete", "index", "crud", "manage", "all", "put", "update")
    assert not [a for a in actions if any(w in a.split("/")[-1] for w in writes)
                or a in ("indices:admin/aliases", "indices:admin/aliases*")]


def test_the_node_yml_turns_on_tls_with_dn_lists(tmp_path):
    certs = write_certificates(tmp_path / "config" / "grdr-certs")
    s = Settings(home=tmp_path, opensearch_port=9243)
    yml = yaml.safe_load(render_opensearch_yml(s, ClusterPaths.from_settings(s),
                                               security_settings(certs, tmp_path / "config", 9343)))
    assert yml["plugins.security.ssl.http.enabled"] is True
    assert yml["plugins.security.ssl.http.pemcert_filepath"] == "grdr-certs/node.pem"
    assert yml["plugins.security.nodes_dn"] == [certs.node_dn]
    assert yml["plugins.security.authcz.admin_dn"] == [certs.admin_dn]
    assert (yml["http.port"], yml["transport.port"]) == (9243, 9343)


def test_rule_framework_becomes_an_optional_extension():
    desc = "name=opensearch-security\nextended.plugins=workload-management;optional=true,rule-framework\n"
    rewritten = mark_optional(desc, ("rule-framework",))
    assert "extended.plugins=workload-management;optional=true,rule-framework;optional=true" in rewritten
    props = dict(line.split("=", 1) for line in rewritten.splitlines())
    assert required_extended_plugins(props) == []
    assert required_extended_plugins({"extended.plugins": "lang-painless,transport-grpc"}) == \
        ["lang-painless", "transport-grpc"]
