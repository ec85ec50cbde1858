"""Writes a :class:`bench.history.History` to Kafka quickly, as the router and the partners
would have written it.

* Audit records are the router's own (``broker.outputs._audit_out``: the Avro value and the
  ``enlace-audit`` summary header), with the score and factors a fresh ledger gives each pair,
  record timestamp = ``decided_at``.
* Trust events are sealed with the reporter's key (``seal_event``, the headers a partner's
  consumer sends), record timestamp = arrival.

Encoding and signing (about 150 µs an event, 50 µs an audit record, in Python) run in a pool
of ``WORKERS`` processes; this process only fills record batches (aiokafka's C batch
builder, one open batch per partition, ``send_batch``: no per-record ``send`` call) and keeps
a bounded number of them in flight on an idempotent acks=all producer, uncompressed as the
exchange's producers are. Partitions are the default partitioner's (murmur2 of the key), so
the records land where a plain producer would have put them.

The receipts topics are created with broker-set timestamps (``LogAppendTime``), which would
date the whole history "now": they are switched to ``CreateTime`` for the load and back
afterwards, like a topic migrated from writer timestamps (README, "Known limits").
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import murmur2

from bench.exchange import Exchange
from bench.history import Event, History, Release
from broker.outputs import _audit_out, audit_factors
from broker.release import Rule
from broker.trust_state import TrustState
from enlace.core import clients
from enlace.core.settings import KafkaSettings
from enlace.core.topics import AUDIT, TIMESTAMP_TYPE, exchange_topics, outbound, receipts
from schemas.agency_key import AgencyKey
from schemas.envelope import seal_event
from schemas.models import TrustEvent
from schemas.vocab import ReleaseKind

WORKERS = 2
CHUNK = 5_000  # records per pool task
BATCH_BYTES = 512 * 1024
IN_FLIGHT = 64  # batches sent and not yet acknowledged
PROGRESS_S = 5.0

# partition, key, value, headers, timestamp ms
Record = tuple[int, bytes, bytes, list[tuple[str, bytes]], int]
# per (origin, partner): rule by decision, score, factors (as the router's audit has them)
Templates = dict[tuple[str, str], tuple[dict[str, str], float, list[dict[str, Any]]]]


def partition_of(key: bytes, partitions: int) -> int:
    """The default partitioner's choice (Java's and aiokafka's: murmur2, positive, modulo)."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def audit_templates(exchange: Exchange, now: datetime) -> Templates:
    """Score and factors of every pair under a fresh ledger: what a router with no evidence
    writes (encoded into every audit record of the pair; the values vary, the shape not)."""
    state = TrustState(exchange.policy, exchange.registry.ids)
    rules = {ReleaseKind.FULL.value: Rule.SCORE_FULL.value,
             ReleaseKind.TEARLINE.value: Rule.SCORE_TEARLINE.value}  # fmt: skip
    found: Templates = {}
    for origin in exchange.registry.ids:
        for partner in exchange.registry.ids:
            if origin != partner:
                score = state.score(origin, partner, exchange.policy, now)
                found[origin, partner] = (rules, round(score.value, 6), list(audit_factors(score)))
    return found


# -- the pool's side (module globals: set once per worker by the initializer) -------------
_KEYS: dict[str, AgencyKey] = {}
_TEMPLATES: Templates = {}
_PARTITIONS = 1


def _init(keys: dict[str, AgencyKey], templates: Templates, partitions: int) -> None:
    global _PARTITIONS  # noqa: PLW0603 - per-process state of a pool worker
    _KEYS.update(keys)
    _TEMPLATES.update(templates)
    _PARTITIONS = partitions


def seal_events(events: Sequence[Event]) -> list[Record]:
    """Each event sealed by its reporter, keyed by its id (as ``seal_event`` makes it)."""
    out: list[Record] = []
    for e in events:
        event = TrustEvent(
            event_id=e.event_id, kind=e.kind, reporter=e.reporter, subject=e.subject,
            bulletin_id=e.bulletin_id,
            occurred_at=datetime.fromtimestamp(e.occurred_ms / 1000, tz=UTC),
        )  # fmt: skip
        sealed = seal_event(event, _KEYS[e.reporter])
        partition = partition_of(sealed.key, _PARTITIONS)
        out.append((partition, sealed.key, sealed.value, list(sealed.headers), e.arrival_ms))
    return out


def encode_audits(first_offset: int, releases: Sequence[Release]) -> list[Record]:
    """The router's audit record of each release; source offsets count up from
    ``first_offset`` (the router's input offsets, which only the audit trail reads)."""
    out: list[Record] = []
    for n, r in enumerate(releases, start=first_offset):
        rules, score, factors = _TEMPLATES[r.origin, r.partner]
        bulletin = r.bulletin_id.encode("ascii")
        record = _audit_out({
            "bulletin_id": r.bulletin_id, "origin": r.origin, "partner": r.partner,
            "decision": r.decision, "rule": rules[r.decision], "score": score,
            "factors": factors, "decided_at": datetime.fromtimestamp(r.at_ms / 1000, tz=UTC),
            "source_topic": outbound(r.origin),
            "source_partition": partition_of(bulletin, _PARTITIONS), "source_offset": n,
            # One record per pair (the version-1 shape, still written for duplicates) and no
            # bulletin facts: the trust history reads neither.
            "decisions": (), "facts": None,
        })  # fmt: skip
        key = record.key or b""
        out.append((partition_of(key, _PARTITIONS), key, record.value, list(record.headers),
                    r.at_ms))  # fmt: skip
    return out


