"""Replay protection and each bulletin's routing state, surviving restarts.

The index lives in memory and in the compacted topic ``enlace.router.seen`` (key
``<origin>/<bulletin id>``). The router writes an entry in the same transaction as the
releases, so the topic holds exactly the ids whose releases are committed; a new owner of a
partition reads it to the end before routing.

An entry's value is the SHA-256 of the bulletin's signed bytes and its first-seen time
(40 bytes, version 1), then (version 2, issue 18) its :class:`Route`: where it is on the
outbound topic, its validity, and what each partner holds of it. A recall and a release when
trust is earned are decided on, and rewrite, the entry in the same transaction as their feed
records: that is what makes a recall reach exactly the bulletin's recipients, and each earned
release happen once across restarts and router instances. Version-1 entries (routed before
the route was recorded) stay readable; such a bulletin can be neither recalled nor released
again.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from enlace.core import clients
from enlace.core.closing import close_consumer
from enlace.core.errors import BrokerError, started
from enlace.core.settings import KafkaSettings
from enlace.core.topics import ROUTER_SEEN, partitions_of

_VALUE = struct.Struct(">32sq")  # sha256 digest, first-seen epoch milliseconds
# Version 2 adds: outbound partition and offset, valid_until epoch ms (0: none), flags; then ASCII
# "CLASSIFICATION|TEARLINE_CLASSIFICATION|partner=L[*],..." (L: F, T or W; * upgradable).
_ROUTE = struct.Struct(">iqqB")
_RECALLED = 0x01
MAX_ENTRY_BYTES = 4096


class Replay(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"  # same id, same bytes: a publisher retry
    CONFLICT = "conflict"  # same id, other bytes: dead letter


class Held(StrEnum):
    """What a partner holds of a bulletin."""

    FULL = "F"
    TEARLINE = "T"
    NOTHING = "W"

    @property
    def rank(self) -> int:
        return _HELD_RANK[self]


_HELD_RANK = {Held.NOTHING: 0, Held.TEARLINE: 1, Held.FULL: 2}
_HELD_CODES = {f"{held.value}{mark}": (held, mark == "*") for held in Held for mark in ("", "*")}


class PartnerHold(NamedTuple):
    """(A tuple: every hold of the window is built at a router's start, and a frozen
    dataclass costs several times more to create.)"""

    partner: str
    held: Held
    # Withheld or tearlined because of the score (rules score_below, score_tearline): a
    # later, higher score may release more. Never for rule-withheld bulletins.
    upgradable: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """A routed bulletin's state: the record to re-read, its validity, its recipients."""

    # The bulletin's outbound record (re-read for a release when trust is earned).
    partition: int
    offset: int
    valid_until_ms: int | None
    classification: str
    tearline_classification: str
    holds: tuple[PartnerHold, ...] = ()
    recalled: bool = False

    @property
    def recipients(self) -> tuple[PartnerHold, ...]:
        return tuple(h for h in self.holds if h.held is not Held.NOTHING)

    @property
    def upgradable(self) -> tuple[PartnerHold, ...]:
        """Partners a higher score could release more to (none once recalled)."""
        if self.recalled:
            return ()
        return tuple(h for h in self.holds if h.upgradable and h.held is not Held.FULL)

    def holding(self, partner: str) -> PartnerHold | None:
        for hold in self.holds:
            if hold.partner == partner:
                return hold
        return None

    def with_hold(self, hold: PartnerHold) -> Route:
        holds = tuple(hold if h.partner == hold.partner else h for h in self.holds)
        return replace(self, holds=holds)


@dataclass(frozen=True, slots=True)
class SeenEntry:
    digest: bytes
    first_seen_ms: int
    route: Route | None = None


def seen_key(origin: str, bulletin_id: str) -> bytes:
    return f"{origin}/{bulletin_id}".encode()


def split_seen_key(key: bytes) -> tuple[str, str]:
    """(origin, bulletin id) of a :func:`seen_key`."""
    origin, _, bulletin_id = key.decode("ascii", "replace").partition("/")
    return origin, bulletin_id


def encode_entry(entry: SeenEntry) -> bytes:
    head = _VALUE.pack(entry.digest, entry.first_seen_ms)
    route = entry.route
    if route is None:
        return head
    flags = _RECALLED if route.recalled else 0
    holds = ",".join(
        f"{h.partner}={h.held.value}{'*' if h.upgradable else ''}" for h in route.holds
    )
    text = f"{route.classification}|{route.tearline_classification}|{holds}"
    fixed = _ROUTE.pack(route.partition, route.offset, route.valid_until_ms or 0, flags)
    return head + fixed + text.encode()


