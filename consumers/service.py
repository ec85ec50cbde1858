"""The partner consumer service: one agency's feed → verify → sinks → commit → receipts.

Loop, per batch: open every record (:func:`consumers.verify.open_feed_record`; failures become
quarantine items, never exceptions), hand the batch to every sink concurrently (each retried
with backoff until it holds it), commit per partition the lowest offset every sink holds,
then send signed receipts for bulletins the store marks pending. A crash anywhere repeats at
most the uncommitted tail; the store turns repeats into no-ops and receipts carry
deterministic ids.

Embedding: any number of consumers can share one event loop and one
:class:`~consumers.metrics.ConsumerMetrics`; pass ``on_delivery``/``on_quarantine`` callbacks
to observe them::

    async with FeedConsumer(settings, metrics=metrics, on_delivery=show) as consumer:
        task = asyncio.create_task(consumer.run())
        ...
        await consumer.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)

from consumers.drills import KillDrill, KillPoint
from consumers.gaps import FeedGap, resume_after_out_of_range
from consumers.lifecycle import recalled_ids, screen_recalls
from consumers.metrics import ConsumerMetrics
from consumers.receipt_sender import ReceiptSender
from consumers.receipts import load_agency_key
from consumers.records import (
    Delivered,
    Delivery,
    FeedRecord,
    Item,
    Quarantined,
    Recalled,
    RecallOutcome,
    StoreOutcome,
)
from consumers.settings import ConsumerSettings
from consumers.sinks import Sink, SqliteSink, WriteResult, build_sink, parse_sink_uris
from consumers.verify import open_feed_record
from enlace.core import clients
from enlace.core.closing import close_consumer, close_producer
from enlace.core.errors import BrokerError, ConfigError, KafkaUnavailable, NotStarted, SinkError
from enlace.core.logs import get_logger
from enlace.core.registry import Registry
from schemas import headers as hdr
from schemas.key_directory import KeyDirectory
from schemas.sealing import BoxCache
from schemas.signing import AgencyKey

log = get_logger(__name__)


DeliveryHook = Callable[[Delivery], None]
QuarantineHook = Callable[[Quarantined], None]
RecallHook = Callable[[Recalled, RecallOutcome], None]
BatchHook = Callable[[Sequence[Item]], Awaitable[None]]
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, owner: FeedConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner.commit_held(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner.forget_commits(assigned)


class FeedConsumer:
    """One agency's feed consumer. ``start()``/``run()``/``stop()``, or ``async with``."""

    def __init__(
        self,
        settings: ConsumerSettings,
        sinks: Sequence[Sink] | None = None,
        *,
        directory: KeyDirectory | None = None,
        key: AgencyKey | None = None,
        metrics: ConsumerMetrics | None = None,
        producer: AIOKafkaProducer | None = None,
        on_delivery: DeliveryHook | None = None,
        on_quarantine: QuarantineHook | None = None,
        after_sink_write: BatchHook | None = None,
        clock: Clock = _utc_now,
        on_recall: RecallHook | None = None,
    ) -> None:
        self.settings = settings
        self.agency = settings.agency
        self.metrics = metrics or ConsumerMetrics()
        self._given_sinks = list(sinks) if sinks is not None else None
        self.sinks: list[Sink] = []
        self.store: SqliteSink | None = None
        self._directory = directory
        self._key = key
        self._boxes = BoxCache()  # the shared keys with each originator, computed once
        self._producer = producer
        self._own_producer = producer is None
        self._consumer: AIOKafkaConsumer | None = None
        self._on_delivery = on_delivery
        self._on_quarantine = on_quarantine
        self._on_recall = on_recall
        self._after_sink_write = after_sink_write
        self._drill = KillDrill(
            settings.fault_kill_at, after=settings.fault_kill_after, seed=settings.fault_seed
        )
        self._sink_failures: dict[str, str] = {}  # sink name -> last error, while retrying
        self._clock = clock
        self._log = log.bind(agency=self.agency)
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._started = False
        self._failure: str | None = None
        self._committed: dict[TopicPartition, int] = {}
        self._next: dict[TopicPartition, int] = {}
        self._receipts: ReceiptSender | None = None
        self.topic = ""
        self.delivered = 0
        self.duplicates = 0
        self.quarantined = 0
        self.recalled = 0  # recalls that withdrew a held bulletin or wait for it
        self.gaps: list[FeedGap] = []  # reported by this instance (the store keeps them all)

    @property
    def receipts_sent(self) -> int:
        return self._receipts.sent if self._receipts is not None else 0

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> FeedConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _agency_names(self) -> dict[str, str]:
        registry = Registry.load(self.settings.agencies_file)
        registry.get(self.agency)  # RegistryError for an agency outside the exchange
        return {a.id: a.name for a in registry}

    def _build_sinks(self, names: Mapping[str, str]) -> list[Sink]:
        if self._given_sinks is not None:
            sinks = list(self._given_sinks)
        else:
            on_error = self.metrics.sink_errors.labels(self.agency, "webhook").inc
            sinks = [
                build_sink(
                    spec,
                    agency_names=names,
                    webhook_buffer=self.settings.webhook_buffer,
                    webhook_timeout_s=self.settings.webhook_timeout_s,
                    webhook_max_backoff_s=self.settings.webhook_max_backoff_s,
                    on_webhook_error=on_error,
                )
                for spec in parse_sink_uris(self.settings.sink_uris())
            ]
        stores = [s for s in sinks if isinstance(s, SqliteSink)]
        if stores:
            self.store = stores[0]
        else:
            # Receipt state and dedupe live in SQLite: keep an embedded store even when the
            # operator asked only for other sinks.
            self.store = SqliteSink(str(self.settings.default_store()), agency_names=names)
            sinks.append(self.store)
        return sinks

    async def start(self) -> None:
        """Check the configuration (own feed, agency, keys), open the sinks and Kafka clients."""
        if self._started:
            return
        self.topic = self.settings.feed_topic_name()  # refuses a foreign feed first
        names = self._agency_names()
        if self._directory is None:
            self._directory = KeyDirectory.load(self.settings.keys_file)
        if self._key is None:
            try:
                self._key = load_agency_key(
                    self.agency, self.settings.key_file, self.settings.key_dir
                )
            except ConfigError:
                if self.settings.receipts:
                    raise
                # Plain (v1) releases verify with public keys alone; sealed ones are kept in
                # quarantine (no_private_key) until the key is given.
                log.warning("consumer_without_private_key", agency=self.agency)
        if self._key is not None and self._key.agency != self.agency:
            raise ConfigError(f"key {self._key.key_id!r} is not a key of {self.agency!r}")
        clients.check_c_extensions()
        self.sinks = self._build_sinks(names)
        started: list[Sink] = []
        try:
            for sink in self.sinks:
                await sink.start()
                started.append(sink)
            await self._start_kafka()
        except BaseException:
            for sink in reversed(started):
                with contextlib.suppress(Exception):
                    await sink.stop()
            await self._stop_kafka()
            raise
        store, producer, key = self.store, self._producer, self._key
        if (
            self.settings.receipts
            and store is not None
            and producer is not None
            and key is not None
        ):
            self._receipts = ReceiptSender(
                agency=self.agency,
                store=store,
                producer=producer,
                key=key,
                topic=self.settings.receipts_topic(),
                timeout_s=self.settings.send_timeout_s,
                clock=self._clock,
                on_sent=self.metrics.receipts.labels(self.agency).inc,
                after_ack=lambda n: self._drill.reached(KillPoint.AFTER_RECEIPT, receipts=n),
            )
        self._started = True
        self._stop.clear()
        # Receipts a crashed run left pending go out on the first loop iteration.
        self._log.info("consumer_started", topic=self.topic, sinks=[s.kind for s in self.sinks])

    async def _start_kafka(self) -> None:
        try:
            if self.settings.receipts and self._producer is None:
                self._producer = clients.producer(self.settings)
                await self._producer.start()
            consumer = clients.consumer(
                self.settings,
                group_id=self.settings.consumer_group(),
                session_timeout_ms=self.settings.session_timeout_ms,
                heartbeat_interval_ms=min(3_000, self.settings.session_timeout_ms // 3),
                max_partition_fetch_bytes=max(
                    clients.MAX_REQUEST_BYTES, self.settings.max_record_bytes + 65_536
                ),
                # "earliest" would jump silently over releases retention deleted before we
                # read them: let the fetch fail instead, and record the gap before resuming
                # (see _resume_out_of_range).
                auto_offset_reset="none",
            )
            consumer.subscribe([self.topic], listener=_Rebalance(self))
            self._consumer = consumer
            await consumer.start()
        except KafkaConnectionError as exc:
            raise KafkaUnavailable(f"cannot reach Kafka: {exc}") from exc
        except KafkaError as exc:
            raise BrokerError(f"cannot start the feed consumer: {exc!r}") from exc

    async def _stop_kafka(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(KafkaError):
                await close_consumer(self._consumer)
            self._consumer = None
        if self._producer is not None and self._own_producer:
            with contextlib.suppress(KafkaError):
                await close_producer(self._producer)
            self._producer = None

    def request_stop(self) -> None:
        """Ask ``run()`` to return after the current batch (safe from signal handlers)."""
        self._stop.set()

    async def stop(self) -> None:
        """Finish the current batch, flush deferred sinks, commit what is held, close."""
        self._stop.set()
        await self._idle.wait()
        if not self._started:
            return
        self._started = False
        deferred = [s for s in self.sinks if s.deferred]
        for sink in deferred:
            await sink.stop()
        await self.commit_held()
        for sink in self.sinks:
            if not sink.deferred:
                await sink.stop()
        await self._stop_kafka()
        self._log.info("consumer_stopped", delivered=self.delivered, quarantined=self.quarantined)

    def health(self) -> tuple[bool, dict[str, object]]:
        """For :class:`enlace.core.http.ServiceHttp`."""
        # A sink being retried (disk full, store locked) is unhealthy: the feed is not stored.
        healthy = self._started and self._failure is None and not self._sink_failures
        return healthy, {
            "agency": self.agency,
            "failure": self._failure,
            "sinks_failing": dict(self._sink_failures),
            "topic": self.topic,
            "delivered": self.delivered,
            "quarantined": self.quarantined,
            "receipts_sent": self.receipts_sent,
            "feed_gaps": len(self.gaps),
            "buffered": sum(s.buffered() for s in self.sinks),
        }

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until :meth:`stop` or :meth:`request_stop`."""
        if not self._started or self._consumer is None:
            raise NotStarted("FeedConsumer.run() before start()")
        consumer = self._consumer
        self._idle.clear()
        try:
            while not self._stop.is_set():
                try:
                    batch = await consumer.getmany(
                        timeout_ms=self.settings.poll_timeout_ms,
                        max_records=self.settings.batch_max_records,
                    )
                except (OffsetOutOfRangeError, NoOffsetForPartitionError) as exc:
                    await self._resume_out_of_range(exc)
                    continue
                except KafkaError as exc:
                    self._log.warning("poll_failed", error=repr(exc))
                    continue
                if batch:
                    await self._handle(batch)
                else:
                    await self.commit_held()  # deferred sinks may have caught up
                if self._receipts is not None:
                    await self._receipts.flush()
                self._update_lag()
        except Exception as exc:
            self._failure = repr(exc)
            raise
        finally:
            self._idle.set()

    async def _handle(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
        assert self._directory is not None
        now = self._clock()
        items: list[Item] = []
        for tp, records in batch.items():
            for rec in records:
                record = FeedRecord.from_kafka(rec)
                items.append(
                    open_feed_record(
                        record,
                        self._directory,
                        now=now,
                        max_bytes=self.settings.max_record_bytes,
                        own=self._key,
                        boxes=self._boxes,
                    )
                )
                self._next[tp] = record.offset + 1
        if any(isinstance(item, Recalled) for item in items):
            screened = await self._screen(items)
            if screened is None:
                return  # stopping: nothing written or committed, the batch comes back
            items = screened
        results = await self._write_all(items)
        if results is None:
            return  # stopping mid-retry: nothing committed, the batch comes back next time
        self._drill.reached(KillPoint.AFTER_SINK_WRITE, records=len(items))
        if self._after_sink_write is not None:
            await self._after_sink_write(items)
        await self.commit_held()
        assert self.store is not None
        self._observe(items, results[self.sinks.index(self.store)])

    async def _screen(self, items: list[Item]) -> list[Item] | None:
        """Recalls not signed by their bulletin's originator become quarantine items (the
        store knows the originator; every sink then quarantines them alike). None when
        asked to stop while the store fails."""
        assert self.store is not None
        attempt = 0
        while not self._stop.is_set():
            try:
                origins = await self.store.origins_of(recalled_ids(items))
            except SinkError as exc:
                attempt += 1
                delay = min(self.settings.sink_retry_max_s, 0.1 * 2**attempt)
                self._log.warning("recall_screen_failed", error=str(exc), retry_in_s=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                continue
            return screen_recalls(items, origins)
        return None

    async def _write_all(self, items: Sequence[Item]) -> list[WriteResult] | None:
        pending = len(self.sinks)

        async def one(sink: Sink) -> WriteResult | None:
            nonlocal pending
            attempt = 0
            while True:
                try:
                    result = await sink.put(items)
                except SinkError as exc:
                    attempt += 1
                    self._sink_failures[sink.name] = str(exc)
                    self.metrics.sink_errors.labels(self.agency, sink.kind).inc()
                    delay = min(self.settings.sink_retry_max_s, 0.1 * 2**attempt)
                    self._log.warning(
                        "sink_failed", sink=sink.kind, error=str(exc), retry_in_s=delay
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                    if self._stop.is_set():
                        return None
                    continue
                self._sink_failures.pop(sink.name, None)
                pending -= 1
                if pending:  # this sink holds the batch, another is still writing it
                    self._drill.reached(KillPoint.MID_BATCH, sink=sink.kind, records=len(items))
                return result

        results = await asyncio.gather(*(one(sink) for sink in self.sinks))
        if any(r is None for r in results):
            return None
        return [r for r in results if r is not None]

    def _observe(self, items: Sequence[Item], stored: WriteResult) -> None:
        now = self._clock()
        if stored.links:
            self.metrics.supersede_links.labels(self.agency).inc(stored.links)
        for index, item in enumerate(items):
            if isinstance(item, Recalled):
                self._observe_recall(item, stored.recalls.get(index, RecallOutcome.DUPLICATE))
                continue
            if isinstance(item, Quarantined):
                self.quarantined += 1
                self.metrics.quarantined.labels(self.agency, item.reason).inc()
                if item.release == hdr.RELEASE_RECALL:
                    self.metrics.recalls.labels(self.agency, "quarantined").inc()
                self._log.warning(
                    "quarantined",
                    reason=item.reason,
                    bulletin_id=item.bulletin_id,
                    claimed_origin=item.origin,
                    partition=item.record.partition,
                    offset=item.record.offset,
                )
                if self._on_quarantine is not None:
                    self._on_quarantine(item)
                continue
            outcome = stored.outcomes.get(index, StoreOutcome.DUPLICATE)
            self._observe_delivery(item, outcome, now)

    def _observe_recall(self, item: Recalled, outcome: RecallOutcome) -> None:
        if outcome is not RecallOutcome.DUPLICATE:
            self.recalled += 1
        self.metrics.recalls.labels(self.agency, outcome.value).inc()
        # Never the reason: it is the originator's text, as confidential as the bulletin.
        self._log.info(
            "recalled",
            bulletin_id=item.bulletin_id,
            recall_id=item.recall.recall_id,
            origin=item.origin,
            outcome=outcome.value,
        )
        if self._on_recall is not None:
            self._on_recall(item, outcome)

    def _observe_delivery(self, item: Delivered, outcome: StoreOutcome, now: datetime) -> None:
        latency = max(0.0, (now - item.bulletin.issued_at).total_seconds())
        if outcome is StoreOutcome.DUPLICATE:
            self.duplicates += 1
            self.metrics.duplicates.labels(self.agency).inc()
        else:
            self.delivered += 1
            self.metrics.delivered.labels(self.agency, item.origin, item.release.value).inc()
            self.metrics.issue_latency.labels(self.agency).observe(latency)
            published = hdr.published_ms(item.record.headers)
            if published is not None:
                since = max(0.0, now.timestamp() - published / 1000)
                self.metrics.latency.labels(self.agency).observe(since)
        self._log.info(
            "delivered",
            bulletin_id=item.bulletin_id,
            origin=item.origin,
            release=item.release.value,
            outcome=outcome.value,
        )
        if self._on_delivery is not None:
            rec = item.record
            self._on_delivery(
                Delivery(
                    agency=self.agency,
                    bulletin=item.bulletin,
                    release=item.release,
                    key_id=item.key_id,
                    outcome=outcome,
                    latency_s=latency,
                    topic=rec.topic,
                    partition=rec.partition,
                    offset=rec.offset,
                )
            )

    # -- offsets ------------------------------------------------------------------------

    async def commit_held(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commit, per partition, the lowest position every sink holds (if it moved)."""
        consumer = self._consumer
        if consumer is None:
            return
        wanted = partitions if partitions is not None else consumer.assignment()
        offsets: dict[TopicPartition, int] = {}
        for tp in wanted:
            held = [sink.held(tp.topic, tp.partition) for sink in self.sinks]
            if not held or any(h is None for h in held):
                continue
            position = min(h for h in held if h is not None)
            if position > self._committed.get(tp, -1):
                offsets[tp] = position
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # A rebalance took the partition: the new owner re-reads from the last commit and
            # the store turns the repeats into no-ops.
            self._log.warning("commit_failed", error=repr(exc))
            return
        self._committed.update(offsets)

    async def _resume_out_of_range(
        self, exc: OffsetOutOfRangeError | NoOffsetForPartitionError
    ) -> None:
        """Kafka refused the offset a partition wanted: retention deleted it (an offline
        partner, a lagging one), or the group never committed there (a first read). Record
        the gap in the store first, then seek to the log start: a crash in between re-detects
        the same gap, which the store keeps once. Anything failing here leaves the position
        unset, so the fetch fails again and this runs again: never a silent skip."""
        consumer, store = self._consumer, self.store
        if consumer is None or store is None:
            return
        arg = exc.args[0] if exc.args else None
        wanted: dict[TopicPartition, int | None]
        if isinstance(exc, OffsetOutOfRangeError):
            wanted = dict(arg) if isinstance(arg, Mapping) else {}
        else:
            wanted = {arg: None} if isinstance(arg, TopicPartition) else {}
        assigned = consumer.assignment()
        wanted = {tp: w for tp, w in wanted.items() if tp in assigned}
        if not wanted:
            return  # revoked meanwhile: the new owner meets the same refusal
        try:
            starts: dict[TopicPartition, int] = await consumer.beginning_offsets(list(wanted))
        except KafkaError as error:
            self._log.warning("log_start_unknown", error=repr(error))
            return
        now = self._clock()
        resumes = {
            tp: resume_after_out_of_range(
                tp.topic, tp.partition, wanted=w, log_start=starts[tp], now=now
            )
            for tp, w in wanted.items()
            if tp in starts
        }
        found = [r.gap for r in resumes.values() if r.gap is not None]
        if found:
            try:
                new = await store.record_gaps(found)
            except SinkError as error:
                self._log.warning("feed_gap_not_recorded", error=str(error))
                return
            self._report_gaps(new, seen=found)
        for tp, resume in resumes.items():
            if resume.gap is None and wanted[tp] is not None:
                # Refused though not expired (the log was truncated): re-read what is there.
                self._log.warning(
                    "feed_offset_reset",
                    topic=tp.topic,
                    partition=tp.partition,
                    wanted=wanted[tp],
                    log_start=resume.position,
                )
            with contextlib.suppress(IllegalStateError):  # revoked since: not ours to move
                consumer.seek(tp, resume.position)

    def _report_gaps(self, new: Sequence[FeedGap], *, seen: Sequence[FeedGap]) -> None:
        for gap in new:
            self.gaps.append(gap)
            self.metrics.feed_gaps.labels(self.agency).inc()
            self.metrics.feed_gap_offsets.labels(self.agency).inc(gap.missed)
            # Offsets only: what expired is unknown, and bulletin content is never logged.
            self._log.warning(
                "feed_gap",
                topic=gap.topic,
                partition=gap.partition,
                from_offset=gap.from_offset,
                to_offset=gap.to_offset,
                missed=gap.missed,
            )
        if not new:
            for gap in seen:
                self._log.info(
                    "feed_gap_known",
                    topic=gap.topic,
                    partition=gap.partition,
                    from_offset=gap.from_offset,
                    to_offset=gap.to_offset,
                )

    def forget_commits(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._committed.pop(tp, None)
            self._next.pop(tp, None)

    def _update_lag(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        lag = 0
        for tp in consumer.assignment():
            end = consumer.last_stable_offset(tp)
            if end is None:
                end = consumer.highwater(tp)
            position = self._next.get(tp, self._committed.get(tp))
            if end is not None and position is not None:
                lag += max(0, end - position)
        self.metrics.lag.labels(self.agency).set(lag)
        for sink in self.sinks:
            if sink.deferred:
                self.metrics.sink_buffered.labels(self.agency, sink.kind).set(sink.buffered())


__all__ = [
    "BatchHook",
    "Delivery",
    "DeliveryHook",
    "FeedConsumer",
    "QuarantineHook",
    "RecallHook",
]
