"""Throwaway TLS material for the local secured node: a CA, a node certificate and an admin certificate.

Generated at every start with the ``cryptography`` package (no openssl CLI, nothing long-lived):
the node certificate serves HTTPS and node-to-node TLS for 127.0.0.1/localhost, the admin certificate
is the one the security plugin's ``securityadmin`` tool would present (its DN is the admin DN).
Keys are unencrypted PKCS#8 PEM, the only key form the security plugin reads without a password.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

NODE_CN = "grdr-node"
ADMIN_CN = "grdr-admin"
CA_CN = "grdr-local-ca"


@dataclass(frozen=True)
class CertFiles:
    folder: Path
    node_dn: str
    admin_dn: str

    @property
    def ca(self) -> Path:
        return self.folder / "root-ca.pem"

    @property
    def node_cert(self) -> Path:
        return self.folder / "node.pem"

    @property
    def node_key(self) -> Path:
        return self.folder / "node-key.pem"

    @property
    def admin_cert(self) -> Path:
        return self.folder / "admin.pem"

    @property
    def admin_key(self) -> Path:
        return self.folder / "admin-key.pem"


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "grdr"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "grdr"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _write_cert(path: Path, cert) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o600)


def _issue(subject, public_key, issuer, issuer_key, *, ca: bool, extensions: list, days: int):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number())
               # a minute of slack: the node may check validity a moment before this clock tick
               .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _usage(*, cert_sign: bool):
    from cryptography import x509

    return x509.KeyUsage(digital_signature=True, key_encipherment=not cert_sign, content_commitment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def write_certificates(folder: Path, days: int = 30) -> CertFiles:
    """A fresh CA and the node and admin certificates it signs, as PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)  # the security plugin warns about anything wider
    ca_key, node_key, admin_key = _key(), _key(), _key()
    ca_name = _name(CA_CN)
    ca = _issue(ca_name, ca_key.public_key(), ca_name, ca_key, ca=True, days=days,
                extensions=[(_usage(cert_sign=True), True)])
    both = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    node = _issue(_name(NODE_CN), node_key.public_key(), ca_name, ca_key, ca=False, days=days,
                  extensions=[(_usage(cert_sign=False), True), (both, False), (san, False)])
    admin = _issue(_name(ADMIN_CN), admin_key.public_key(), ca_name, ca_key, ca=False, days=days,
                   extensions=[(_usage(cert_sign=False), True),
                               (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)])
    files = CertFiles(folder, node_dn=node.subject.rfc4514_string(), admin_dn=admin.subject.rfc4514_string())
    _write_cert(files.ca, ca)
    _write_cert(files.node_cert, node)
    _write_key(files.node_key, node_key)
    _write_cert(files.admin_cert, admin)
    _write_key(files.admin_key, admin_key)
    return files
