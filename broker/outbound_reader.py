"""Reads single outbound records back by offset, for releases when trust is earned.

The router keeps no copy of what it withheld: the bulletin is on its originator's outbound
topic (retention 14 days, beyond the 7-day horizon), at the offset its replay-index entry
records. A group-less ``read_committed`` consumer assigned to one partition at a time seeks
there; records fetched past a wanted offset are kept, so a run of offsets costs one fetch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from enlace.core import clients
from enlace.core.closing import close_consumer
from enlace.core.errors import BrokerError, started
from enlace.core.settings import KafkaSettings

FETCH_MS = 500


class OutboundReader:
    def __init__(self, settings: KafkaSettings, *, deadline_s: float = 10.0) -> None:
        self._settings = settings
        self._deadline_s = deadline_s
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = clients.consumer(self._settings, group_id=None, max_poll_records=200)
        try:
            await self._consumer.start()
        except KafkaError as exc:
            await close_consumer(self._consumer)
            self._consumer = None
            raise BrokerError(f"outbound reader could not start: {exc!r}") from exc

    async def stop(self) -> None:
        if self._consumer is not None:
            await close_consumer(self._consumer)
            self._consumer = None

    async def read(
        self, tp: TopicPartition, offsets: Sequence[int]
    ) -> dict[int, ConsumerRecord[Any, Any]]:
        """The committed records of ``tp`` at ``offsets``; an offset whose record is gone
        (retention, or an aborted write) is missing from the result."""
        consumer = started(self._consumer, "outbound reader")
        wanted = sorted(set(offsets))
        found: dict[int, ConsumerRecord[Any, Any]] = {}
        if not wanted:
            return found
        try:
            consumer.assign([tp])
            deadline = time.monotonic() + self._deadline_s
            for offset in wanted:
                if offset in found:
                    continue
                consumer.seek(tp, offset)
                while time.monotonic() < deadline:
                    batch = await consumer.getmany(tp, timeout_ms=FETCH_MS)
                    records = batch.get(tp, [])
                    for record in records:
                        found.setdefault(record.offset, record)
                    if records and records[-1].offset >= offset:
                        break
                    if not records and await consumer.position(tp) > offset:
                        break  # past it (a transaction marker or an aborted record)
        except KafkaError as exc:
            raise BrokerError(f"cannot read {tp.topic}[{tp.partition}] back: {exc!r}") from exc
        return {o: found[o] for o in wanted if o in found}
