"""The security plugin's configuration for the local secured node: users, roles, role mapping, auth.

Written into ``config/opensearch-security/`` before the first start of an empty data folder, where
``plugins.security.allow_default_init_securityindex`` loads it into the security index. The roles
are read from one roles file (``docs/opensearch-roles.yml``), so the roles the docs describe are the
roles the tests run against.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, SecretStr

from grdr_plugin.cluster.errors import ClusterError
from grdr_plugin.cluster.node_config import YmlValue
from tests.support.certs import CertFiles

# the built-in role with every permission; only the fixture's admin user gets it
ADMIN_ROLE = "all_access"

# HTTP basic auth against internal_users.yml; no anonymous access
AUTH_CONFIG: dict[str, Any] = {
    "_meta": {"type": "config", "config_version": 2},
    "config": {"dynamic": {
        "http": {"anonymous_auth_enabled": False},
        "authc": {"basic_internal_auth_domain": {
            "description": "HTTP basic auth against internal_users.yml",
            "http_enabled": True, "transport_enabled": True, "order": 0,
            "http_authenticator": {"type": "basic", "challenge": True},
            "authentication_backend": {"type": "intern"},
        }},
    }},
}


class NodeUser(BaseModel):
    """A user of the secured node and the one security role it is mapped to."""

    name: str
    password: SecretStr
    role: str


def new_user(name: str, role: str) -> NodeUser:
    """A user with a fresh random password (unique per start: a leak test can search for it)."""
    return NodeUser(name=name, password=SecretStr(secrets.token_urlsafe(18)), role=role)


def load_roles(roles_file: Path) -> dict[str, Any]:
    """The roles file (security plugin roles.yml format), checked for the ``_meta`` header the plugin needs."""
    import yaml

    try:
        roles = yaml.safe_load(roles_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ClusterError(f"cannot read the roles file {roles_file}: {exc}") from None
    meta = roles.get("_meta", {}) if isinstance(roles, dict) else {}
    if meta.get("type") != "roles" or meta.get("config_version") != 2:
        raise ClusterError(f"{roles_file} is not a security plugin roles file",
                           hint='start it with `_meta: {type: "roles", config_version: 2}`')
    return roles


def internal_users(users: list[NodeUser]) -> dict[str, Any]:
    """internal_users.yml: bcrypt hashes only (the plugin never sees nor stores a clear password)."""
    import bcrypt

    body: dict[str, Any] = {"_meta": {"type": "internalusers", "config_version": 2}}
    for u in users:
        hashed = bcrypt.hashpw(u.password.get_secret_value().encode(), bcrypt.gensalt(rounds=10)).decode()
        body[u.name] = {"hash": hashed, "reserved": False, "description": f"grdr test user ({u.role})"}
    return body


def roles_mapping(users: list[NodeUser]) -> dict[str, Any]:
    body: dict[str, Any] = {"_meta": {"type": "rolesmapping", "config_version": 2}}
    for u in users:
        body.setdefault(u.role, {"users": []})["users"].append(u.name)
    return body


def write_security_config(folder: Path, roles_file: Path, users: list[NodeUser]) -> None:
    """Replace the plugin's demo internal_users/roles/roles_mapping/config with ours (JSON is valid YAML)."""
    roles = load_roles(roles_file)
    unknown = sorted({u.role for u in users} - set(roles) - {ADMIN_ROLE})
    if unknown:
        raise ClusterError(f"{roles_file} does not define the role(s) {', '.join(unknown)}")
    files = {"internal_users.yml": internal_users(users), "roles.yml": roles,
             "roles_mapping.yml": roles_mapping(users), "config.yml": AUTH_CONFIG}
    for name, body in files.items():
        (folder / name).write_text(json.dumps(body, indent=2) + "\n")


def security_settings(certs: CertFiles, config_dir: Path, transport_port: int) -> Mapping[str, YmlValue]:
    """opensearch.yml lines: TLS on HTTP and transport with ``certs``, security index from the files."""
    rel = {name: str(getattr(certs, name).relative_to(config_dir)) for name in ("ca", "node_cert", "node_key")}
    tls: dict[str, YmlValue] = {}
    for layer in ("transport", "http"):
        tls[f"plugins.security.ssl.{layer}.pemcert_filepath"] = rel["node_cert"]
        tls[f"plugins.security.ssl.{layer}.pemkey_filepath"] = rel["node_key"]
        tls[f"plugins.security.ssl.{layer}.pemtrustedcas_filepath"] = rel["ca"]
    return {
        # its own transport port: the dev node on the same host holds the default 9300
        "transport.port": str(transport_port),
        **tls,
        "plugins.security.ssl.http.enabled": "true",
        "plugins.security.ssl.transport.enforce_hostname_verification": "false",
        "plugins.security.allow_default_init_securityindex": "true",
        "plugins.security.authcz.admin_dn": [certs.admin_dn],
        "plugins.security.nodes_dn": [certs.node_dn],
        # no audit index: a test node has nobody to read it, and it costs start time
        "plugins.security.audit.type": "noop",
        "plugins.security.restapi.roles_enabled": [ADMIN_ROLE],
        "plugins.security.system_indices.enabled": "true",
    }
