"""The fault tier's shared clusters and report: one secure broker for every security module,
one 3-node cluster (RF 3, min ISR 2) for every nemesis scenario, and the fault report."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from deploy.localkafka import DEFAULT_LIBS, LocalKafka
from deploy.provisioning import AdminConnection, provision
from enlace.core.settings import KafkaSettings
from enlace.core.topics import ensure_topics, exchange_topics
from tests.faults.brokers import BrokerFaults
from tests.faults.nemesis import FULL, Fleet, four_agency_exchange
from tests.faults.proxy import free_ports
from tests.faults.report import FaultReport
from tests.faults.secure_cluster import AGENCIES, SCRAM_FIXED_IN, SecureExchange, librdkafka_version
from tests.support import MiniExchange, free_kafka_port


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def secure(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecureExchange]:
    root = tmp_path_factory.mktemp("secure-acl")
    kafka = LocalKafka(root / "kafka", DEFAULT_LIBS)
    await asyncio.to_thread(kafka.up, 1, port=free_kafka_port(), secure=True)
    try:
        conn = AdminConnection.from_cluster(kafka.data_dir)
        admin = conn.client_settings(conn.username, conn.password)
        specs = exchange_topics(AGENCIES, partitions=1, replication=1, min_insync=1)
        await ensure_topics(admin, specs)
        credentials = root / "state" / "credentials.json"
        first = await provision(AGENCIES, conn, credentials_path=credentials, env={})
        yield SecureExchange(kafka, conn, credentials, first, list(AGENCIES))
    finally:
        await asyncio.to_thread(kafka.down)


@pytest.fixture(scope="package")
def kcat_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment kcat runs in: the system's librdkafka if its SCRAM works with Kafka
    4, else the one the confluent-kafka wheel bundles (same soname and ABI)."""
    env = dict(os.environ)
    if librdkafka_version(env) >= SCRAM_FIXED_IN:
        return env
    spec = importlib.util.find_spec("confluent_kafka")
    assert spec is not None, "confluent-kafka (a dev dependency) is not installed"
    assert spec.origin is not None
    wheel_libs = Path(spec.origin).parent.parent / "confluent_kafka.libs"
    bundled = sorted(wheel_libs.glob("librdkafka-*"))
    assert bundled, "the confluent-kafka wheel bundles no librdkafka"
    libdir = tmp_path_factory.mktemp("librdkafka")
    (libdir / "librdkafka.so.1").symlink_to(bundled[0])
    env["LD_LIBRARY_PATH"] = str(libdir)
    assert librdkafka_version(env) >= SCRAM_FIXED_IN
    return env


@dataclass(frozen=True)
class Cluster:
    """A running local cluster and the settings its clients use."""

    kafka: LocalKafka
    settings: KafkaSettings


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three nodes for the nemesis scenarios; each scenario builds its own exchange (topics
    under its own token) on it, and a scenario that stops nodes starts them again. Each node
    also has a PROXIED listener advertised at a port of ``spec().proxy_ports``, where the
    partition scenario runs its proxies (an idle listener costs next to nothing)."""
    kafka = LocalKafka(tmp_path_factory.mktemp("nemesis-kafka"), DEFAULT_LIBS)
    spec = kafka.up(3, port=free_kafka_port(3), proxy_ports=free_ports(3))
    try:
        yield Cluster(kafka, KafkaSettings(kafka_bootstrap=spec.bootstrap))
    finally:
        kafka.down()


@pytest.fixture
async def exchange(cluster: Cluster, tmp_path: Path) -> MiniExchange:
    """A scenario's four agencies on the 3-node cluster (a module with a broker of its own
    defines its own ``exchange``)."""
    return await four_agency_exchange(cluster.settings, tmp_path)


@pytest.fixture
def fleet_env() -> dict[str, str]:
    """Environment of the scenario's router processes; a module overrides it."""
    return {}


@pytest.fixture
async def fleet(
    exchange: MiniExchange, tmp_path: Path, fleet_env: dict[str, str]
) -> AsyncIterator[Fleet]:
    """The scenario's routers, every one SIGKILLed at the end, pass or fail (a frozen one
    too: SIGKILL needs no SIGCONT)."""
    routers = Fleet(exchange, tmp_path, **fleet_env)
    try:
        yield routers
    finally:
        routers.kill_all_now()


@pytest.fixture
async def broker_faults(cluster: Cluster) -> AsyncIterator[BrokerFaults]:
    """Node kills and freezes; every node running and continued at the end."""
    nemesis = BrokerFaults(cluster.kafka)
    try:
        yield nemesis
    finally:
        await asyncio.to_thread(nemesis.heal)


@pytest.fixture(scope="session")
def fault_report() -> Iterator[FaultReport]:
    """Scenario rows, printed at the end and written to ``ENLACE_FAULTS_REPORT`` if set."""
    report = FaultReport()
    yield report
    if not report.rows:
        return
    size = "full" if FULL else "CI"
    print("\n" + report.markdown(size))
    target = os.environ.get("ENLACE_FAULTS_REPORT")
    if target:
        report.write(Path(target), size)
