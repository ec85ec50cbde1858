"""The local CA: chains verify with the standard library's TLS, subjects map to the intended
principals under Kafka's rules, private keys are private."""

from __future__ import annotations

import datetime as dt
import re
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from deploy.tls import NODE_PRINCIPAL, PRINCIPAL_MAPPING_RULES, LocalCA
from enlace.core.errors import ConfigError

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def kafka_principal(subject: str) -> str:
    """Kafka's SslPrincipalMapper over our rules (RULE:pattern/replacement/, then DEFAULT)."""
    for rule in re.findall(r"RULE:(.*?)/(.*?)/", PRINCIPAL_MAPPING_RULES):
        pattern, replacement = rule
        if re.fullmatch(pattern, subject):
            return re.sub(pattern, replacement.replace("$1", r"\1"), subject)
    return subject


@pytest.fixture
def ca(tmp_path: Path) -> LocalCA:
    authority = LocalCA(tmp_path / "tls")
    authority.ensure(now=NOW)
    return authority


def test_node_keystore_holds_key_and_chain_with_loopback_names(ca: LocalCA, tmp_path: Path) -> None:
    keystore = ca.issue_node(2, tmp_path / "node-2" / "node.pem", now=NOW)
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    assert stat.S_IMODE(ca.ca_key.stat().st_mode) == 0o600
    pem = keystore.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    cert, issuer = x509.load_pem_x509_certificates(pem)
    assert issuer.subject == x509.load_pem_x509_certificate(ca.ca_cert.read_bytes()).subject
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    # The standard library accepts the chain and the key as a server's.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(keystore)
    client = ssl.create_default_context(cafile=ca.ca_cert)
    assert client.check_hostname
    assert kafka_principal(cert.subject.rfc4514_string()) == NODE_PRINCIPAL


def test_client_certificate_maps_to_its_agency_and_bad_names_are_refused(
    ca: LocalCA, tmp_path: Path
) -> None:
    issued = ca.issue_client("cr-msp", tmp_path / "certs", now=NOW)
    assert stat.S_IMODE(issued.key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificates(issued.cert.read_bytes())[0]
    assert kafka_principal(cert.subject.rfc4514_string()) == "cr-msp"
    # A client certificate cannot pass for a node (no SAN, different unit).
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    for bad in ("CR-MSP", "kafka node", "a" * 65, "../x"):
        with pytest.raises(ConfigError, match="principal"):
            ca.issue_client(bad, tmp_path / "certs", now=NOW)
    # A name that mimics a node in a client certificate stays a client principal.
    mimic = ca.issue_client("kafka-node-1", tmp_path / "certs", now=NOW)
    subject = x509.load_pem_x509_certificates(mimic.cert.read_bytes())[0].subject
    assert kafka_principal(subject.rfc4514_string()) == "kafka-node-1"


def test_ensure_keeps_an_existing_ca(ca: LocalCA) -> None:
    before = ca.ca_cert.read_bytes()
    ca.ensure(now=NOW + dt.timedelta(days=1))
    assert ca.ca_cert.read_bytes() == before
    assert not LocalCA(ca.directory.parent / "elsewhere").exists()
