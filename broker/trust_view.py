"""The router's live trust state: every receipts topic and the audit topic, read as a global
table by every router instance, folded into a :class:`TrustLedger`.

Nothing here is committed anywhere: on restart the state is rebuilt from Kafka alone by
reading both sources from the beginning. Evidence rules that keep partners honest:

* receipts and feedback count only for a bulletin the router actually released to the
  reporter, once per (bulletin, partner, kind); a receipt read before its release's audit
  record waits (bounded) for it;
* a release with no receipt by the policy's deadline counts as a missing receipt;
* every trust event must be signed by its reporter, the agency of its receipts topic.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError as AIOKafkaError

from broker.evidence import EvidenceClass, classify_receipt, evidence_from_event
from broker.ledger import TrustLedger
from broker.outputs import release_summary
from broker.policy import Policy
from broker.trust import TrustScore
from enlace import clients
from enlace.errors import CodecError, KafkaError, SignatureError, ValidationError
from enlace.logs import get_logger
from enlace.settings import KafkaSettings
from enlace.topics import AUDIT, agency_of, partitions_of
from schemas.codec import decode_audit
from schemas.envelope import open_event
from schemas.key_directory import KeyDirectory
from schemas.models import TrustEvent
from schemas.vocab import ReleaseKind, TrustEventKind

log = get_logger(__name__)

ORPHAN_WAIT = timedelta(minutes=5)
RELEASE_MEMORY = timedelta(days=30)
RELEASED = frozenset({ReleaseKind.FULL.value, ReleaseKind.TEARLINE.value})

ReleaseKey = tuple[str, str, str]  # originator, partner, bulletin id


@dataclass(frozen=True, slots=True)
class RejectedEvent:
    record: ConsumerRecord[Any, Any]
    reason: str
    message: str
    # Read while rebuilding history at start-up: it was already dead-lettered when it arrived.
    replayed: bool = False


class TrustState:
    """Pure-ish fold of audit releases and trust events into a ledger (no I/O)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.ledger = TrustLedger.for_policy(policy)
        self._deadline = timedelta(minutes=policy.evidence.receipt_deadline_minutes)
        self._released: dict[ReleaseKey, datetime] = {}
        # Releases in arrival order (about time order), to forget them without a full scan.
        self._release_order: deque[tuple[datetime, ReleaseKey]] = deque()
        # Receipt deadlines as a heap: a sweep costs what expires, not what is remembered.
        self._deadlines: list[tuple[datetime, ReleaseKey]] = []
        self._awaiting_receipt: set[ReleaseKey] = set()
        # Releases already counted as a missing receipt: a receipt after that adds nothing more.
        self._missed: set[ReleaseKey] = set()
        self._counted: dict[ReleaseKey, set[TrustEventKind]] = {}
        self._orphans: dict[ReleaseKey, list[TrustEvent]] = {}
        self.events_applied = 0

    def release(self, originator: str, partner: str, bulletin_id: str, at: datetime) -> None:
        key = (originator, partner, bulletin_id)
        if key in self._released:
            return
        self._released[key] = at
        self._release_order.append((at, key))
        self._awaiting_receipt.add(key)
        heapq.heappush(self._deadlines, (at + self._deadline, key))
        self.ledger.record_release(originator, partner, at)
        for event in self._orphans.pop(key, ()):
            self.event(event)

    def event(self, event: TrustEvent) -> TrustEventKind | None:
        """Fold one verified event; returns its kind if it counted as evidence."""
        kind = event.kind
        receipt_class = EvidenceClass.RECEIPT_ON_TIME
        if kind is TrustEventKind.RECEIPT or kind.value.startswith("FEEDBACK_"):
            if event.bulletin_id is None:
                return None
            key = (event.subject, event.reporter, event.bulletin_id)
            if key not in self._released:
                self._orphans.setdefault(key, []).append(event)
                return None
            counted = self._counted.setdefault(key, set())
            if kind in counted:
                return None
            counted.add(kind)
            if kind is TrustEventKind.RECEIPT:
                self._awaiting_receipt.discard(key)
                if key in self._missed:
                    return None
                receipt_class = classify_receipt(
                    self._released[key], event.occurred_at, self.policy
                )
        evidence = evidence_from_event(
            kind,
            event.reporter,
            event.subject,
            event.occurred_at,
            bulletin_id=event.bulletin_id,
            receipt_class=receipt_class,
        )
        if evidence is None:
            return None
        self.ledger.add(evidence)
        self.events_applied += 1
        return kind

    def sweep(self, now: datetime) -> int:
        """Missing receipts past the deadline; forget old releases and stale orphans."""
        missing = 0
        while self._deadlines and self._deadlines[0][0] <= now:
            due, key = heapq.heappop(self._deadlines)
            if key not in self._awaiting_receipt:
                continue
            self._awaiting_receipt.discard(key)
            self._missed.add(key)
            originator, partner, bulletin_id = key
            self.ledger.record_missing_receipt(originator, partner, due, bulletin_id)
            missing += 1
        horizon = now - RELEASE_MEMORY
        while self._release_order and self._release_order[0][0] < horizon:
            _, key = self._release_order.popleft()
            self._released.pop(key, None)
            self._missed.discard(key)
            self._counted.pop(key, None)
        if self._orphans:
            orphan_horizon = now - ORPHAN_WAIT
            stale = [k for k, evs in self._orphans.items() if evs[-1].occurred_at < orphan_horizon]
            for key in stale:
                del self._orphans[key]
        return missing

    def score(self, originator: str, partner: str, policy: Policy, now: datetime) -> TrustScore:
        return self.ledger.score(originator, partner, policy, now)


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
        on_event: Callable[[TrustEventKind], None] = lambda _k: None,
        audit_horizon: timedelta | None = None,
    ) -> None:
        self._settings = settings
        self.state = state
        self._keys = keys
        self._receipt_topics = list(receipt_topics)
        self._audit_topic = audit_topic
        self._on_reject = on_reject
        self._on_event = on_event
        self._audit_horizon = audit_horizon
        self._consumer: AIOKafkaConsumer | None = None
        self._live_from: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        layout = await partitions_of(self._settings, [self._audit_topic, *self._receipt_topics])
        partitions = [TopicPartition(t, p) for t, ids in layout.items() for p in ids]
        consumer = clients.consumer(self._settings, group_id=None)
        try:
            await consumer.start()
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            await self._skip_old_audit(consumer, partitions)
            # Records below these offsets are history, rebuilt at every start.
            self._live_from = dict(await consumer.end_offsets(partitions))
        except AIOKafkaError as exc:
            await consumer.stop()
            raise KafkaError(f"trust feed could not start: {exc!r}") from exc
        self._consumer = consumer

    async def _skip_old_audit(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> None:
        """Start the audit topic at the horizon: it is kept forever, and releases older than a
        few reciprocity half-lives no longer weigh (receipts are read from the start)."""
        if self._audit_horizon is None:
            return
        audit = [tp for tp in partitions if tp.topic == self._audit_topic]
        since_ms = int((datetime.now(UTC) - self._audit_horizon).timestamp() * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(audit, since_ms))
        ends = await consumer.end_offsets(audit)
        for tp in audit:
            at = found.get(tp)
            consumer.seek(tp, at.offset if at is not None else ends[tp])

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def catch_up(self) -> None:
        """Read both sources to their current end (callers bound it with a timeout)."""
        assert self._consumer is not None, "start() first"
        consumer = self._consumer
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while True:
            behind = [tp for tp, end in ends.items() if await consumer.position(tp) < end]
            if not behind:
                return
            await self.poll(timeout_ms=200)

    async def poll(self, timeout_ms: int = 500) -> int:
        assert self._consumer is not None, "start() first"
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
        # Audit first: a receipt in the same batch then finds the release it acknowledges.
        ordered = sorted(batch.items(), key=lambda item: item[0].topic != self._audit_topic)
        count = 0
        for tp, records in ordered:
            for record in records:
                self._apply(tp.topic, record)
                count += 1
        return count

    def _apply(self, topic: str, record: ConsumerRecord[Any, Any]) -> None:
        if topic == self._audit_topic:
            self._apply_audit(record)
            return
        at = datetime.fromtimestamp(record.timestamp / 1000, tz=UTC)
        replayed = record.offset < self._live_from.get(TopicPartition(topic, record.partition), 0)
        try:
            event, signed = open_event(self._keys, record.value or b"", record.headers, at=at)
        except (CodecError, SignatureError) as exc:
            self._on_reject(RejectedEvent(record, exc.reason, str(exc), replayed))
            return
        except ValidationError as exc:
            self._on_reject(RejectedEvent(record, "invalid", str(exc), replayed))
            return
        if signed.origin != agency_of(topic):
            self._on_reject(
                RejectedEvent(
                    record, "forged_origin", f"{signed.origin} wrote on {topic}", replayed
                )
            )
            return
        kind = self.state.event(event)
        if kind is not None:
            self._on_event(kind)

    def _apply_audit(self, record: ConsumerRecord[Any, Any]) -> None:
        summary = release_summary(record.headers)
        if summary is not None:
            # The router's own summary header: no Avro decode for the 10 records a bulletin
            # makes (this is most of the trust feed's work, and of a router's start-up).
            if summary.decision in RELEASED:
                self.state.release(summary.origin, summary.partner, summary.bulletin_id, summary.at)
            return
        try:
            audit = decode_audit(record.value or b"")
        except (CodecError, ValidationError) as exc:
            log.warning("audit_undecodable", offset=record.offset, error=str(exc))
            return
        if audit.decision in RELEASED:
            self.state.release(audit.origin, audit.partner, audit.bulletin_id, audit.decided_at)