def decode_entry(raw: bytes) -> SeenEntry:
    """An entry of either version; ValueError (or struct.error) on bytes no router wrote."""
    if len(raw) > MAX_ENTRY_BYTES:
        raise ValueError(f"entry of {len(raw)} bytes")
    digest, first_seen_ms = _VALUE.unpack_from(raw)
    if len(raw) == _VALUE.size:
        return SeenEntry(digest, first_seen_ms)
    partition, offset, valid_until_ms, flags = _ROUTE.unpack_from(raw, _VALUE.size)
    text = raw[_VALUE.size + _ROUTE.size :].decode("ascii")
    classification, tearline_classification, listing = text.split("|")
    holds = []
    # Every entry of the window is decoded at a router's start: plain dict lookups, no enum
    # calls (a 10-partner entry in ~half the time).
    for item in listing.split(",") if listing else ():
        partner, sep, state = item.partition("=")
        held = _HELD_CODES.get(state)
        if not sep or not partner or held is None:
            raise ValueError(f"malformed hold {item!r}")
        holds.append(PartnerHold(partner, *held))
    route = Route(
        partition,
        offset,
        valid_until_ms or None,
        classification,
        tearline_classification,
        tuple(holds),
        bool(flags & _RECALLED),
    )
    return SeenEntry(digest, first_seen_ms, route)


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
        # Bulletin id -> the origin it was routed for (a recall names an id, not a key).
        self._origin_of: dict[str, str] = {}
        # Committed entries a higher score could release more of (see Route.upgradable), by
        # (origin, outbound partition): each partition's owner scans its own.
        self._upgradable: dict[tuple[str, int], dict[bytes, SeenEntry]] = {}

    def __len__(self) -> int:
        return len(self._committed)

    def load(self, key: bytes, entry: SeenEntry | None) -> None:
        if entry is None:
            self.forget_upgrades(key)
            self._committed.pop(key, None)
        else:
            self._put(key, entry)

    def _put(self, key: bytes, entry: SeenEntry) -> None:
        self._committed[key] = entry
        origin, bulletin_id = split_seen_key(key)
        self._origin_of.setdefault(bulletin_id, origin)
        route = entry.route
        if route is None:
            return
        group = self._upgradable.setdefault((origin, route.partition), {})
        if route.upgradable:
            group[key] = entry
        else:
            group.pop(key, None)

    def lookup(self, key: bytes, staged: dict[bytes, SeenEntry]) -> SeenEntry | None:
        """The newest entry of ``key``: staged in this batch, pending commit, or committed."""
        return staged.get(key) or self._pending.get(key) or self._committed.get(key)

    def origin_of(self, bulletin_id: str, staged: dict[bytes, SeenEntry]) -> str | None:
        """The origin a bulletin id was routed for, whoever routed it."""
        found = self._origin_of.get(bulletin_id)
        if found is not None:
            return found
        for key in (*staged, *self._pending):
            origin, known = split_seen_key(key)
            if known == bulletin_id:
                return origin
        return None

    def upgradable(self, origin: str, partition: int) -> list[tuple[bytes, SeenEntry]]:
        """Committed entries of ``origin``'s outbound ``partition`` that a higher score could
        release more of."""
        return list(self._upgradable.get((origin, partition), {}).items())

    def forget_upgrades(self, key: bytes) -> None:
        """Stop considering ``key`` for release when trust is earned (expired, gone); only a
        committed entry is ever considered."""
        entry = self._committed.get(key)
        if entry is not None and entry.route is not None:
            group = (split_seen_key(key)[0], entry.route.partition)
            self._upgradable.get(group, {}).pop(key, None)

    def classify(self, key: bytes, digest: bytes, staged: dict[bytes, SeenEntry]) -> Replay:
        known = self.lookup(key, staged)
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
            for key, entry in staged.items():
                self._put(key, entry)
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
            self.forget_upgrades(key)
            del self._committed[key]
            self._origin_of.pop(split_seen_key(key)[1], None)
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
        except (struct.error, ValueError, UnicodeDecodeError):
            self._on_skipped("seen_malformed")
            return
        self._index.load(key, entry)

    async def _behind(self, ends: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        for tp, end in ends.items():
            if await self._consumer.position(tp) < end:
                return True
        return False
