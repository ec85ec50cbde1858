"""At most one release per partner whatever the partition: each bulletin id has one owner
partition, and the owner rule changes only at a rebalance (a partition-count increase)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from broker.policy import Policy
from broker.router import Router
from enlace.core import clients
from enlace.core.settings import KafkaSettings
from enlace.core.topics import DEADLETTER, feed, outbound, owner_partition
from schemas import headers as hdr
from schemas.envelope import Sealed, seal
from schemas.vocab import Classification
from tests.integration.test_router import assert_books_balance, read_audits
from tests.samples import routed_bulletin
from tests.support import MiniExchange, Record, build_exchange, eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def exchange(kafka_settings: KafkaSettings) -> MiniExchange:
    ex = await build_exchange(kafka_settings, countries=("PA", "US", "CR"), partitions=1)
    pa, us, cr = (ex.agency(c) for c in ("PA", "US", "CR"))
    agreements = [
        {"between": [pa, us], "level": "full"},
        {"between": [pa, cr], "level": "standard"},
    ]
    ex.policy = Policy.model_validate({"agreements": agreements})
    return ex


@pytest.fixture
async def router(exchange: MiniExchange) -> AsyncIterator[Router]:
    settings = exchange.router_settings(router_metadata_max_age_ms=1_000)
    async with Router(settings, exchange.registry, exchange.policy, exchange.directory) as running:
        yield running
        assert_books_balance(running)


def owned_by(ex: MiniExchange, partition: int, of: int) -> Sealed:
    """A sealed PA bulletin whose owner partition, among ``of``, is ``partition``."""
    pa = ex.agency("PA")
    while True:
        b = routed_bulletin(pa, classification=Classification.RESTRICTED)
        if owner_partition(b.bulletin_id, of) == partition:
            return seal(b, ex.keys[pa])


async def one_wrong_partition(ex: MiniExchange, origin: str) -> list[Record]:
    """The origin's dead letters: exactly one, refused as ``wrong_partition``."""
    dead = await ex.read(
        DEADLETTER,
        until=lambda f: len(f) >= 1,
        keep=lambda r: hdr.text(r.headers, "enlace-dlq-topic") == outbound(origin),
        settle=1.0,
    )
    assert [hdr.text(r.headers, "enlace-dlq-reason") for r in dead] == ["wrong_partition"]
    return dead


async def test_a_bulletin_resent_after_a_partition_increase_is_released_once(
    exchange: MiniExchange, router: Router
) -> None:
    ex = exchange
    pa, us = ex.agency("PA"), ex.agency("US")
    moving = owned_by(ex, partition=1, of=2)  # on partition 0 of 1 now, on 1 of 2 after
    await ex.publish(pa, moving)
    first = await read_audits(ex, {moving.key.decode()}, want=2)
    assert Counter(a.decision for a in first) == {"FULL": 2}

    admin = AIOKafkaAdminClient(**ex.settings.client_kwargs())
    await admin.start()
    try:
        await admin.create_partitions({outbound(pa): NewPartitions(total_count=2)})
    finally:
        await admin.close()
    await eventually(lambda: TopicPartition(outbound(pa), 1) in router.engine.assignment)

    # The publisher re-sends on the new owner partition: a duplicate, not a second release.
    await ex.publish_raw(outbound(pa), [(moving.key, moving.value, moving.headers)], partition=1)
    # A fresh bulletin on the partition that no longer owns its id is refused.
    stray = owned_by(ex, partition=1, of=2)
    await ex.publish(pa, stray)  # partition 0
    dead = await one_wrong_partition(ex, pa)
    assert "belongs on partition 1 of 2" in (hdr.text(dead[0].headers, "enlace-dlq-message") or "")

    audits = await read_audits(ex, {moving.key.decode(), stray.key.decode()}, want=3)
    assert Counter(a.decision for a in audits) == {"FULL": 2, "DUPLICATE": 1}
    delivered = await ex.read(feed(us), until=lambda f: len(f) >= 1, settle=2.0)
    assert [r.key for r in delivered] == [moving.key], "the partner's feed holds it once"


async def test_two_routers_release_a_bulletin_sent_to_both_partitions_once(
    kafka_settings: KafkaSettings,
) -> None:
    ex = await build_exchange(kafka_settings, countries=("PA", "US", "CR"), partitions=2)
    pa, us, cr = (ex.agency(c) for c in ("PA", "US", "CR"))
    ex.policy = Policy.model_validate({"agreements": [{"between": [pa, us], "level": "full"}]})
    settings = ex.router_settings(router_session_timeout_ms=6_000)
    first = Router(settings, ex.registry, ex.policy, ex.directory)
    second = Router(settings, ex.registry, ex.policy, ex.directory)
    async with first, second:
        inputs = [TopicPartition(outbound(a), p) for a in (pa, us, cr) for p in (0, 1)]
        await eventually(
            lambda: (
                first.engine.assignment
                and second.engine.assignment
                and first.engine.assignment | second.engine.assignment == set(inputs)
                and not first.engine.assignment & second.engine.assignment
            )
        )
        sealed = owned_by(ex, partition=1, of=2)
        record = (sealed.key, sealed.value, sealed.headers)
        await ex.publish_raw(outbound(pa), [record], partition=0)
        await ex.publish_raw(outbound(pa), [record], partition=1)
        await one_wrong_partition(ex, pa)
        audits = await read_audits(ex, {sealed.key.decode()}, want=2)
        assert len(audits) == 2, "one decision per partner, from one router"
        delivered = await ex.read(feed(us), until=lambda f: len(f) >= 1, settle=2.0)
        assert [r.key for r in delivered] == [sealed.key]


async def test_kcat_with_the_murmur2_partitioner_publishes_on_owner_partitions(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
) -> None:
    """What the README tells a partner using librdkafka: its default partitioner (CRC32) puts
    most bulletins elsewhere, ``murmur2_random`` on their owner partition."""
    kcat = shutil.which("kcat")
    assert kcat is not None, "kcat is required: apt-get install kcat (make test installs it)"
    (topic,) = await make_topics(unique("kcat-owner"), partitions=5)
    ids = [str(uuid.uuid4()) for _ in range(20)]
    for partitioner in ("murmur2_random", "consistent_random"):
        lines = "".join(f"{i}\t{partitioner}\n" for i in ids).encode()
        command = [kcat, "-b", kafka_settings.kafka_bootstrap, "-P", "-t", topic, "-K", "\t",
                   "-X", f"partitioner={partitioner}"]  # fmt: skip
        await asyncio.to_thread(subprocess.run, command, input=lines, check=True, timeout=60)
    consumer = clients.consumer(kafka_settings, group_id=None)
    await consumer.start()
    owned: Counter[str] = Counter()
    seen = 0
    try:
        partitions = [TopicPartition(topic, p) for p in range(5)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = asyncio.get_running_loop().time() + 30
        while seen < 2 * len(ids) and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    seen += 1
                    if r.partition == owner_partition(r.key.decode(), 5):
                        owned[r.value.decode()] += 1
    finally:
        await consumer.stop()
    assert seen == 2 * len(ids)
    assert owned["murmur2_random"] == len(ids)
    assert owned["consistent_random"] < len(ids)
