"""Nothing crosses a listener of `enlace kafka up --secure` in clear or unauthenticated,
proven the way an attacker or an auditor would look: raw sockets, Kafka's own AclCommand
against the controller, ``openssl s_client`` and ``kcat``, and Enlace's clients over mTLS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shlex
import socket
import ssl
import struct
import subprocess
from functools import partial
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from aiokafka.helpers import create_ssl_context
from typer.testing import CliRunner

from deploy.acl_plan import ROUTER_USER
from deploy.localkafka import DEFAULT_LIBS, LOG4J_CONFIG, java_binary
from deploy.provisioning import KafkaTools, load_credentials, read_state
from deploy.tls import LocalCA
from enlace.cli import app
from enlace.core import topics
from enlace.core.settings import KafkaSettings
from tests.faults.secure_cluster import SecureExchange, kcat, produce, refused, running

pytestmark = [pytest.mark.faults, pytest.mark.slow]

PROBE_CORRELATION_ID = 0x454E4C43  # "ENLC"


def metadata_request() -> bytes:
    """A Kafka MetadataRequest v1 for every topic, framed: what any client sends first after
    the version handshake; a broker answers it only to an authenticated client."""
    client_id = b"probe"
    body = struct.pack(">hhih", 3, 1, PROBE_CORRELATION_ID, len(client_id)) + client_id
    body += struct.pack(">i", -1)  # null topics = all
    return struct.pack(">i", len(body)) + body


def probe(port: int, context: ssl.SSLContext | None) -> bytes:
    """Send the metadata request (over TLS if ``context``), return what came back before the
    broker closed the connection (or an empty reply on a TLS refusal)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        sock.sendall(metadata_request())
        reply = b""
        while len(reply) < 8:
            chunk = sock.recv(65_536)
            if not chunk:
                break
            reply += chunk
    except (ssl.SSLError, ConnectionError):
        return b""
    finally:
        sock.close()
    return reply


def answered(reply: bytes) -> bool:
    return len(reply) >= 8 and struct.unpack(">i", reply[4:8])[0] == PROBE_CORRELATION_ID


async def test_no_listener_answers_a_client_without_credentials(
    secure: SecureExchange, kafka_bootstrap: str
) -> None:
    # The probe is real: a PLAINTEXT broker (the suite's own) answers it.
    plain_port = int(kafka_bootstrap.split(",", maxsplit=1)[0].rsplit(":", 1)[1])
    assert answered(await asyncio.to_thread(probe, plain_port, None))

    spec = secure.spec
    tls = ssl.create_default_context(cafile=secure.ca_file)
    for port in spec.ports(1):
        # In clear to a TLS listener: the broker reads garbage TLS and hangs up.
        in_clear = await asyncio.to_thread(probe, port, None)
        assert not answered(in_clear), port
        assert not in_clear or in_clear[0] == 0x15, port  # nothing but a TLS alert comes back
        # TLS with a verified broker, but no password and no certificate.
        assert not answered(await asyncio.to_thread(probe, port, tls)), port

    # Enlace's own client, PLAINTEXT or with a wrong password, gets nowhere either.
    outbound = topics.outbound("cr-msp")
    plain = KafkaSettings(kafka_bootstrap=spec.bootstrap)
    await refused(partial(produce, plain, outbound), KafkaConnectionError, None)
    wrong = secure.conn.client_settings("cr-msp", "not-the-password")
    await refused(partial(produce, wrong, outbound), KafkaConnectionError, None)