def _job(job: tuple[str, int, Sequence[Any]]) -> tuple[str, list[Record]]:
    topic, first, items = job
    return topic, encode_audits(first, items) if topic == AUDIT else seal_events(items)


def _chunks(topic: str, items: Sequence[Any]) -> Iterator[tuple[str, int, Sequence[Any]]]:
    # A function, not a generator expression in the caller's loop: that would read the
    # loop's variables when iterated, i.e. the last reporter's, for every stream.
    for i in range(0, len(items), CHUNK):
        yield topic, i, items[i : i + CHUNK]


def jobs(history: History) -> Iterator[tuple[str, int, Sequence[Any]]]:
    """Pool tasks, each topic's in its order, topics interleaved (both in time order)."""
    streams = [_chunks(AUDIT, history.releases)]
    streams += [_chunks(receipts(r), events) for r, events in history.events.items()]
    while streams:
        for stream in list(streams):
            item = next(stream, None)
            if item is None:
                streams.remove(stream)
            else:
                yield item


# -- this process's side --------------------------------------------------------------------
class Batches:
    """One open record batch per (topic, partition), sent when full; at most ``IN_FLIGHT``
    unacknowledged (back-pressure on the pool's results)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._open: dict[tuple[str, int], Any] = {}
        self._pending: deque[asyncio.Future[Any]] = deque()
        self.written = 0

    async def add(self, topic: str, records: list[Record]) -> None:
        for partition, key, value, headers, timestamp_ms in records:
            batch = self._open.get((topic, partition))
            if batch is None:
                batch = self._open[topic, partition] = self._producer.create_batch()
            if batch.append(timestamp=timestamp_ms, key=key, value=value, headers=headers) is None:
                await self._send(topic, partition)
                batch = self._open[topic, partition] = self._producer.create_batch()
                batch.append(timestamp=timestamp_ms, key=key, value=value, headers=headers)
        self.written += len(records)

    async def _send(self, topic: str, partition: int) -> None:
        batch = self._open.pop((topic, partition))
        self._pending.append(await self._producer.send_batch(batch, topic, partition=partition))
        while len(self._pending) > IN_FLIGHT:
            await self._pending.popleft()

    async def close(self) -> None:
        for topic, partition in list(self._open):
            await self._send(topic, partition)
        while self._pending:
            await self._pending.popleft()


async def set_receipts_timestamps(
    settings: KafkaSettings, exchange: Exchange, partitions: int, kind: str
) -> None:
    """Every receipts topic's configs as provisioned, with ``message.timestamp.type`` =
    ``kind`` (AlterConfigs is not incremental: it replaces all dynamic configs)."""
    specs = exchange_topics(exchange.registry.ids, partitions=partitions,
                            replication=settings.topic_replication,
                            min_insync=settings.topic_min_insync)  # fmt: skip
    names = {receipts(a) for a in exchange.registry.ids}
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, s.name, {**dict(s.configs), TIMESTAMP_TYPE: kind})
        for s in specs
        if s.name in names
    ]
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=30_000)
    try:
        await admin.start()
        await admin.alter_configs(resources)
    finally:
        await admin.close()


@dataclass(frozen=True)
class Written:
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


async def write_history(
    settings: KafkaSettings, exchange: Exchange, history: History, partitions: int,
    progress: Callable[[str], None],
) -> Written:  # fmt: skip
    """Encode, sign and produce the whole history; receipts topics back on LogAppendTime."""
    total = len(history.releases) + history.event_count
    templates = audit_templates(exchange, datetime.now(UTC))
    await set_receipts_timestamps(settings, exchange, partitions, "CreateTime")
    started = time.perf_counter()
    producer = clients.producer(settings, max_batch_size=BATCH_BYTES, linger_ms=50)
    await producer.start()
    context = multiprocessing.get_context("fork")
    try:
        with context.Pool(WORKERS, _init, (exchange.keys, templates, partitions)) as pool:
            results = pool.imap(_job, jobs(history))
            batches, shown = Batches(producer), started
            while (done := await asyncio.to_thread(next, results, None)) is not None:
                await batches.add(*done)
                if time.perf_counter() - shown >= PROGRESS_S:
                    shown = time.perf_counter()
                    rate = batches.written / (shown - started)
                    progress(f"history: {batches.written:,} of {total:,} records "
                             f"({rate:,.0f} records/s)")  # fmt: skip
            await batches.close()
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
    seconds = time.perf_counter() - started
    await set_receipts_timestamps(settings, exchange, partitions, "LogAppendTime")
    progress(f"history: {batches.written:,} records in {seconds:.1f} s "
             f"({batches.written / seconds:,.0f} records/s)")  # fmt: skip
    return Written(batches.written, seconds)
