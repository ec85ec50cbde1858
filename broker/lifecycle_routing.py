"""The router's lifecycle paths: a recall on an outbound partition, and the due work of
releases when trust is earned (the engine's :class:`broker.engine.DueSource`).

Decisions are :mod:`broker.lifecycle`'s; this module turns them into feed records, audit
records and rewritten replay-index entries, staged like a batch's so the engine commits them
in one transaction of the partition's own producer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import ConsumerRecord, TopicPartition

from broker import lifecycle, outputs
from broker.admission import Admitted, Limits, Refused, admit, misplaced
from broker.engine import BatchOutcome, OutRecord
from broker.metrics import RouterMetrics
from broker.policy import Policy
from broker.release import Partner, ReleaseDecision, ReleaseSubject, ScoreSource, decide
from broker.replay import SeenEntry, SeenIndex, digest_of, encode_entry, seen_key, split_seen_key
from enlace.core.clock import Clock
from enlace.core.logs import get_logger
from enlace.core.topics import ROUTER_SEEN, agency_of, owner_partition
from schemas.key_directory import KeyDirectory
from schemas.vocab import Classification

log = get_logger(__name__)


class Context(Protocol):
    """What :class:`broker.routing.RoutingContext` offers (kept structural: no cycle)."""

    @property
    def policy(self) -> Policy: ...
    @property
    def keys(self) -> KeyDirectory: ...
    @property
    def limits(self) -> Limits: ...
    def partners(self, origin: str) -> list[Partner]: ...


class Reader(Protocol):
    async def read(
        self, tp: TopicPartition, offsets: Sequence[int]
    ) -> dict[int, ConsumerRecord[Any, Any]]: ...


Reject = Callable[
    [ConsumerRecord[Any, Any], outputs.Source, str, str, list[Callable[[], None]]], OutRecord
]
Count = Callable[..., Callable[[], None]]


@dataclass(frozen=True)
class DueWork:
    """Records read back for entries due a release when trust is earned."""

    due: tuple[lifecycle.Due, ...]
    records: dict[int, ConsumerRecord[Any, Any]]


class LifecycleRouting:
    def __init__(
        self,
        context: Context,
        trust: ScoreSource,
        seen: SeenIndex,
        metrics: RouterMetrics,
        *,
        count: Count,
        reject: Reject,
        reader: Reader | None,
        clock: Clock,
        partitions: Callable[[str], int | None],
    ) -> None:
        self._ctx = context
        self._trust = trust
        self._seen = seen
        self._metrics = metrics
        self._count = count
        self._reject = reject
        self._reader = reader
        self._clock = clock
        self._partitions = partitions
        # Per (origin, partition): each partner's highest reached classification at the last
        # full scan. A scan is needed only when one rose (or after an assignment).
        self._scanned: dict[tuple[str, int], dict[str, int]] = {}

    def forget_scans(self) -> None:
        """After an assignment: scan everything once (a score may have risen meanwhile)."""
        self._scanned.clear()

    # -- recalls -----------------------------------------------------------------------------
    def route_recall(
        self,
        agency: str,
        record: ConsumerRecord[Any, Any],
        source: outputs.Source,
        *,
        now: datetime,
        staged: dict[bytes, SeenEntry],
        partitions: int | None,
        tallies: list[Callable[[], None]],
    ) -> list[OutRecord]:
        ctx = self._ctx
        result = lifecycle.admit_recall(
            agency,
            record.value,
            record.headers,
            keys=ctx.keys,
            limits=ctx.limits,
            received_at=datetime.fromtimestamp(record.timestamp / 1000, tz=UTC),
            now=now,
        )
        if isinstance(result, Refused):
            return [self._refuse(agency, record, source, result, tallies)]
        recall = result.recall
        wrong = misplaced(
            f"recall of {recall.bulletin_id}", recall.bulletin_id, source.partition, partitions,
            key_hint="the bulletin id",
        )  # fmt: skip
        if wrong is not None:
            return [self._refuse(agency, record, source, wrong, tallies)]
        key = seen_key(agency, recall.bulletin_id)
        judged = lifecycle.judge_recall(
            result, self._seen.lookup(key, staged), self._seen.origin_of(recall.bulletin_id, staged)
        )
        if judged.refused is not None:
            return [self._refuse(agency, record, source, judged.refused, tallies)]
        if judged.duplicate:
            tallies.append(self._count("recalls", agency, "duplicate"))
            log.info("recall_duplicate", bulletin_id=recall.bulletin_id, origin=agency)
            rule = lifecycle.RECALL_DUPLICATE_RULE
            return [outputs.recall_audit(recall, (), source, now, rule=rule)]
        assert judged.entry is not None
        recipients = [h.partner for h in judged.recipients]
        routed = [
            outputs.recall_forward(recall, result.value, result.signed, p) for p in recipients
        ]
        routed.append(
            outputs.recall_audit(recall, recipients, source, now, rule=lifecycle.RECALL_RULE)
        )
        routed.append(OutRecord(ROUTER_SEEN, encode_entry(judged.entry), key))
        staged[key] = judged.entry
        tallies.append(self._count("recalls", agency, "forwarded"))
        tallies.extend(self._count("recalls_forwarded", agency, p) for p in recipients)
        log.info(
            "bulletin_recalled",
            bulletin_id=recall.bulletin_id,
            origin=agency,
            recipients=len(recipients),
        )
        return routed

    def _refuse(
        self,
        agency: str,
        record: ConsumerRecord[Any, Any],
        source: outputs.Source,
        refused: Refused,
        tallies: list[Callable[[], None]],
    ) -> OutRecord:
        tallies.append(self._count("recalls", agency, "dead_lettered"))
        return self._reject(record, source, refused.reason, refused.message, tallies)

    # -- releases when trust is earned --------------------------------------------------------
    async def collect_due(self, tp: TopicPartition) -> DueWork | None:
        origin = agency_of(tp.topic)
        policy = self._ctx.policy
        if self._reader is None or not policy.rerelease_enabled(origin):
            return None
        now = self._clock()
        group = (origin, tp.partition)
        partners = self._ctx.partners(origin)
        reached = {
            p.agency_id: _rank(
                policy.reached(self._trust.score(origin, p.agency_id, policy, now).value)
            )
            for p in partners
        }
        last = self._scanned.get(group)
        if last is not None and all(reached[p] <= last.get(p, -1) for p in reached):
            return None  # no partner reached a new level since the last full scan
        # As the partition's next batch would see them: a release still committing counts.
        # Only the bulletins this partition still owns: after partitions were added, a
        # bulletin's recall goes to its new owner, and one entry has one writer.
        count = self._partitions(tp.topic)
        candidates = [
            (key, self._seen.lookup(key, {}) or entry)
            for key, entry in self._seen.upgradable(origin, tp.partition)
            if not count or owner_partition(split_seen_key(key)[1], count) == tp.partition
        ]
        limit = policy.rerelease.per_transaction
        due, expired = lifecycle.due(origin, candidates, self._trust, policy, now, limit=limit)
        for key in expired:
            self._seen.forget_upgrades(key)
        if not due:
            # A complete scan found nothing: skip until a partner reaches a new level. (Not
            # after finding some: their transaction may abort, and they are due again.)
            self._scanned[group] = reached
            return None
        offsets = [d.entry.route.offset for d in due if d.entry.route is not None]
        records = await self._reader.read(tp, offsets)
        return DueWork(tuple(due), records)

    def handle_due(self, tp: TopicPartition, work: object) -> BatchOutcome:
        assert isinstance(work, DueWork)
        outcome = BatchOutcome()
        staged: dict[bytes, SeenEntry] = {}
        tallies: list[Callable[[], None]] = []
        now = self._clock()
        origin = agency_of(tp.topic)
        for item in work.due:
            try:
                outcome.outputs.extend(
                    self._rerelease(
                        tp, item, work, origin=origin, staged=staged, now=now, tallies=tallies
                    )
                )
            except Exception:
                # A bug must not stop the partition: this bulletin is skipped, and nothing
                # half-built for it is kept (its entry is not staged before the end).
                log.exception("rerelease_internal_error", origin=origin)
                self._seen.forget_upgrades(item.key)
        commit, withdraw = self._seen.hold(staged)
        outcome.on_commit.append(commit)
        outcome.on_abandon.append(withdraw)
        outcome.on_commit.extend(tallies)
        return outcome

    def _rerelease(
        self,
        tp: TopicPartition,
        item: lifecycle.Due,
        work: DueWork,
        *,
        origin: str,
        staged: dict[bytes, SeenEntry],
        now: datetime,
        tallies: list[Callable[[], None]],
    ) -> list[OutRecord]:
        # Decided on the entry as it is now (a recall or another release may have landed
        # since the work was collected).
        entry = self._seen.lookup(item.key, staged)
        route = entry.route if entry is not None else None
        if entry is None or route is None or not route.upgradable:
            return []
        if not self._ctx.policy.rerelease_enabled(origin):
            return []
        record = work.records.get(route.offset)
        admitted = self._readmit(origin, record) if record is not None else None
        if admitted is None or digest_of(admitted.identity) != entry.digest:
            log.warning("rerelease_source_gone", origin=origin, offset=route.offset)
            self._seen.forget_upgrades(item.key)
            return []
        subject = ReleaseSubject.of(admitted.bulletin, sealed_for=admitted.sealed_for)
        policy = self._ctx.policy
        released: list[tuple[ReleaseDecision, str, tuple[outputs.AuditFactor, ...]]] = []
        out: list[OutRecord] = []
        for partner in self._ctx.partners(origin):
            if partner.agency_id not in item.partners:
                continue
            decision = decide(subject, partner, self._trust, policy, now)
            hold = lifecycle.upgraded(route, decision)
            if hold is None:
                continue
            route = route.with_hold(hold)
            out.append(outputs.release_record(admitted, decision))
            rule = lifecycle.RERELEASE_RULES[decision.kind]
            released.append((decision, rule, outputs.audit_factors(decision.score)))
            tallies.append(
                self._count("rereleases", origin, partner.agency_id, decision.kind.value)
            )
        if not released:
            return []
        source = outputs.Source(tp.topic, route.partition, route.offset)
        out.append(outputs.rerelease_audit(admitted, released, source, now))
        updated = SeenEntry(entry.digest, entry.first_seen_ms, route)
        out.append(OutRecord(ROUTER_SEEN, encode_entry(updated), item.key))
        staged[item.key] = updated
        log.info(
            "bulletin_rereleased",
            bulletin_id=subject.bulletin_id,
            origin=origin,
            partners=",".join(d.partner for d, _, _ in released),
        )
        return out

    def _readmit(self, origin: str, record: ConsumerRecord[Any, Any]) -> Admitted | None:
        """The bulletin admitted again as at its routing (its record's time dates the key and
        clock checks); None if it no longer passes (a revoked key, say)."""
        received = datetime.fromtimestamp(record.timestamp / 1000, tz=UTC)
        ctx = self._ctx
        result = admit(
            origin, record.value, record.headers, keys=ctx.keys, limits=ctx.limits,
            received_at=received, now=received,
        )  # fmt: skip
        return result if isinstance(result, Admitted) else None


def _rank(reached: Classification | None) -> int:
    return -1 if reached is None else reached.rank


__all__ = ["DueWork", "LifecycleRouting"]
