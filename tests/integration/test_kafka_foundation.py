"""The broker guarantees every Enlace service leans on, proven against the real broker."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from enlace.core import clients
from enlace.core.settings import KafkaSettings
from enlace.core.topics import TopicSpec, ensure_topics, exchange_topics
from tests.support import eventually

pytestmark = pytest.mark.integration


async def drain(consumer: AIOKafkaConsumer, want: int, within: float = 20) -> list[bytes]:
    values: list[bytes] = []
    deadline = asyncio.get_running_loop().time() + within
    while len(values) < want and asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(timeout_ms=200)
        values.extend(rec.value for recs in batch.values() for rec in recs)
    return values


async def test_idempotent_produce_acks_all_reads_back(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
) -> None:
    (topic,) = await make_topics(unique("idem"))
    producer = clients.producer(kafka_settings)
    await producer.start()
    try:
        futures = [await producer.send(topic, f"m{i}".encode(), key=b"k") for i in range(200)]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    offsets = [m.offset for m in metadata]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == 200

    consumer = clients.consumer(kafka_settings, topic, group_id=unique("g"))
    await consumer.start()
    try:
        values = await drain(consumer, 200)
    finally:
        await consumer.stop()
    assert values == [f"m{i}".encode() for i in range(200)]


async def test_aborted_transaction_invisible_to_read_committed(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
) -> None:
    source, sink = await make_topics(unique("src"), unique("dst"), partitions=1)
    group = unique("copier")
    seed = clients.producer(kafka_settings)
    await seed.start()
    try:
        for i in range(10):
            await seed.send_and_wait(source, f"r{i}".encode())
    finally:
        await seed.stop()

    copier_in = clients.consumer(kafka_settings, source, group_id=group)
    txn = clients.producer(kafka_settings, transactional_id=unique("txn"))
    await copier_in.start()
    await txn.start()
    try:
        records = (await copier_in.getmany(timeout_ms=5000, max_records=10)).get(
            TopicPartition(source, 0), []
        )
        assert len(records) == 10
        # First attempt: written, then aborted (as a crash before commit would).
        await txn.begin_transaction()
        for rec in records[:5]:
            await txn.send(sink, b"aborted-" + rec.value)
        await txn.abort_transaction()
        # Second attempt: written and committed together with the input offsets.
        async with txn.transaction():
            for rec in records:
                await txn.send(sink, b"copied-" + rec.value)
            await txn.send_offsets_to_transaction(
                {TopicPartition(source, 0): records[-1].offset + 1}, group
            )
    finally:
        await txn.stop()
        await copier_in.stop()

    reader = clients.consumer(kafka_settings, sink, group_id=unique("reader"))
    await reader.start()
    try:
        values = await drain(reader, 10)
        # Nothing more arrives: the aborted five stay invisible under read_committed.
        values += await drain(reader, 1, within=1.5)
    finally:
        await reader.stop()
    assert values == [f"copied-r{i}".encode() for i in range(10)]

    committed = clients.consumer(kafka_settings, group_id=group)
    await committed.start()
    try:
        offset = await committed.committed(TopicPartition(source, 0))
    finally:
        await committed.stop()
    assert offset == 10


async def test_topic_provisioning_is_idempotent(
    kafka_settings: KafkaSettings, unique: Callable[[str], str]
) -> None:
    agencies = [unique("aa-one"), unique("bb-two")]
    specs = [
        spec
        for spec in exchange_topics(agencies, partitions=2, replication=1, min_insync=1)
        if spec.name.startswith(("enlace.outbound.", "enlace.feed.", "enlace.receipts."))
    ]
    created = await ensure_topics(kafka_settings, specs)
    assert sorted(created) == sorted(s.name for s in specs)
    assert len(created) == 6
    assert await ensure_topics(kafka_settings, specs) == []


async def test_kcat_sees_the_broker_and_a_provisioned_topic(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    """An independent client (librdkafka's kcat) agrees with what we provisioned."""
    topic = unique("kcat")
    await ensure_topics(KafkaSettings(kafka_bootstrap=kafka_bootstrap), [TopicSpec(topic, 2, 1)])
    kcat = shutil.which("kcat")
    assert kcat is not None, "kcat is required: apt-get install kcat (make test installs it)"
    seen: dict[str, Any] = {}

    async def described() -> bool:
        result = await asyncio.to_thread(
            subprocess.run,
            [kcat, "-b", kafka_bootstrap, "-L", "-J", "-t", topic],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        seen.update(json.loads(result.stdout))
        topics = seen.get("topics") or [{}]
        return len(topics[0].get("partitions") or []) == 2

    # A new topic's partitions reach every broker's metadata cache a moment after creation.
    await eventually(described, "kcat sees the topic's 2 partitions")
    assert seen["brokers"], "kcat lists the broker"
    (found,) = seen["topics"]
    assert found["topic"] == topic


async def test_receipts_topics_get_broker_set_timestamps_even_when_created_before(
    kafka_settings: KafkaSettings, unique: Callable[[str], str]
) -> None:
    """The router dates trust evidence by arrival: a writer cannot set a receipt's time, on
    a topic provisioned now or one that existed before the rule (aligned by provisioning)."""
    old, new = unique("aa-old"), unique("bb-new")
    receipts_old = f"enlace.receipts.{old}"
    await ensure_topics(kafka_settings, [TopicSpec(receipts_old, 1, 1)])  # CreateTime
    specs = [
        s
        for s in exchange_topics([old, new], partitions=1, replication=1, min_insync=1)
        if s.name.startswith("enlace.receipts.")
    ]
    await ensure_topics(kafka_settings, specs)
    producer = clients.producer(kafka_settings)
    await producer.start()
    future_ms = 4_102_444_800_000  # the year 2100
    try:
        for spec in specs:
            await producer.send_and_wait(spec.name, b"claimed", timestamp_ms=future_ms)
    finally:
        await producer.stop()
    consumer = clients.consumer(kafka_settings, group_id=None)
    await consumer.start()
    try:
        for spec in specs:
            tp = TopicPartition(spec.name, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            records = await consumer.getmany(tp, timeout_ms=10_000)
            (record,) = records[tp]
            assert record.timestamp_type == 1, f"{spec.name} keeps the writer's timestamp"
            assert record.timestamp < future_ms
    finally:
        await consumer.stop()
