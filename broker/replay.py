"""Replay protection: which bulletin ids the router has already routed, surviving restarts.

The index lives in memory and in the compacted topic ``enlace.router.seen`` (key
``<origin>/<bulletin id>``, value = SHA-256 of the value bytes + first-seen time). The router
writes an entry in the same transaction as the releases, so the topic holds exactly the ids
whose releases are committed; a new owner of a partition reads it to the end before routing.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from enlace.core import clients
from enlace.core.closing import close_consumer
from enlace.core.errors import BrokerError, started
from enlace.core.settings import KafkaSettings
from enlace.core.topics import ROUTER_SEEN, partitions_of

_VALUE = struct.Struct(">32sq")  # sha256 digest, first-seen epoch milliseconds


class Replay(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"  # same id, same bytes: a publisher retry
    CONFLICT = "conflict"  # same id, other bytes: dead letter


@dataclass(frozen=True)
class SeenEntry:
    digest: bytes
    first_seen_ms: int


def seen_key(origin: str, bulletin_id: str) -> bytes:
    return f"{origin}/{bulletin_id}".encode()


def encode_entry(entry: SeenEntry) -> bytes:
    return _VALUE.pack(entry.digest, entry.first_seen_ms)


def decode_entry(raw: bytes) -> SeenEntry:
    digest, first_seen_ms = _VALUE.unpack(raw)
    return SeenEntry(digest, first_seen_ms)


def digest_of(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class SeenIndex:
    """Committed entries, the entries of batches handled but still committing (a partition's
    next batch is handled while its last commits, and must see them), and a staging overlay
    for the batch being handled."""

    def __init__(self, window: timedelta) -> None:
        self._window_ms = int(window.total_seconds() * 1000)
        self._committed: dict[bytes, SeenEntry] = {}
        self._pending: dict[bytes, SeenEntry] = {}

    def __len__(self) -> int:
        return len(self._committed)

    def load(self, key: bytes, entry: SeenEntry | None) -> None:
        if entry is None:
            self._committed.pop(key, None)
        else:
            self._committed[key] = entry

    def classify(self, key: bytes, digest: bytes, staged: dict[bytes, SeenEntry]) -> Replay:
        known = staged.get(key) or self._pending.get(key) or self._committed.get(key)
        if known is None:
            return Replay.NEW
        return Replay.DUPLICATE if known.digest == digest else Replay.CONFLICT

    @property
    def pending(self) -> int:
        """Entries of batches handled but not yet committed or abandoned."""
        return len(self._pending)

    def hold(self, staged: dict[bytes, SeenEntry]) -> tuple[Callable[[], None], Callable[[], None]]:
        """Make ``staged`` (a handled batch's new ids) visible to later batches at once; the
        pair applies it once its transaction committed, or withdraws it if it will not."""
        self._pending.update(staged)

        def commit() -> None:
            self._committed.update(staged)
            self._release(staged)

        return commit, lambda: self._release(staged)

    def _release(self, staged: dict[bytes, SeenEntry]) -> None:
        for key, entry in staged.items():
            if self._pending.get(key) is entry:
                del self._pending[key]

    def prune(self, now: datetime) -> int:
        """Forget entries older than the window (the skew check refuses such bulletins anyway)."""
        horizon = int(now.timestamp() * 1000) - self._window_ms
        stale = [k for k, e in self._committed.items() if e.first_seen_ms < horizon]
        for key in stale:
            del self._committed[key]
        return len(stale)


class SeenLoader:
    """Reads ``enlace.router.seen`` (read_committed) up to its end into a :class:`SeenIndex`."""

    def __init__(
        self,
        settings: KafkaSettings,
        index: SeenIndex,
        topic: str = ROUTER_SEEN,
        *,
        on_skipped: Callable[[str], None] = lambda _r: None,
    ) -> None:
        self._settings = settings
        self._index = index
        self._topic = topic
        self._on_skipped = on_skipped
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        layout = await partitions_of(self._settings, [self._topic])
        self._consumer = clients.consumer(self._settings, group_id=None)
        try:
            await self._consumer.start()
            self._consumer.assign([TopicPartition(self._topic, p) for p in layout[self._topic]])
            await self._consumer.seek_to_beginning()
        except KafkaError as exc:
            await close_consumer(self._consumer)
            self._consumer = None
            raise BrokerError(f"cannot read {self._topic}: {exc!r}") from exc

    async def stop(self) -> None:
        if self._consumer is not None:
            await close_consumer(self._consumer)
            self._consumer = None

    async def catch_up(self) -> int:
        """Apply every committed entry up to the current end; return how many were read.

        Callers bound it with ``asyncio.timeout``.
        """
        consumer = started(self._consumer, "replay index loader")
        ends = await consumer.end_offsets(list(consumer.assignment()))
        read = 0
        while await self._behind(ends):
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for rec in records:
                    self._load(rec.key, rec.value)
                    read += 1
        return read

    def _load(self, key: bytes | None, value: bytes | None) -> None:
        """One entry; a record no router wrote (wrong size, no key) is skipped, counted."""
        if key is None:
            self._on_skipped("seen_malformed")
            return
        if value is None:
            self._index.load(key, None)  # a tombstone
            return
        try:
            entry = decode_entry(value)
        except struct.error:
            self._on_skipped("seen_malformed")
            return
        self._index.load(key, entry)

    async def _behind(self, ends: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        for tp, end in ends.items():
            if await self._consumer.position(tp) < end:
                return True
        return False
