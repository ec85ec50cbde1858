"""The router's batch handler: admission, replay protection, release decisions, outputs.

Called by :class:`broker.engine.TransactionalEngine` once per input partition batch; whatever
it returns is committed atomically with the input offsets. It never raises for bad input:
every record ends as releases + audit records, one duplicate audit record, or a dead letter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import Counter

from broker import lifecycle, outputs
from broker.admission import INTERNAL_ERROR, Admitted, Limits, Refused, admit, misplaced
from broker.engine import BatchOutcome, OutRecord
from broker.lifecycle_routing import DueWork, LifecycleRouting, Reader
from broker.metrics import RouterMetrics
from broker.policy import Policy
from broker.release import Partner, ReleaseDecision, ReleaseSubject, ScoreSource, decide
from broker.replay import (
    Replay,
    Route,
    SeenEntry,
    SeenIndex,
    SeenLoader,
    digest_of,
    encode_entry,
    seen_key,
)
from broker.trust import TrustScore
from enlace.core.clock import Clock, utc_now
from enlace.core.logs import get_logger
from enlace.core.registry import Registry
from enlace.core.topics import ROUTER_SEEN, agency_of
from schemas.key_directory import KeyDirectory
from schemas.recall import is_recall
from schemas.vocab import ReleaseKind

log = get_logger(__name__)


class BatchScores:
    """Each pair's score and audit factors computed once per batch (one ``now`` per batch):
    scoring is cheap, but explaining a score costs several times more."""

    def __init__(self, source: ScoreSource) -> None:
        self._source = source
        self._scores: dict[tuple[str, str], TrustScore] = {}
        self._factors: dict[tuple[str, str], tuple[outputs.AuditFactor, ...]] = {}

    def score(self, originator: str, partner: str, policy: Policy, now: datetime) -> TrustScore:
        pair = (originator, partner)
        found = self._scores.get(pair)
        if found is None:
            found = self._scores[pair] = self._source.score(originator, partner, policy, now)
        return found

    def factors(self, score: TrustScore | None) -> tuple[outputs.AuditFactor, ...]:
        if score is None:
            return ()
        pair = (score.originator, score.partner)
        found = self._factors.get(pair)
        if found is None:
            found = self._factors[pair] = outputs.audit_factors(score)
        return found


@dataclass
class BatchState:
    """What the records of one batch share: one clock reading, scores, staged replay ids."""

    now: datetime
    scores: BatchScores
    # The input topic's partition count, when known: a bulletin has one owner partition.
    partitions: int | None = None
    staged: dict[bytes, SeenEntry] = field(default_factory=dict)


@dataclass(frozen=True)
class RoutingContext:
    """Everything a routing decision reads that is not the record itself."""

    registry: Registry
    policy: Policy
    keys: KeyDirectory
    limits: Limits

    def partners(self, origin: str) -> list[Partner]:
        return [Partner(a.id, a.country) for a in self.registry if a.id != origin]


class RouterHandler:
    def __init__(
        self,
        context: RoutingContext,
        trust: ScoreSource,
        seen: SeenIndex,
        seen_loader: SeenLoader | None,
        metrics: RouterMetrics,
        *,
        clock: Clock = utc_now,
        partitions: Callable[[str], int | None] = lambda _topic: None,
        reader: Reader | None = None,
    ) -> None:
        self._partitions = partitions
        # Partition counts as of the last assignment: the owner rule changes only at a
        # rebalance, when every instance has committed and the replay index is caught up.
        self._counts: dict[str, int | None] = {}
        self._ctx = context
        self._trust = trust
        self._seen = seen
        self._seen_loader = seen_loader
        self._metrics = metrics
        self._clock = clock
        # Label children and partner lists, built once: ``labels()`` takes a lock and hashes
        # its values, a dozen times a bulletin.
        self._children: dict[tuple[str, ...], Callable[[], None]] = {}
        self._partners: dict[str, list[Partner]] = {}
        # Recalls, and releases when trust is earned (``reader`` re-reads what was withheld;
        # None: never released again).
        self.lifecycle = LifecycleRouting(
            context,
            trust,
            seen,
            metrics,
            count=self._counter,
            reject=self._reject,
            reader=reader,
            clock=clock,
            partitions=partitions,
        )

    async def prepare(self, assigned: set[TopicPartition]) -> None:
        for topic in {tp.topic for tp in assigned}:
            self._counts[topic] = self._partitions(topic)
        # The seen index is global: catch up on every id committed so far.
        if self._seen_loader is not None:
            read = await self._seen_loader.catch_up()
            self._seen.prune(self._clock())
            log.info("replay_index_ready", read=read, ids=len(self._seen))
        self.lifecycle.forget_scans()

    async def collect_due(self, tp: TopicPartition) -> DueWork | None:
        """Releases when trust is earned that are due on ``tp`` (engine's DueSource)."""
        return await self.lifecycle.collect_due(tp)

    def handle_due(self, tp: TopicPartition, work: object) -> BatchOutcome:
        return self.lifecycle.handle_due(tp, work)

    def handle(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        tallies: list[Callable[[], None]] = []
        agency = agency_of(tp.topic)
        if tp.topic not in self._counts:
            self._counts[tp.topic] = self._partitions(tp.topic)
        batch = BatchState(self._clock(), BatchScores(self._trust), self._counts[tp.topic])
        for record in records:
            source = outputs.Source(tp.topic, tp.partition, record.offset)
            record_tallies: list[Callable[[], None]] = []
            try:
                routed = self._route_one(agency, record, source, batch, record_tallies)
            except Exception as exc:
                # A bug must not stop the partition: this record goes to the dead letters,
                # and nothing half-built for it is kept.
                log.exception("router_internal_error", topic=tp.topic, offset=record.offset)
                record_tallies = []
                routed = [self._reject(record, source, INTERNAL_ERROR, repr(exc)[:500], tallies)]
            outcome.outputs.extend(routed)
            tallies.extend(record_tallies)
        commit, withdraw = self._seen.hold(batch.staged)
        outcome.on_commit.append(commit)
        outcome.on_abandon.append(withdraw)
        outcome.on_commit.extend(tallies)
        return outcome

    def _route_one(
        self,
        agency: str,
        record: ConsumerRecord[Any, Any],
        source: outputs.Source,
        batch: BatchState,
        tallies: list[Callable[[], None]],
    ) -> list[OutRecord]:
        now, staged = batch.now, batch.staged
        metrics = self._metrics
        tallies.append(self._counter("consumed", agency))
        if record.value and is_recall(record.value):
            return self.lifecycle.route_recall(
                agency,
                record,
                source,
                now=now,
                staged=staged,
                partitions=batch.partitions,
                tallies=tallies,
            )
        result = admit(
            agency,
            record.value,
            record.headers,
            keys=self._ctx.keys,
            limits=self._ctx.limits,
            received_at=datetime.fromtimestamp(record.timestamp / 1000, tz=UTC),
            now=now,
        )
        if isinstance(result, Refused):
            return [self._reject(record, source, result.reason, result.message, tallies)]
        bulletin = result.bulletin
        bulletin_id = bulletin.bulletin_id
        wrong = misplaced(
            f"bulletin {bulletin_id}", bulletin_id, source.partition, batch.partitions,
            key_hint="its id",
        )  # fmt: skip
        if wrong is not None:
            return [self._reject(record, source, wrong.reason, wrong.message, tallies)]
        key = seen_key(bulletin.origin, bulletin_id)
        digest = digest_of(result.identity)
        replay = self._seen.classify(key, digest, staged)
        if replay is Replay.DUPLICATE:
            tallies.append(self._counter("duplicates", agency))
            log.info("bulletin_duplicate", bulletin_id=bulletin.bulletin_id, origin=agency)
            return [outputs.duplicate_audit(result, source, now)]
        if replay is Replay.CONFLICT:
            message = f"bulletin id {bulletin.bulletin_id} was already routed with other content"
            return [self._reject(record, source, "id_conflict", message, tallies)]
        released, route = self._release(result, source, now, tallies, batch.scores)
        entry = SeenEntry(digest, int(now.timestamp() * 1000), route)
        routed = [OutRecord(ROUTER_SEEN, encode_entry(entry), key), *released]
        staged[key] = entry
        since_issued = max(0.0, (now - bulletin.issued_at).total_seconds())
        since_published = max(0.0, now.timestamp() - record.timestamp / 1000)
        tallies.append(lambda: metrics.route_latency.observe(since_published))
        tallies.append(lambda: metrics.issue_latency.observe(since_issued))
        tallies.append(self._counter("routed", agency))
        return routed

    def _release(
        self,
        admitted: Admitted,
        source: outputs.Source,
        now: datetime,
        tallies: list[Callable[[], None]],
        scores: BatchScores,
    ) -> tuple[list[OutRecord], Route]:
        """The feed and audit records of a new bulletin, and its route for the replay index."""
        subject = ReleaseSubject.of(admitted.bulletin, sealed_for=admitted.sealed_for)
        out: list[OutRecord] = []
        decisions: list[tuple[ReleaseDecision, tuple[outputs.AuditFactor, ...]]] = []
        kinds = dict.fromkeys(ReleaseKind, 0)
        partners = self._partners.get(subject.origin)
        if partners is None:
            partners = self._partners[subject.origin] = self._ctx.partners(subject.origin)
        for partner in partners:
            decision = decide(subject, partner, scores, self._ctx.policy, now)
            decisions.append((decision, scores.factors(decision.score)))
            if decision.released:
                out.append(outputs.release_record(admitted, decision))
            kinds[decision.kind] += 1
            tallies.append(
                self._counter("releases", subject.origin, decision.partner, decision.kind.value)
            )
        # One audit record for the whole bulletin: a record per partner made the audit most
        # of the router's output (10 of 17 records a bulletin) and of its encoding work.
        out.append(outputs.routed_audit(admitted, decisions, source, now))
        log.debug(
            "bulletin_routed",
            bulletin_id=subject.bulletin_id,
            origin=subject.origin,
            full=kinds[ReleaseKind.FULL],
            tearline=kinds[ReleaseKind.TEARLINE],
            withheld=kinds[ReleaseKind.WITHHELD],
        )
        route = lifecycle.route_of(
            source.partition, source.offset, subject, (d for d, _ in decisions)
        )
        return out, route

    def _counter(self, name: str, *labels: str) -> Callable[[], None]:
        """The ``inc`` of one of the metrics' counters for ``labels`` (bounded: agencies,
        pairs and decision kinds)."""
        key = (name, *labels)
        found = self._children.get(key)
        if found is None:
            counter: Counter = getattr(self._metrics, name)
            found = self._children[key] = counter.labels(*labels).inc
        return found

    def _reject(
        self,
        record: ConsumerRecord[Any, Any],
        source: outputs.Source,
        reason: str,
        message: str,
        tallies: list[Callable[[], None]],
    ) -> OutRecord:
        tallies.append(self._counter("rejected", reason))
        log.warning(
            "record_dead_lettered",
            reason=reason,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
        )
        return outputs.dead_letter(
            key=record.key,
            value=record.value,
            headers=record.headers,
            source=source,
            reason=reason,
            message=message,
        )
