"""Closing every aiokafka client the services own within a deadline, even when the broker
is gone: :func:`close_producer` and :func:`close_consumer` are the only ways they stop.

aiokafka has no public abort, and an idempotent producer's ``stop()`` flushes forever when
no broker answers. A producer that still holds unacknowledged records is therefore aborted:
its sender task is cancelled (so nothing is re-queued), every record future it holds fails
with :class:`DeliveryError` (callers already reported those bulletins as not acknowledged),
and its connections close. Everything that touches aiokafka's internals lives here, pinned
to aiokafka 0.14 by the project's dependency range, and checked by a fast unit test
(``tests/unit/test_closing.py``) that fails when those internals move.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from enlace.core.errors import DeliveryError
from enlace.core.logs import get_logger

log = get_logger(__name__)

CLOSE_TIMEOUT_S = 10.0

# Reaching into aiokafka below is deliberate (no public abort API); hence the SLF001 waivers.


def _held_batches(producer: AIOKafkaProducer) -> list[Any]:
    accumulator = producer._message_accumulator  # noqa: SLF001 - no public abort API
    queued = [batch for queue in accumulator._batches.values() for batch in queue]  # noqa: SLF001 - see module doc
    return [*queued, *accumulator._pending_batches]  # noqa: SLF001 - see module doc


def holds_records(producer: AIOKafkaProducer) -> bool:
    """Whether ``producer`` still has records the broker has not acknowledged."""
    return bool(_held_batches(producer))


async def abort(producer: AIOKafkaProducer, within: float) -> int:
    """Drop what ``producer`` holds and close it; returns how many records were failed."""
    task = producer._sender.sender_task  # noqa: SLF001 - no public abort API
    if task is not None and not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=within)
    error = DeliveryError("producer closed before the broker acknowledged the record")
    failed = 0
    for batch in _held_batches(producer):
        # Per-record futures only: failing the batch futures trips aiokafka's own
        # bookkeeping callbacks for re-enqueued batches.
        for future, _ in batch._msg_futures:  # noqa: SLF001 - see module doc
            if not future.done():
                future.set_exception(copy.copy(error))
                failed += 1
    producer._closed = True  # noqa: SLF001 - marks it closed for aiokafka's __del__ check
    await producer.client.close()
    log.warning("producer_aborted", records_failed=failed)
    return failed


async def close_producer(
    producer: AIOKafkaProducer, within: float = CLOSE_TIMEOUT_S, *, drain: bool = True
) -> None:
    """Stop ``producer``: let it deliver what it holds for up to ``within`` s (``drain``),
    then abort whatever is still unacknowledged."""
    if holds_records(producer):
        if not drain:
            await abort(producer, within)
            return
        try:
            await asyncio.wait_for(producer.flush(), within)
        except TimeoutError:
            await abort(producer, within)
            return
    try:
        await asyncio.wait_for(producer.stop(), within)
    except TimeoutError:
        await abort(producer, within)


async def close_consumer(consumer: AIOKafkaConsumer, within: float = CLOSE_TIMEOUT_S) -> None:
    """Stop ``consumer`` (leaving its group, if any) for up to ``within`` s, then drop its
    connections: a dead broker must not hold a service's shutdown."""
    try:
        await asyncio.wait_for(consumer.stop(), within)
    except TimeoutError:
        log.warning("consumer_stop_timed_out", within=within)
        await consumer._client.close()  # noqa: SLF001 - no public forced close
