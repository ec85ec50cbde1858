"""The bounded close leans on aiokafka internals (there is no public abort): this fails fast,
with no broker, the day an aiokafka upgrade moves them."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from enlace.core.closing import close_consumer, close_producer, holds_records


async def test_the_producer_internals_the_abort_uses_are_where_it_expects() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")
    accumulator = producer._message_accumulator
    assert isinstance(accumulator._batches, dict)
    assert isinstance(accumulator._pending_batches, set)
    assert hasattr(producer._sender, "sender_task")
    assert hasattr(producer, "_closed")
    assert callable(producer.client.close)
    assert holds_records(producer) is False
    await close_producer(producer, 2.0)


async def test_a_never_started_client_closes_at_once() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    assert callable(consumer._client.close)
    async with asyncio.timeout(5):  # a bound, not a measurement: nothing to wait for
        await close_producer(producer, 2.0)
        await close_consumer(consumer, 2.0)
