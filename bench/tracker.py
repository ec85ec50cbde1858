"""Arrival side of every pipeline phase: a read_committed consumer noting when each key lands.

It reads the given topics from their end at :meth:`mark` (no consumer group: nothing to join),
so each phase only sees its own records. Arrival times are ``time.perf_counter()`` readings in
this process, comparable with the send times the phases record.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from enlace.core import clients
from enlace.core.errors import started
from enlace.core.settings import KafkaSettings
from enlace.core.topics import partitions_of


class Tracker:
    def __init__(self, settings: KafkaSettings, topics: Iterable[str]) -> None:
        self._settings = settings
        self._topics = list(topics)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._partitions: list[TopicPartition] = []
        self.arrived: dict[bytes, float] = {}
        self.records = 0
        self.last_at = 0.0
        self._changed = asyncio.Event()

    async def start(self) -> None:
        layout = await partitions_of(self._settings, self._topics)
        self._partitions = [TopicPartition(t, p) for t, ids in layout.items() for p in ids]
        self._consumer = clients.consumer(
            self._settings, group_id=None, fetch_max_wait_ms=20, max_partition_fetch_bytes=4_194_304
        )
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        await self.mark()
        self._task = asyncio.create_task(self._poll(), name="bench-tracker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def __aenter__(self) -> Tracker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def mark(self) -> None:
        """Forget what arrived so far and read on from the current end of every partition."""
        consumer = started(self._consumer, "feed tracker")
        ends = await consumer.end_offsets(self._partitions)
        for tp, end in ends.items():
            # An explicit seek: seek_to_end() resolves lazily and a fetch in flight could
            # still hand over older records.
            consumer.seek(tp, end)
        self.arrived = {}
        self.records = 0
        self.last_at = 0.0

    async def _poll(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            if not batch:
                continue
            now = time.perf_counter()
            arrived = self.arrived
            for records in batch.values():
                for record in records:
                    self.records += 1
                    if record.key is not None and record.key not in arrived:
                        arrived[record.key] = now
            self.last_at = now
            self._changed.set()

    async def wait_for(self, keys: set[bytes], within: float) -> bool:
        """Wait until every key in ``keys`` arrived; False if ``within`` seconds passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not keys.issubset(self.arrived.keys()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
        return True

    def last_arrival(self, keys: set[bytes]) -> float:
        """When the last of ``keys`` arrived (of those that did)."""
        return max((self.arrived[k] for k in keys if k in self.arrived), default=0.0)
