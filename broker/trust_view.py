"""The router's trust feed: every receipts topic and the audit topic, read as a global table by
every router instance and folded into a :class:`broker.trust_state.TrustState`.

Nothing here is committed anywhere: on restart the state is rebuilt from Kafka alone, from
the newest trust snapshot (``broker.snapshots``) and the records after the offsets it covers
(:meth:`TrustFeed.start` ``resume``), or, with no usable snapshot, by reading both sources from
the beginning (the audit topic from a horizon). The feed knows, record by record, the offsets it
has folded (:meth:`TrustFeed.positions`) and how far in time every receipt has been read
(:meth:`TrustFeed.watermark`), which is what the state may be swept to. No single record can
stop it: every step of folding a record (timestamp, headers, signature, decode, fold) runs
inside error handling that rejects or counts the record and goes on.

An event is dated by its observation (:func:`observed_at`): the record's timestamp, which the
broker sets on receipts topics (``LogAppendTime``, how ``enlace topics create`` makes them),
never after the router's clock. A topic still on writer-set timestamps (``CreateTime``) is
reported at start: the same rule then applies to the writer's timestamp, so that a record is
judged the same live and when history is re-read (a rejection is not recorded anywhere but
the dead letters, so a live-only rule would count a refused event after the next restart).

While live, folding yields to routing: records are folded in small chunks and the feed sleeps
between chunks in proportion to the CPU it used, so a flood of receipts from one partner costs
other agencies' bulletins a bounded share of the event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from broker.admission import INTERNAL_ERROR
from broker.outputs import release_summaries
from broker.trust_state import Folded, Outcome, TrustState
from enlace.core import clients
from enlace.core.clock import Clock, utc_now
from enlace.core.closing import close_consumer
from enlace.core.errors import BrokerError, CodecError, SignatureError, ValidationError, started
from enlace.core.logs import get_logger
from enlace.core.settings import KafkaSettings
from enlace.core.topics import AUDIT, agency_of, partitions_of, writer_timestamped
from schemas.codec import decode_audit
from schemas.envelope import open_event
from schemas.key_directory import KeyDirectory
from schemas.vocab import ReleaseKind

log = get_logger(__name__)

TRUST_FETCH_MIN_BYTES = 65_536
TRUST_FETCH_MAX_WAIT_MS = 1_000
RELEASED = frozenset({ReleaseKind.FULL.value, ReleaseKind.TEARLINE.value})
CHUNK = 25  # records folded between two yields to the event loop (about 15 ms of CPU)
FETCH_MAX = 1_000
# How far behind the router's clock a caught-up partition's next record may still be dated
# (the broker stamps receipts; its clock and the router's differ by a little).
WATERMARK_GRACE = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class RejectedEvent:
    record: ConsumerRecord[Any, Any]
    reason: str
    message: str
    # Read while rebuilding history at start-up: it was already dead-lettered when it arrived.
    replayed: bool = False


def observed_at(timestamp_ms: int, now: datetime) -> datetime:
    """When the router holds a trust record to have happened (never after ``now``)."""
    try:
        at = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return now  # a timestamp no calendar holds: only the router's own clock is left
    return min(at, now)


class _Merge:
    """Per-partition buffers of fetched history, released in record-time order."""

    BUFFER = 1_000  # records buffered per partition before it waits for the others

    def __init__(self, audit_topic: str) -> None:
        self._audit_topic = audit_topic
        self._buffers: dict[TopicPartition, deque[ConsumerRecord[Any, Any]]] = {}
        self._last_ms: dict[TopicPartition, int] = {}  # the last fetched record's timestamp

    def add(self, batch: Mapping[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        for tp, records in batch.items():
            if records:
                self._buffers.setdefault(tp, deque()).extend(records)
                self._last_ms[tp] = records[-1].timestamp

    def empty(self) -> bool:
        return not any(self._buffers.values())

    def full(self, unfetched: set[TopicPartition]) -> set[TopicPartition]:
        return {tp for tp in unfetched if len(self._buffers.get(tp, ())) >= self.BUFFER}

    def ready(
        self, unfetched: set[TopicPartition]
    ) -> Iterator[tuple[str, ConsumerRecord[Any, Any]]]:
        """Buffered records in time order (releases first at equal times), up to the earliest
        record a partition still to be fetched, with nothing buffered, may hold."""
        bounds = [self._floor(tp) for tp in unfetched if not self._buffers.get(tp)]
        bound = min(bounds, default=None)
        heads = [
            (buffer[0].timestamp, tp.topic != self._audit_topic, tp.topic, tp.partition)
            for tp, buffer in self._buffers.items()
            if buffer
        ]
        heapq.heapify(heads)
        while heads:
            at, receipt, topic, partition = heads[0]
            if bound is not None and (at, receipt) > bound:
                return
            tp = TopicPartition(topic, partition)
            buffer = self._buffers[tp]
            yield topic, buffer.popleft()
            if buffer:
                heapq.heapreplace(heads, (buffer[0].timestamp, receipt, topic, partition))
            else:
                heapq.heappop(heads)
                if tp in unfetched:
                    # Its next record may come before any other head: fetch it first.
                    floor = self._floor(tp)
                    bound = floor if bound is None else min(bound, floor)

    def _floor(self, tp: TopicPartition) -> tuple[int, bool]:
        """The least (time, kind) the next record of ``tp`` can have (in time order)."""
        return self._last_ms.get(tp, -1), tp.topic != self._audit_topic


@dataclass(slots=True)
class _Progress:
    report: Callable[[int, int], None]
    total: int
    read: int = 0

    def add(self, records: int) -> None:
        self.read += records
        self.report(self.read, self.total)


class TrustFeed:
    """Reads the receipts topics and the audit topic into a :class:`TrustState`."""

    def __init__(
        self,
        settings: KafkaSettings,
        state: TrustState,
        keys: KeyDirectory,
        *,
        receipt_topics: Iterable[str],
        audit_topic: str = AUDIT,
        on_reject: Callable[[RejectedEvent], None] = lambda _r: None,
        on_folded: Callable[[Folded], None] = lambda _f: None,
        on_skipped: Callable[[str], None] = lambda _r: None,
        audit_horizon: timedelta | None = None,
        clock: Clock = utc_now,
        live_share: float = 0.5,
    ) -> None:
        self._settings = settings
        self.state = state
        self._keys = keys
        self._receipt_topics = list(receipt_topics)
        self._audit_topic = audit_topic
        self._on_reject = on_reject
        self._on_folded = on_folded
        self._on_skipped = on_skipped
        self._audit_horizon = audit_horizon
        self._clock = clock
        # The most of the loop's time live folding may take (0 < share <= 1).
        self._live_share = live_share
        self._consumer: AIOKafkaConsumer | None = None
        self._live_from: dict[TopicPartition, int] = {}
        # Per partition: the next offset to fold, and the time of the last record folded.
        self._next: dict[TopicPartition, int] = {}
        self._last_at: dict[TopicPartition, datetime] = {}
        self.records_folded = 0

    async def start(self, resume: Mapping[tuple[str, int], int] | None = None) -> None:
        """Assign every source partition and seek: to ``resume``'s offset where it names one
        (a snapshot's), else to the beginning (the audit topic: to its horizon)."""
        layout = await partitions_of(self._settings, [self._audit_topic, *self._receipt_topics])
        partitions = [TopicPartition(t, p) for t, ids in layout.items() for p in ids]
        consumer = clients.consumer(
            self._settings,
            group_id=None,
            # Trust may lag a second; the broker should not answer this fetch of every
            # receipts and audit partition at each transaction marker (one per routed
            # batch): it waits for 64 KiB or a second. History is there at once.
            fetch_min_bytes=TRUST_FETCH_MIN_BYTES,
            fetch_max_wait_ms=TRUST_FETCH_MAX_WAIT_MS,
        )
        try:
            await consumer.start()
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            covered = resume or {}
            await self._skip_old_audit(
                consumer, [tp for tp in partitions if (tp.topic, tp.partition) not in covered]
            )
            if resume is not None:
                await self._resume(consumer, partitions, resume)
            # Records below these offsets are history, rebuilt at every start.
            self._live_from = dict(await consumer.end_offsets(partitions))
            self._next = {tp: await consumer.position(tp) for tp in partitions}
        except KafkaError as exc:
            await close_consumer(consumer)
            raise BrokerError(f"trust feed could not start: {exc!r}") from exc
        self._consumer = consumer
        stale = await writer_timestamped(self._settings, self._receipt_topics)
        if stale:
            log.warning(
                "receipts_topics_writer_timestamped",
                topics=len(stale),
                first=stale[0],
                fix="run `enlace topics create`: the broker must date trust events",
            )

    async def _skip_old_audit(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> None:
        """Start the audit topic at the horizon: it is kept forever, and releases older than a
        few reciprocity half-lives no longer weigh (receipts are read from the start)."""
        if self._audit_horizon is None:
            return
        audit = [tp for tp in partitions if tp.topic == self._audit_topic]
        since_ms = int((self._clock() - self._audit_horizon).timestamp() * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(audit, since_ms))
        ends = await consumer.end_offsets(audit)
        for tp in audit:
            at = found.get(tp)
            consumer.seek(tp, at.offset if at is not None else ends[tp])

    async def _resume(
        self,
        consumer: AIOKafkaConsumer,
        partitions: list[TopicPartition],
        resume: Mapping[tuple[str, int], int],
    ) -> None:
        begins = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            offset = resume.get((tp.topic, tp.partition))
            if offset is None:
                continue
            if not begins[tp] <= offset <= ends[tp]:
                # Retention or a recreated topic: the snapshot cannot say what was between.
                raise BrokerError(
                    f"snapshot offset {offset} of {tp.topic}/{tp.partition} is outside "
                    f"[{begins[tp]}, {ends[tp]}]"
                )
            consumer.seek(tp, offset)

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset to fold per source partition (what a snapshot covers)."""
        return {(tp.topic, tp.partition): offset for tp, offset in self._next.items()}

    def watermark(self, now: datetime) -> datetime | None:
        """A time before which every receipt and release has been folded: the oldest last
        record of a partition still behind, or (all caught up) ``now`` less a grace. None
        until every partition has been fetched once."""
        consumer = started(self._consumer, "trust feed")
        low = now - WATERMARK_GRACE
        for tp, offset in self._next.items():
            stable = consumer.last_stable_offset(tp)
            if stable is None:
                return None
            if offset >= stable:
                continue
            at = self._last_at.get(tp)
            if at is None:
                return None
            low = min(low, at)
        return low

    def sweep(self, now: datetime) -> None:
        """Sweep the state up to the watermark (not the clock: an unread receipt is not
        missing)."""
        mark = self.watermark(now)
        if mark is not None:
            self.state.sweep(mark)

    async def stop(self) -> None:
        if self._consumer is not None:
            await close_consumer(self._consumer)
            self._consumer = None

    async def catch_up(self, on_progress: Callable[[int, int], None] = lambda _d, _t: None) -> None:
        """Read both sources to their current end (callers bound it with a timeout);
        ``on_progress(read, total)`` after every fetch, in records of this catch-up.

        History is folded in time order across all partitions (a merge of per-partition
        buffers by record timestamp, releases before events at the same millisecond): as it
        happened live, so a receipt finds its release, and every bound and sweep meets the
        records as it did live, whatever the fetches' interleaving. A record is folded once
        no partition still to be fetched can hold an earlier one (each partition is in time
        order); partitions with enough buffered wait, so the others are fetched.
        """
        consumer = started(self._consumer, "trust feed")
        ends = await consumer.end_offsets(list(consumer.assignment()))
        starts = {tp: await consumer.position(tp) for tp in ends}
        progress = _Progress(on_progress, sum(max(0, e - starts[tp]) for tp, e in ends.items()))
        merge = _Merge(self._audit_topic)
        paused: set[TopicPartition] = set()
        try:
            while True:
                unfetched = {tp for tp in ends if await consumer.position(tp) < ends[tp]}
                if not unfetched and merge.empty():
                    return
                wanted = merge.full(unfetched)
                if wanted != paused:
                    consumer.resume(*(paused - wanted))
                    consumer.pause(*(wanted - paused))
                    paused = wanted
                if unfetched:
                    batch = await consumer.getmany(timeout_ms=200, max_records=FETCH_MAX)
                    merge.add(batch)
                    unfetched = {tp for tp in ends if await consumer.position(tp) < ends[tp]}
                now = self._clock()
                folded = 0
                for topic, record in merge.ready(unfetched):
                    self.apply(topic, record, now)
                    folded += 1
                progress.add(folded)
                self.sweep(now)  # forget as history is read: memory stays within the bounds
                await asyncio.sleep(0)
        finally:
            consumer.resume(*paused)

    async def poll(self, timeout_ms: int = 500, *, throttle: bool = True) -> int:
        """Fetch and fold one batch; with ``throttle``, yield the loop between chunks."""
        consumer = started(self._consumer, "trust feed")
        batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=FETCH_MAX)
        # Audit first: a receipt in the same batch then finds the release it acknowledges.
        ordered = sorted(batch.items(), key=lambda item: item[0].topic != self._audit_topic)
        records = [(tp.topic, r) for tp, rs in ordered for r in rs]
        for start in range(0, len(records), CHUNK):
            began = time.perf_counter()
            now = self._clock()
            for topic, record in records[start : start + CHUNK]:
                self.apply(topic, record, now)
            spent = time.perf_counter() - began
            pause = spent * (1.0 / self._live_share - 1.0) if throttle else 0.0
            await asyncio.sleep(pause)
        return len(records)

    def apply(self, topic: str, record: ConsumerRecord[Any, Any], now: datetime) -> None:
        """Fold one record of any shape; never raises."""
        tp = TopicPartition(topic, record.partition)
        self._next[tp] = record.offset + 1
        self._last_at[tp] = observed_at(record.timestamp, now)
        self.records_folded += 1
        if topic == self._audit_topic:
            try:
                self._apply_audit(record, now)
            except Exception as exc:  # noqa: BLE001 - no audit record may stop the feed
                log.warning("audit_record_skipped", offset=record.offset, error=repr(exc)[:200])
                self._on_skipped("audit_error")
            return
        replayed = record.offset < self._live_from.get(TopicPartition(topic, record.partition), 0)
        try:
            rejected = self._apply_event(topic, record, now, replayed=replayed)
        except Exception as exc:
            # A bug must not stop the trust feed (and with it the router) on one record, nor
            # again at every restart: the record is rejected and the feed goes on.
            log.exception("trust_event_internal_error", topic=topic, offset=record.offset)
            rejected = RejectedEvent(record, INTERNAL_ERROR, repr(exc)[:500], replayed)
        if rejected is not None:
            self._on_reject(rejected)

    def _apply_event(
        self, topic: str, record: ConsumerRecord[Any, Any], now: datetime, *, replayed: bool
    ) -> RejectedEvent | None:
        observed = observed_at(record.timestamp, now)
        try:
            event, signed = open_event(self._keys, record.value or b"", record.headers, at=observed)
        except (CodecError, SignatureError) as exc:
            return RejectedEvent(record, exc.reason, str(exc), replayed)
        except ValidationError as exc:
            return RejectedEvent(record, "invalid", str(exc), replayed)
        if signed.origin != agency_of(topic):
            return RejectedEvent(
                record, "forged_origin", f"{signed.origin} wrote on {topic}", replayed
            )
        folded = self.state.event(event, observed, now)
        if folded.outcome is Outcome.REJECTED:
            return RejectedEvent(record, folded.reason, folded.message, replayed)
        self._on_folded(folded)
        return None

    def _apply_audit(self, record: ConsumerRecord[Any, Any], now: datetime) -> None:
        summaries = release_summaries(record.headers)
        if summaries is not None:
            # The router's own summary header: no Avro decode (this is most of the trust
            # feed's work, and of a router's start-up).
            for summary in summaries:
                if summary.decision in RELEASED:
                    self._released(
                        summary.origin, summary.partner, summary.bulletin_id, summary.at, now
                    )
            return
        try:
            decisions = decode_audit(record.value or b"").per_partner()
        except (CodecError, ValidationError) as exc:
            log.warning("audit_undecodable", offset=record.offset, error=str(exc))
            self._on_skipped("audit_undecodable")
            return
        for audit in decisions:
            if audit.decision in RELEASED:
                self._released(
                    audit.origin, audit.partner, audit.bulletin_id, audit.decided_at, now
                )

    def _released(
        self, origin: str, partner: str, bulletin_id: str, at: datetime, now: datetime
    ) -> None:
        for kind in self.state.release(origin, partner, bulletin_id, at, now):
            self._on_folded(Folded(Outcome.COUNTED, kind=kind))