def acl_command_as(config: Path | None, port: int) -> subprocess.CompletedProcess[str]:
    """The attack the issue was filed with: grant User:mallory All on every topic through
    the controller listener with Kafka's own AclCommand."""
    command = [
        java_binary(), "-Xmx256m", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp", f"{DEFAULT_LIBS}/*", "org.apache.kafka.tools.AclCommand",
        "--bootstrap-controller", f"127.0.0.1:{port}",
    ]  # fmt: skip
    if config is not None:
        command += ["--command-config", str(config)]
    command += ["--add", "--allow-principal", "User:mallory", "--operation", "All"]
    command += ["--topic", "*"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


async def test_the_controller_refuses_kafkas_own_acl_tool_without_a_node_certificate(
    secure: SecureExchange, tmp_path: Path
) -> None:
    spec = secure.spec
    controller = spec.controller_port(1)
    timeouts = "request.timeout.ms=5000\ndefault.api.timeout.ms=10000\n"
    no_tls = tmp_path / "plain.properties"
    no_tls.write_text(timeouts, encoding="utf-8")
    tls_only = tmp_path / "tls.properties"
    tls_only.write_text(
        timeouts + f"security.protocol=SSL\nssl.truststore.type=PEM\n"
        f"ssl.truststore.location={secure.ca_file}\n",
        encoding="utf-8",
    )
    # An agency's genuine certificate from the cluster's CA: authenticated, not authorized.
    agency = secure.kafka.ca.issue_client("cr-msp", tmp_path / "certs", now=dt.datetime.now(dt.UTC))
    with_agency_cert = tmp_path / "agency.properties"
    keystore = tmp_path / "agency-keystore.pem"
    keystore.write_bytes(agency.key.read_bytes() + agency.cert.read_bytes())
    with_agency_cert.write_text(
        tls_only.read_text(encoding="utf-8")
        + f"ssl.keystore.type=PEM\nssl.keystore.location={keystore}\n",
        encoding="utf-8",
    )
    outcomes = {}
    for name, config in (("plain", no_tls), ("tls", tls_only), ("agency", with_agency_cert)):
        result = await asyncio.to_thread(acl_command_as, config, controller)
        outcomes[name] = result.stdout + result.stderr
    assert "SslAuthenticationException" in outcomes["tls"], outcomes["tls"][-800:]
    assert "Adding ACLs" not in outcomes["plain"] or "Exception" in outcomes["plain"]
    assert "ClusterAuthorizationException" in outcomes["agency"], outcomes["agency"][-800:]

    async with KafkaTools(secure.conn) as tools:
        state = await read_state(tools)
    assert not [b for b in state.acls if b.principal == "User:mallory"]


def s_client(port: int, ca: Path, *extra: str) -> tuple[int, str]:
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(ca),
         "-verify_return_error", "-verify_ip", "127.0.0.1", "-showcerts", *extra],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def subject_alt_names(s_client_output: str) -> str:
    leaf = s_client_output.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END", 1)[0]
    pem = f"-----BEGIN CERTIFICATE-----{leaf}-----END CERTIFICATE-----\n"
    return subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName"],
        input=pem, capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip


async def test_openssl_sees_the_chain_the_loopback_names_and_who_asks_for_certificates(
    secure: SecureExchange, tmp_path: Path
) -> None:
    spec = secure.spec
    for port in spec.ports(1):
        code, out = await asyncio.to_thread(s_client, port, secure.ca_file)
        demands_certificate = port != spec.broker_port(1)
        assert "Verify return code: 0 (ok)" in out, out[-1500:]
        if demands_certificate:
            # TLS 1.3 refuses a certificate-less client after the handshake, racing s_client's
            # exit; TLS 1.2 refuses it inside the handshake, every time.
            code, refused_out = await asyncio.to_thread(s_client, port, secure.ca_file, "-tls1_2")
            assert code != 0, refused_out[-800:]
            assert "alert bad certificate" in refused_out, refused_out[-800:]
        else:
            assert code == 0, out[-1500:]
        assert "CN = kafka-node-1" in out
        assert "CN = Enlace local cluster CA" in out
        sans = subject_alt_names(out)
        assert "IP Address:127.0.0.1" in sans, sans
        assert "DNS:localhost" in sans, sans
        asks_for_certificate = "Acceptable client certificate CA names" in out
        assert asks_for_certificate == demands_certificate, port
    # A client trusting another CA refuses the broker: verification is real.
    stranger = LocalCA(tmp_path / "stranger")
    stranger.ensure(now=dt.datetime.now(dt.UTC))
    code, out = await asyncio.to_thread(s_client, spec.broker_port(1), stranger.ca_cert)
    assert code != 0
    assert "Verify return code: 0 (ok)" not in out


async def test_kcat_over_sasl_ssl_reads_its_own_feed_and_is_refused_another(
    secure: SecureExchange, tmp_path: Path, kcat_env: dict[str, str]
) -> None:
    spec = secure.spec
    marker = f"kcat-{dt.datetime.now(dt.UTC).timestamp()}".encode()
    await produce(secure.as_(ROUTER_USER), topics.feed("cr-msp"), marker)
    password = load_credentials(secure.credentials)["cr-msp"]
    config = tmp_path / "cr-msp.kcat"
    config.write_text(
        f"bootstrap.servers={spec.bootstrap}\nsecurity.protocol=SASL_SSL\n"
        f"sasl.mechanisms=SCRAM-SHA-512\nsasl.username=cr-msp\nsasl.password={password}\n"
        f"ssl.ca.location={secure.ca_file}\n",
        encoding="utf-8",
    )
    config.chmod(0o600)
    read_all = ("-C", "-o", "beginning", "-e", "-q", "-t")
    own = await asyncio.to_thread(kcat, kcat_env, config, *read_all, topics.feed("cr-msp"))
    assert own.returncode == 0, own.stderr
    assert marker.decode() in own.stdout.split("\n")
    other = await asyncio.to_thread(kcat, kcat_env, config, *read_all, topics.feed("pa-senafront"))
    assert other.returncode != 0
    assert "authorization failed" in other.stderr.lower(), other.stderr
    # The same client with TLS off cannot even list metadata.
    clear = tmp_path / "clear.kcat"
    clear.write_text(
        config.read_text(encoding="utf-8").replace("SASL_SSL", "SASL_PLAINTEXT"), "utf-8"
    )
    listing = await asyncio.to_thread(kcat, kcat_env, clear, "-L", "-m", "5")
    assert listing.returncode != 0
    assert topics.feed("cr-msp") not in listing.stdout


def settings_from_lines(output: str) -> KafkaSettings:
    values = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("ENLACE_KAFKA_"):
            values[key.removeprefix("ENLACE_").lower()] = shlex.split(value)[0]
    return KafkaSettings.model_validate(values)


async def test_an_agency_certificate_is_its_principal_on_the_mtls_listener(
    secure: SecureExchange, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app,
        ["acl", "certificates", "cr-msp", "--out", str(tmp_path / "certs"),
         "--data-dir", str(secure.kafka.data_dir)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cr = settings_from_lines(result.output)
    assert cr.kafka_security_protocol == "SSL"
    assert cr.kafka_bootstrap == secure.spec.mtls_bootstrap
    assert await produce(cr, topics.outbound("cr-msp")) >= 0
    other = topics.outbound("pa-senafront")
    await refused(partial(produce, cr, other), TopicAuthorizationFailedError, other)

    # A certificate from any other CA, whatever name it claims, is refused in the handshake.
    rogue_ca = LocalCA(tmp_path / "rogue")
    rogue_ca.ensure(now=dt.datetime.now(dt.UTC))
    rogue = rogue_ca.issue_client("admin", tmp_path / "rogue-certs", now=dt.datetime.now(dt.UTC))
    context = create_ssl_context(
        cafile=str(secure.ca_file), certfile=str(rogue.cert), keyfile=str(rogue.key)
    )
    impostor = AIOKafkaProducer(
        bootstrap_servers=secure.spec.mtls_bootstrap,
        security_protocol="SSL",
        ssl_context=context,
        request_timeout_ms=5_000,
    )

    async def impersonate() -> None:
        async with running(impostor):
            await impostor.send_and_wait(other, b"as admin")

    await refused(impersonate, KafkaConnectionError, None)


async def test_acl_credentials_prints_what_a_service_needs_over_tls(
    secure: SecureExchange,
) -> None:
    result = CliRunner().invoke(
        app,
        ["acl", "credentials", "cr-msp", "--data-dir", str(secure.kafka.data_dir)],
        env={"ENLACE_STATE_DIR": str(secure.credentials.parent)},
    )
    assert result.exit_code == 0, result.output
    cr = settings_from_lines(result.output)
    assert cr.kafka_security_protocol == "SASL_SSL"
    assert cr.kafka_ssl_cafile == secure.ca_file
    assert cr.kafka_bootstrap == secure.spec.bootstrap
    assert await produce(cr, topics.receipts("cr-msp")) >= 0
