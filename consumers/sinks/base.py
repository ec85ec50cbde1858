"""The sink contract: where delivered bulletins, recalls and quarantined records go.

A sink *holds* a record once it will not lose it (written and synced, or acknowledged by a
webhook). The consumer commits a partition's offset only up to the lowest position every sink
holds, so a slow sink delays commits (and, through its bounded buffer, the feed) but never
lets an offset be committed past a record it does not hold.

Synchronous sinks hold a batch when :meth:`Sink.write` returns. A ``deferred`` sink (the
webhook) only accepts the batch into a bounded buffer in ``write`` and advances its own
positions as deliveries complete.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from consumers.records import Item, RecallOutcome, StoreOutcome

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True)
class WriteResult:
    """What a write did; only the embedded store reports per-bulletin outcomes."""

    outcomes: Mapping[int, StoreOutcome] = field(default_factory=dict)  # by item index
    recalls: Mapping[int, RecallOutcome] = field(default_factory=dict)  # by item index
    links: int = 0  # supersede links new to the store


class Sink(ABC):
    kind: ClassVar[str]
    deferred: ClassVar[bool] = False

    def __init__(self, target: str) -> None:
        self.target = target
        self._held: dict[TopicPartitionKey, int] = {}

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.target}"

    async def start(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Open files, connections, workers. No I/O happens in ``__init__``."""

    async def stop(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Flush what can be flushed and release resources."""

    @abstractmethod
    async def write(self, items: Sequence[Item]) -> WriteResult:
        """Store (or, if ``deferred``, accept) ``items``; raise SinkError on failure."""

    async def put(self, items: Sequence[Item]) -> WriteResult:
        result = await self.write(items)
        if not self.deferred:
            self._advance(items)
        return result

    def _advance(self, items: Sequence[Item]) -> None:
        for item in items:
            self.mark_held(item.record.topic, item.record.partition, item.record.offset)

    def mark_held(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        # Never backwards: after a rebalance a sink may see offsets it already held again.
        self._held[key] = max(self._held.get(key, 0), offset + 1)

    def held(self, topic: str, partition: int) -> int | None:
        """The next offset of this partition the sink does not hold yet (None: nothing held)."""
        return self._held.get((topic, partition))

    def buffered(self) -> int:
        """Records accepted but not yet held (deferred sinks)."""
        return 0

    async def __aenter__(self) -> Sink:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
