"""The launcher's clusters under faults: a secure 3-node cluster (TLS between clients and
brokers and between brokers) loses a node mid-produce and keeps every acknowledged record."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError

from deploy.localkafka import DEFAULT_LIBS, ClusterSpec, LocalKafka, pid_alive
from deploy.provisioning import AdminConnection
from enlace.core import clients
from enlace.core.topics import TopicSpec, ensure_topics
from tests.support import free_kafka_port

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, ClusterSpec]]:
    kafka = LocalKafka(tmp_path_factory.mktemp("cluster3"), DEFAULT_LIBS)
    spec = kafka.up(3, port=free_kafka_port(3), secure=True)
    try:
        yield kafka, spec
    finally:
        kafka.down()
        assert not any(node.alive for node in kafka.status())


@pytest.mark.timeout(240)
async def test_three_nodes_keep_every_acked_record_when_one_stops(
    cluster: tuple[LocalKafka, ClusterSpec],
) -> None:
    kafka, spec = cluster
    # Node n listens on n<port>: three brokers, one bootstrap list.
    assert spec.bootstrap == ",".join(f"127.0.0.1:{n}{spec.port}" for n in (1, 2, 3))
    conn = AdminConnection.from_cluster(kafka.data_dir)
    settings = conn.client_settings(conn.username, conn.password)
    assert settings.kafka_security_protocol == "SASL_SSL"
    topic = "faults.replicated"
    await ensure_topics(settings, [TopicSpec(topic, 3, 3, (("min.insync.replicas", "2"),))])
    producer = clients.producer(settings, request_timeout_ms=15_000)
    await producer.start()
    acked: set[bytes] = set()
    failed = 0
    try:
        for i in range(3000):
            if i == 1000:
                # A clean stop of one node in the middle of the stream (leaders move).
                await asyncio.to_thread(kafka.stop_node, 2)
            value = f"rec-{i}".encode()
            try:
                fut = await producer.send(topic, value, key=str(i % 17).encode())
            except KafkaError:
                failed += 1
                continue
            fut.add_done_callback(
                lambda f, v=value: acked.add(v) if not f.cancelled() and not f.exception() else None
            )
            if i % 250 == 0:
                await producer.flush()
        await asyncio.wait_for(producer.flush(), 60)
    finally:
        await producer.stop()
    assert len(acked) >= 2500, f"only {len(acked)} acked, {failed} failed to send"

    await asyncio.to_thread(kafka.start_node, 2)
    consumer = clients.consumer(settings, topic, group_id="faults-reader")
    await consumer.start()
    seen: list[bytes] = []
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while not acked <= set(seen) and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            seen.extend(r.value for recs in batch.values() for r in recs)
    finally:
        await consumer.stop()
    lost = acked - set(seen)
    assert not lost, f"{len(lost)} acknowledged records lost"
    assert len(seen) == len(set(seen)), "idempotent producer wrote duplicates"


def test_up_is_idempotent_and_down_leaves_no_process(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "single", DEFAULT_LIBS)
    port = free_kafka_port()
    first = kafka.up(1, port=port)
    pids = [node.pid for node in kafka.status()]
    again = kafka.up(1, port=port)
    assert again == first
    assert [node.pid for node in kafka.status()] == pids
    stopped = kafka.down()
    assert stopped == [1]
    assert all(pid is not None and not pid_alive(pid) for pid in pids)
