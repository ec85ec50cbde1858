"""The publisher: validate, seal (encode + sign full and tearline), send, wait for acks=all.

``async with Publisher(settings) as pub: await pub.publish(bulletin)``. ``publish_many``
hands every record to the Kafka client first and then waits for all acknowledgements, so
records share batches (one request in flight per broker: batch size drives throughput).

Delivery is bounded: aiokafka's idempotent producer retries a batch forever, so each call
guards its sends and its wait with ``delivery_timeout_s`` and reports every bulletin that was
not acknowledged in time as a :class:`DeliveryError` (never a silent drop). Such a bulletin
may still land later; re-sending it with the same id is safe, the router drops duplicates.
After a timeout the Kafka client is replaced before the next call (aiokafka's idempotent
producer can stay wedged after an outage, aio-libs/aiokafka#1017).

Time (producers/skew.py): each record carries the publisher's clock as its Kafka timestamp.
A bulletin whose ``issued_at`` the router would refuse is refused before sending, and the
broker's ``INVALID_TIMESTAMP`` (the publisher's own clock is off) becomes the same typed
:class:`~enlace.core.errors.ClockSkewRefused`, counted and logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from enlace.core import clients
from enlace.core.clock import Clock, offset_clock, to_millis, utc_now
from enlace.core.closing import close_producer
from enlace.core.errors import (
    BulletinRefused,
    ClockSkewRefused,
    CodecError,
    ConfigError,
    DeliveryError,
    DeliveryTimeout,
    EnlaceError,
    KafkaUnavailable,
    NotStarted,
    RecordTooLarge,
    SignatureError,
    ValidationError,
)
from enlace.core.logs import get_logger
from enlace.core.registry import Agency, Registry
from enlace.core.topics import owner_partition
from producers.metrics import PublisherMetrics, RejectReason
from producers.prepare import ORIGIN_FIELD, prepare
from producers.recall import RecallReceipt, new_recall, send_recall
from producers.settings import PublisherSettings
from producers.skew import Window, issued_at_refusal, timestamp_refusal
from schemas.envelope import Sealed, seal
from schemas.models import ThreatBulletin
from schemas.recall import BulletinRecall, seal_recall
from schemas.sealed import Sealer, recipients_of
from schemas.sealing import BoxCache
from schemas.signing import AgencyKey, KeyDirectory, KeyEntry

log = get_logger(__name__)

Publishable = ThreatBulletin | Mapping[str, Any]


@dataclass(frozen=True)
class DeliveryResult:
    """The broker acknowledged the bulletin (acks=all) at this position."""

    bulletin_id: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class PublishFailure:
    """A bulletin that was not published; ``bulletin_id`` is None if it never got one."""

    bulletin_id: str | None
    reason: RejectReason
    error: EnlaceError

    def __str__(self) -> str:
        return f"{self.bulletin_id or '(no id)'}: {self.reason}: {self.error}"


Outcome = DeliveryResult | PublishFailure


# Error class → reject reason, first match wins (a DeliveryTimeout is a DeliveryError).
_REASONS: tuple[tuple[type[EnlaceError], RejectReason], ...] = (
    (RecordTooLarge, "oversize"),
    (KafkaUnavailable, "unavailable"),
    (DeliveryTimeout, "timeout"),
    (ClockSkewRefused, "clock_skew"),
)


def reason_of(error: EnlaceError) -> RejectReason:
    if isinstance(error, ValidationError):
        if any(field == ORIGIN_FIELD for field, _ in error.problems):
            return "wrong_origin"
        return "invalid"
    return next((reason for kind, reason in _REASONS if isinstance(error, kind)), "refused")


def check_own_key(directory: KeyDirectory, key: AgencyKey, at: datetime) -> None:
    """Refuse to publish with a key the router would not accept (it would dead-letter all)."""
    probe = b"enlace-publisher-self-check"
    try:
        directory.verify(key.agency, key.key_id, probe, key.sign(probe), at=at)
    except SignatureError as exc:
        raise ConfigError(
            f"signing key {key.key_id!r} fails the key directory's check: {exc}"
        ) from exc


class Publisher:
    """Publishes an agency's bulletins to its outbound topic. No I/O before :meth:`start`."""

    def __init__(
        self,
        settings: PublisherSettings,
        *,
        key: AgencyKey | None = None,
        registry: Registry | None = None,
        metrics: PublisherMetrics | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.topic = settings.outbound_topic
        self.metrics = metrics if metrics is not None else PublisherMetrics(settings.agency)
        self._key = key
        self._registry = registry
        # Zero outside drills: then this is ``clock`` itself.
        self._clock = offset_clock(clock, settings.fault_clock_offset_s)
        self._window = Window(
            timedelta(seconds=settings.admission_max_future_s),
            timedelta(seconds=settings.admission_max_past_s),
        )
        self._agency: Agency | None = None
        self._directory: KeyDirectory | None = None
        self._partners: tuple[str, ...] = ()
        self._boxes = BoxCache()  # shared keys with each partner, computed once
        # The recipients' keys at the last ``now`` sealed for and the Sealer made for them:
        # callers seal a batch with one ``now``, and the key set rarely changes.
        self._sealer_at: datetime | None = None
        self._sealer_keys: tuple[KeyEntry, ...] = ()
        self._sealer: Sealer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._wedged = False
        self._running = False
        self._swap = asyncio.Lock()

    @property
    def agency(self) -> Agency:
        if self._agency is None:
            raise NotStarted("publisher not started")
        return self._agency

    @property
    def key(self) -> AgencyKey:
        if self._key is None:
            raise NotStarted("publisher not started")
        return self._key

    @property
    def clock(self) -> Clock:
        """The publisher's notion of now (the drill's offset applied): the intake and the
        drop-folder watcher date what they hand over with it."""
        return self._clock

    @property
    def healthy(self) -> bool:
        return self._producer is not None and not self._wedged

    def load(self) -> None:
        """Read the registry and the signing key and check them; no network. Idempotent.

        Lets a caller validate and seal (e.g. refuse a whole file) before connecting.
        """
        if self._agency is not None:
            return
        settings = self.settings
        registry = self._registry or Registry.load(settings.agencies_file)
        agency = registry.get(settings.agency)
        if self._key is None:
            if settings.producer_key_file is None:
                raise ConfigError(
                    "no signing key: pass --key PATH or set ENLACE_PRODUCER_KEY_FILE "
                    "(create one with `enlace keys generate`)"
                )
            self._key = AgencyKey.load(settings.producer_key_file.expanduser())
        if self._key.agency != settings.agency:
            raise ConfigError(
                f"signing key {self._key.key_id!r} belongs to {self._key.agency!r}, "
                f"not to the publishing agency {settings.agency!r}"
            )
        if settings.keys_file is not None:
            self._directory = KeyDirectory.load(settings.keys_file)
            check_own_key(self._directory, self._key, self._clock())
        self._partners = tuple(a for a in registry.ids if a != agency.id)
        if settings.sealed and self._directory is not None:
            keyless = [
                p for p in self._partners if self._directory.current_key(p, self._clock()) is None
            ]
            if keyless:
                # Sealed for nobody there: the router withholds from them (not_sealed_for).
                log.warning("partners_without_keys", agency=agency.id, partners=keyless)
        if settings.fault_clock_offset_s:
            log.warning(
                "publisher_clock_offset_drill",
                agency=agency.id,
                offset_s=settings.fault_clock_offset_s,
            )
        if not settings.sealed:
            log.warning(
                "publishing_in_clear",
                agency=agency.id,
                why="no key directory: bulletins are signed but the hub can read them",
            )
        self._agency = agency

    async def start(self) -> None:
        self.load()
        clients.check_c_extensions()
        self._producer = await self._connect()
        self._running = True
        log.info("publisher_started", agency=self.settings.agency, topic=self.topic)

    async def _connect(self) -> AIOKafkaProducer:
        timeout = self.settings.delivery_timeout_s
        producer = clients.producer(
            self.settings, request_timeout_ms=int(min(30.0, timeout) * 1000)
        )
        try:
            await asyncio.wait_for(producer.start(), timeout)
            partitions = await asyncio.wait_for(producer.partitions_for(self.topic), timeout)
        except (KafkaError, TimeoutError, OSError) as exc:
            await close_producer(producer, self.settings.close_timeout_s)
            raise KafkaUnavailable(
                f"cannot publish to {self.topic} via {self.settings.kafka_bootstrap}: {exc!r} "
                "(is the broker up and the topic provisioned?)"
            ) from exc
        if not partitions:
            await close_producer(producer, self.settings.close_timeout_s)
            raise KafkaUnavailable(f"topic {self.topic} has no partitions")
        return producer

    async def stop(self) -> None:
        self._running = False
        async with self._swap:
            producer, self._producer = self._producer, None
        if producer is not None:
            await close_producer(producer, self.settings.close_timeout_s)
            log.info("publisher_stopped", agency=self.settings.agency)

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _ready_producer(self) -> AIOKafkaProducer:
        """The Kafka client, replaced first if the last call left it wedged."""
        async with self._swap:
            if not self._running:
                raise NotStarted("publisher not started (use `async with Publisher(...)`)")
            if self._producer is not None and not self._wedged:
                return self._producer
            old, self._producer = self._producer, None
            if old is not None:
                # Its unacknowledged records were already reported; do not wait for them.
                await close_producer(old, self.settings.close_timeout_s, drain=False)
            self._producer = await self._connect()
            self._wedged = False
            log.info("producer_reconnected", agency=self.settings.agency)
            return self._producer

    def seal(self, obj: Publishable, now: datetime) -> tuple[ThreatBulletin, Sealed]:
        """Validate and seal one bulletin (pure apart from signing); raises EnlaceError."""
        bulletin = prepare(obj, self.agency, now)
        refusal = issued_at_refusal(bulletin.bulletin_id, bulletin.issued_at, now, self._window)
        if refusal is not None:
            raise refusal
        if self._directory is not None and self.settings.sealed:
            sealed = self._sealer_at_time(self._directory, now).seal(bulletin)
        else:
            sealed = seal(bulletin, self.key)
        limit = self.settings.max_bulletin_bytes
        if len(sealed.value) > limit:
            raise RecordTooLarge(
                f"bulletin {bulletin.bulletin_id} encodes to {len(sealed.value)} bytes, "
                f"over the limit of {limit}"
            )
        return bulletin, sealed

    def _sealer_at_time(self, directory: KeyDirectory, now: datetime) -> Sealer:
        """The Sealer for the partners' keys valid at ``now`` (looked up once per ``now``;
        a rotation or revocation in the directory shows as a new key set, a new Sealer)."""
        if self._sealer is None or now != self._sealer_at:
            keys = tuple(recipients_of(directory, self._partners, now))
            if self._sealer is None or keys != self._sealer_keys:
                self._sealer = Sealer(self.key, keys, boxes=self._boxes)
                self._sealer_keys = keys
            self._sealer_at = now
        return self._sealer

    def refused(self, bulletin_id: str | None, error: EnlaceError) -> PublishFailure:
        """Count and log a bulletin a caller of :meth:`seal` could not publish."""
        return self._fail(bulletin_id, error)

    def _fail(self, bulletin_id: str | None, error: EnlaceError) -> PublishFailure:
        reason = reason_of(error)
        self.metrics.reject(reason)
        if isinstance(error, ClockSkewRefused):
            self.metrics.clock_skew(error.reason)
            log.warning(
                "bulletin_refused_clock_skew",
                bulletin_id=bulletin_id,
                origin=self.settings.agency,
                reason=error.reason,
            )
        return PublishFailure(bulletin_id, reason, error)

    async def publish(self, obj: Publishable) -> DeliveryResult:
        """Publish one bulletin; raises the typed error if it was not published."""
        (outcome,) = await self.publish_many([obj])
        if isinstance(outcome, PublishFailure):
            raise outcome.error
        return outcome

    async def publish_many(self, objs: Iterable[Publishable]) -> list[Outcome]:
        """Publish ``objs``; one outcome per input, in order. Never raises for one bulletin."""
        now = self._clock()
        outcomes: list[Outcome | None] = []
        sealed: list[tuple[ThreatBulletin, Sealed]] = []
        slots: list[int] = []
        for obj in objs:
            try:
                sealed.append(self.seal(obj, now))
            except (ValidationError, CodecError, SignatureError, BulletinRefused) as exc:
                claimed = obj.get("bulletin_id") if isinstance(obj, Mapping) else None
                outcomes.append(self._fail(claimed if isinstance(claimed, str) else None, exc))
                continue
            slots.append(len(outcomes))
            outcomes.append(None)
        for slot, outcome in zip(slots, await self.send_sealed(sealed), strict=True):
            outcomes[slot] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    def seal_recall(self, bulletin_id: str, reason: str) -> tuple[BulletinRecall, Sealed]:
        """Validate and sign a recall of ``bulletin_id`` (pure apart from signing); raises
        :class:`ValidationError` (not a UUID, blank or over-long reason)."""
        recall = new_recall(self.agency.id, bulletin_id, reason, self._clock())
        return recall, seal_recall(recall, self.key)

    async def recall(self, bulletin_id: str, reason: str) -> RecallReceipt:
        """Publish a signed recall of ``bulletin_id`` (one this agency published) on the
        outbound topic, on the bulletin's owner partition (producers/recall.py).

        Raises :class:`ValidationError` before any I/O, then :class:`KafkaUnavailable`,
        :class:`DeliveryTimeout`, :class:`ClockSkewRefused` or :class:`DeliveryError`.
        Whether the router accepts it (from its originator, for a bulletin it routed) only
        the router knows: it dead-letters a recall that fails."""
        return await self.send_recall(*self.seal_recall(bulletin_id, reason))

    async def send_recall(self, recall: BulletinRecall, sealed: Sealed) -> RecallReceipt:
        """Send a recall made by :meth:`seal_recall` within the delivery deadline."""
        producer = await self._ready_producer()
        stamped = self._clock()
        try:
            receipt = await send_recall(
                producer,
                self.topic,
                recall,
                sealed,
                timeout=self.settings.delivery_timeout_s,
                stamped=stamped,
            )
        except (DeliveryTimeout, ClockSkewRefused):
            # As for bulletins: a client that timed out, or whose numbered batch the broker
            # refused, is replaced before the next call.
            self._wedged = True
            raise
        log.info(
            "bulletin_recalled",
            recall_id=receipt.recall_id,
            bulletin_id=recall.bulletin_id,
            origin=recall.origin,
            partition=receipt.partition,
            offset=receipt.offset,
        )
        return receipt

    async def send_sealed(self, records: Sequence[tuple[ThreatBulletin, Sealed]]) -> list[Outcome]:
        """Send records made by :meth:`seal`; one outcome each, in order, within the deadline."""
        if not records:
            return []
        try:
            producer = await self._ready_producer()
        except KafkaUnavailable as exc:
            return [self._fail(bulletin.bulletin_id, exc) for bulletin, _ in records]
        return await self._send_all(producer, records)

    async def _send_all(
        self, producer: AIOKafkaProducer, records: Sequence[tuple[ThreatBulletin, Sealed]]
    ) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        timeout = self.settings.delivery_timeout_s
        # The records' Kafka timestamp is the publisher's clock, not the client library's: the
        # broker's bound on it is how a publisher learns its clock is off (producers/skew.py).
        stamped = self._clock()
        stamp_ms = to_millis(stamped)
        sent: list[asyncio.Future[Any] | PublishFailure] = []
        try:
            # Each send must get its record into the client's buffer within the timeout (it
            # blocks when the buffer is full because the broker stopped acknowledging).
            async with asyncio.timeout(None) as guard:
                guard.reschedule(loop.time() + timeout)
                # The owner partition, as the client's keyed partitioner would pick it from
                # the same metadata, but hashed a word at a time (enlace/core/partitioning.py).
                partitions = len(await producer.partitions_for(self.topic))
                for bulletin, record in records:
                    guard.reschedule(loop.time() + timeout)
                    try:
                        future = await producer.send(
                            self.topic,
                            record.value,
                            key=record.key,
                            partition=owner_partition(bulletin.bulletin_id, partitions),
                            headers=record.headers,
                            timestamp_ms=stamp_ms,
                        )
                    except KafkaTimeoutError:
                        raise
                    except KafkaError as exc:
                        # Refused before sending (e.g. over the client's request size): only
                        # this record is affected.
                        refusal = DeliveryError(f"Kafka client refused the record: {exc!r}")
                        sent.append(self._fail(bulletin.bulletin_id, refusal))
                        continue
                    self._track(future)
                    sent.append(future)
        except (TimeoutError, KafkaTimeoutError) as exc:
            self._wedged = True
            unsent = DeliveryTimeout(
                f"not acknowledged: the Kafka client did not accept the record within "
                f"{timeout:g} s ({exc!r}); nothing of it was sent"
            )
            sent.extend(self._fail(b.bulletin_id, unsent) for b, _ in records[len(sent) :])
        futures = [item for item in sent if not isinstance(item, PublishFailure)]
        if futures:
            await asyncio.wait(futures, timeout=timeout)
        return [
            item
            if isinstance(item, PublishFailure)
            else self._outcome(bulletin, item, timeout, stamped)
            for (bulletin, _), item in zip(records, sent, strict=True)
        ]

    def _track(self, future: asyncio.Future[Any]) -> None:
        metrics = self.metrics
        metrics.in_flight.inc()
        started = time.perf_counter()

        def done(fut: asyncio.Future[Any]) -> None:
            metrics.in_flight.dec()
            # Retrieve the exception so a late failure is never "never retrieved" noise.
            if not fut.cancelled() and fut.exception() is None:
                metrics.latency.observe(time.perf_counter() - started)

        future.add_done_callback(done)

    def _outcome(
        self,
        bulletin: ThreatBulletin,
        future: asyncio.Future[Any],
        timeout: float,
        stamped: datetime,
    ) -> Outcome:
        if not future.done():
            self._wedged = True
            log.warning(
                "bulletin_not_acknowledged",
                bulletin_id=bulletin.bulletin_id,
                origin=bulletin.origin,
            )
            return self._fail(
                bulletin.bulletin_id,
                DeliveryTimeout(
                    f"bulletin {bulletin.bulletin_id} not acknowledged within {timeout:g} s; "
                    "it may still be delivered: re-send it with the same id (the router "
                    "drops duplicates)"
                ),
            )
        exc = future.exception() if not future.cancelled() else DeliveryError("send cancelled")
        skewed = timestamp_refusal(bulletin.bulletin_id, exc, stamped) if exc else None
        if skewed is not None:
            # aiokafka's idempotent producer has already numbered the refused batch: the next
            # one would fail OutOfOrderSequence. A fresh client before the next call.
            self._wedged = True
            return self._fail(bulletin.bulletin_id, skewed)
        if exc is not None:
            log.warning(
                "bulletin_refused",
                bulletin_id=bulletin.bulletin_id,
                origin=bulletin.origin,
                error=repr(exc),
            )
            error = (
                exc
                if isinstance(exc, EnlaceError)
                else DeliveryError(f"broker refused bulletin {bulletin.bulletin_id}: {exc!r}")
            )
            return self._fail(bulletin.bulletin_id, error)
        metadata = future.result()
        self.metrics.published.inc()
        return DeliveryResult(
            bulletin.bulletin_id, metadata.topic, metadata.partition, metadata.offset
        )
