"""The local cluster's certificate authority: a CA, one certificate per node, and client
certificates for principals that prefer mTLS to SCRAM passwords.

Layout under the cluster's data dir::

    tls/ca.pem          the CA certificate clients trust (ENLACE_KAFKA_SSL_CAFILE)
    tls/ca.key          the CA's private key (0600), only for issuing
    node-<id>/tls/node.pem   the node's key + certificate chain (0600), Kafka's PEM keystore

Subjects say what a certificate is for; the broker maps them to principals with
:data:`PRINCIPAL_MAPPING_RULES`: a node certificate becomes ``User:kafka-node`` (the named
controller principal, a super user), a client certificate ``User:<its CN>``. A certificate
this CA did not issue is refused in the handshake, whatever its subject says.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from enlace.core.errors import ConfigError

ORGANIZATION = "Enlace local CA"
NODE_UNIT = "kafka-nodes"
CLIENT_UNIT = "clients"
# Every node certificate maps to one principal: controller RPCs need CLUSTER_ACTION, so that
# principal is a super user; a name, not ANONYMOUS, so nothing unauthenticated inherits it.
NODE_PRINCIPAL = "kafka-node"
PRINCIPAL_MAPPING_RULES = (
    f"RULE:^CN=kafka-node-[0-9]+,OU={NODE_UNIT},O={ORGANIZATION}$/{NODE_PRINCIPAL}/,"
    f"RULE:^CN=([a-z0-9][a-z0-9._-]*),OU={CLIENT_UNIT},O={ORGANIZATION}$/$1/,"
    "DEFAULT"
)
_PRINCIPAL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
CA_DAYS = 3650
LEAF_DAYS = 825  # the longest lifetime browsers' CA/B rules allowed; renew by re-issuing
# Loopback names only: the local cluster binds 127.0.0.1, and clients verify the hostname.
LOOPBACK_DNS = ("localhost",)
LOOPBACK_IPS = ("127.0.0.1", "::1")

_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True)
class ClientCertificate:
    principal: str
    cert: Path  # the certificate followed by the CA's
    key: Path


class LocalCA:
    """Issues certificates under one directory; creates the CA on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    def exists(self) -> bool:
        return self.ca_cert.exists() and self.ca_key.exists()

    def ensure(self, *, now: dt.datetime) -> None:
        """Create the CA once; an existing CA is kept (its clients already trust it)."""
        if self.exists():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                x509.NameAttribute(NameOID.COMMON_NAME, "Enlace local cluster CA"),
            ]
        )
        cert = (
            _builder(name, name, key.public_key(), now, CA_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_private(self.ca_key, _key_pem(key))
        self.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.ca_cert.chmod(0o644)

    def issue_node(self, node_id: int, keystore: Path, *, now: dt.datetime) -> Path:
        """The node's PEM keystore (private key, certificate, CA), server and client use."""
        subject = _subject(f"kafka-node-{node_id}", NODE_UNIT)
        key, cert = self._issue(subject, now, server=True)
        _write_private(keystore, _key_pem(key) + _pem(cert) + self.ca_cert.read_bytes())
        return keystore

    def issue_client(
        self, principal: str, directory: Path, *, now: dt.datetime
    ) -> ClientCertificate:
        """A client certificate the broker maps to ``User:<principal>`` (mTLS)."""
        if not _PRINCIPAL_NAME.fullmatch(principal):
            raise ConfigError(
                f"{principal!r} cannot be a certificate principal: lower-case letters, digits, "
                "'.', '_' and '-', at most 64"
            )
        key, cert = self._issue(_subject(principal, CLIENT_UNIT), now, server=False)
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{principal}.pem", directory / f"{principal}.key"
        cert_path.write_bytes(_pem(cert) + self.ca_cert.read_bytes())
        _write_private(key_path, _key_pem(key))
        return ClientCertificate(principal, cert_path, key_path)

    def _issue(
        self, subject: x509.Name, now: dt.datetime, *, server: bool
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        if not self.exists():
            raise ConfigError(f"no certificate authority in {self.directory}")
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{self.ca_key} is not the EC key this CA writes")
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = _builder(subject, ca_cert.subject, key.public_key(), now, LEAF_DAYS)
        if server:
            # A node is a server to clients and a client to the other nodes' controllers.
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            sans: list[x509.GeneralName] = [x509.DNSName(d) for d in LOOPBACK_DNS]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in LOOPBACK_IPS]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        return key, cert


def _subject(common_name: str, unit: str) -> x509.Name:
    # Most general first: RFC 4514 strings (what Kafka's mapping rules see) read it reversed.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: dt.datetime,
    days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # An hour of slack for clocks behind the issuer's.
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted PKCS#8: Kafka's PEM keystore reads it without ssl.key.password; the file's
    # mode protects it, as it protects the SCRAM secrets beside it.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    path.chmod(0o600)  # O_CREAT's mode does not apply to a file that already existed
