"""One pair's trust score over time, and the evidence that moved it (pure; ``enlace trust plot``).

:func:`series_from_records` replays a recorded history (releases and trust events, as
:func:`broker.ledger.build_ledger` reads them) for one directed pair (O, P) in time order, once,
and samples the score on a regular grid between ``since`` and ``until``. Each sample equals
``build_ledger(records, policy, at).score(O, P, policy, at)``: a receipt is judged on time or
late against its release, a release with no receipt by the deadline counts as a missing receipt
at the deadline, and a receipt that comes later takes that back. Records before ``since`` count
(they are history), they are just not drawn.

Two differences from rebuilding the ledger at every sample, neither of which the router makes
possible live: a bulletin released twice to the same partner is judged against its first
release, and a claim (``actioned``/``useful``) read before the pair's first release spends
from a budget dated by that claim rather than by the release.

The marked evidence is what the plot shows: incidents, feedback of each kind, late and
missing receipts (on-time receipts are the bulk of the history, and the line shows them). A
missing receipt later replaced by a late one is marked late, at the receipt.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from broker.evidence import Evidence, EvidenceClass, classify_receipt, evidence_from_event
from broker.ledger import ObservedEvent, ObservedRelease, TrustLedger
from broker.policy import Policy
from schemas.vocab import Classification, TrustEventKind

MARKED: frozenset[EvidenceClass] = frozenset(EvidenceClass) - {EvidenceClass.RECEIPT_ON_TIME}
# Grid steps, smallest first: the finest that keeps a range within MAX_SAMPLES is used.
STEPS: tuple[timedelta, ...] = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(days=1),
    timedelta(days=7),
)
MAX_SAMPLES = 1_000
# An incident is also sampled this long before it, so the drop is drawn as a drop.
JUST_BEFORE = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Sample:
    at: datetime
    score: float
    reached: Classification | None  # the highest classification P receives in full


@dataclass(frozen=True, slots=True)
class Mark:
    """One piece of marked evidence about the pair; ``score`` is the pair's right after it."""

    at: datetime
    cls: EvidenceClass
    score: float
    bulletin_id: str | None = None


@dataclass(frozen=True, slots=True)
class Series:
    originator: str
    partner: str
    since: datetime
    until: datetime
    samples: tuple[Sample, ...]  # in time order: the grid, every mark, just before incidents
    marks: tuple[Mark, ...]  # in time order, each counted piece of marked evidence once
    thresholds: tuple[tuple[Classification, float], ...]  # lowest classification first


def default_step(since: datetime, until: datetime) -> timedelta:
    """The finest of :data:`STEPS` that samples ``[since, until]`` at most MAX_SAMPLES times."""
    span = until - since
    return next((s for s in STEPS if span / s <= MAX_SAMPLES - 1), STEPS[-1])


def grid(since: datetime, until: datetime, step: timedelta) -> list[datetime]:
    """``since``, ``since + step``, ... up to ``until``, and ``until`` itself."""
    if step <= timedelta(0):
        raise ValueError(f"step must be positive, not {step}")
    times: list[datetime] = []
    at = since
    while at < until:
        times.append(at)
        at += step
    times.append(until)
    return times


def thresholds(policy: Policy) -> tuple[tuple[Classification, float], ...]:
    return tuple(sorted(policy.thresholds.items(), key=lambda kv: kv[0].rank))


class _Order(IntEnum):
    """What happens first at one instant (as build_ledger: releases, events, then deadlines;
    a sample sees all of them)."""

    RELEASE = 0
    EVENT = 1
    DEADLINE = 2
    SAMPLE = 3


Key = tuple[str, str, str]  # originator, partner, bulletin id
# (when, what, a number unique per what, the record or the released bulletin's key)
_Item = tuple[datetime, _Order, int, ObservedEvent | ObservedRelease | Key | None]


class _Replay:
    """build_ledger for one pair, folded once in time order."""

    def __init__(self, policy: Policy, originator: str, partner: str) -> None:
        self.policy = policy
        self.pair = (originator, partner)
        self.ledger = TrustLedger.for_policy(policy)
        self.deadline = timedelta(minutes=policy.evidence.receipt_deadline_minutes)
        self.released: dict[Key, datetime] = {}
        self.receipted: set[Key] = set()
        self.missed: dict[Key, Evidence] = {}
        self.marks: dict[int, Mark] = {}  # by the number of the item that made them
        self.missing_marks: dict[Key, int] = {}

    def score(self, at: datetime) -> float:
        return self.ledger.score(*self.pair, self.policy, at).value

    def release(self, record: ObservedRelease) -> Key | None:
        """Count a release; returns its key when the pair's receipt of it will be due."""
        self.ledger.record_release(record.originator, record.partner, record.released_at)
        if (record.originator, record.partner) != self.pair or record.bulletin_id is None:
            return None
        key = (record.originator, record.partner, record.bulletin_id)
        if key in self.released:
            return None
        self.released[key] = record.released_at
        return key

    def event(self, record: ObservedEvent) -> Evidence | None:
        receipt_class = EvidenceClass.RECEIPT_ON_TIME
        if record.kind is TrustEventKind.RECEIPT and record.bulletin_id is not None:
            key = (record.subject, record.reporter, record.bulletin_id)
            if key[:2] == self.pair:
                self.receipted.add(key)
                missed = self.missed.pop(key, None)
                if missed is not None:  # a late receipt replaces the missing one
                    self.ledger.retract(missed)
                    self.marks.pop(self.missing_marks.pop(key), None)
            released_at = record.released_at or self.released.get(key)
            if released_at is not None:
                receipt_class = classify_receipt(released_at, record.occurred_at, self.deadline)
        evidence = evidence_from_event(
            record.kind,
            record.reporter,
            record.subject,
            record.occurred_at,
            bulletin_id=record.bulletin_id,
            receipt_class=receipt_class,
        )
        if evidence is None or (evidence.originator, evidence.partner) != self.pair:
            return None
        self.ledger.add(evidence)
        return evidence

    def due(self, key: Key, at: datetime) -> Evidence | None:
        if key in self.receipted:
            return None
        evidence = Evidence(key[0], key[1], EvidenceClass.RECEIPT_MISSING, at, key[2])
        self.ledger.add(evidence)
        self.missed[key] = evidence
        return evidence

    def fold(self, item: _Item) -> tuple[Evidence | None, _Item | None]:
        """Fold one item: the marked evidence it counted, and a receipt deadline to queue."""
        at, order, number, payload = item
        if isinstance(payload, ObservedRelease):
            key = self.release(payload)
            due = None if key is None else (at + self.deadline, _Order.DEADLINE, number, key)
            return None, due
        if isinstance(payload, ObservedEvent):
            evidence = self.event(payload)
            return (evidence if evidence is not None and evidence.cls in MARKED else None), None
        if order is _Order.DEADLINE and isinstance(payload, tuple):
            evidence = self.due(payload, at)
            if evidence is not None:
                self.missing_marks[payload] = number
            return evidence, None
        return None, None


def series_from_records(
    records: Iterable[ObservedEvent | ObservedRelease],
    policy: Policy,
    originator: str,
    partner: str,
    *,
    since: datetime,
    until: datetime,
    step: timedelta | None = None,
) -> Series:
    """The pair's score from ``since`` to ``until`` (records after ``until`` are ignored)."""
    if until < since:
        raise ValueError(f"until ({until}) is before since ({since})")
    queue, wanted = _queue(records, (originator, partner), since, until, step)
    replay = _Replay(policy, originator, partner)
    scores: dict[datetime, float] = {}
    while queue:
        at = queue[0][0]
        marked: list[int] = []
        while queue and queue[0][0] == at:
            item = heapq.heappop(queue)
            evidence, due = replay.fold(item)
            if due is not None and due[0] <= until:
                heapq.heappush(queue, due)
            if evidence is not None and at >= since:
                marked.append(item[2])
                replay.marks[item[2]] = Mark(at, evidence.cls, 0.0, evidence.bulletin_id)
        if at >= since and (marked or at in wanted):
            scores[at] = value = replay.score(at)
            for number in marked:
                mark = replay.marks[number]
                replay.marks[number] = Mark(mark.at, mark.cls, value, mark.bulletin_id)
    marks = tuple(sorted(replay.marks.values(), key=lambda m: m.at))
    wanted.update(m.at for m in marks)
    samples = tuple(Sample(at, scores[at], policy.reached(scores[at])) for at in sorted(wanted))
    return Series(originator, partner, since, until, samples, marks, thresholds(policy))


def _queue(
    records: Iterable[ObservedEvent | ObservedRelease],
    pair: tuple[str, str],
    since: datetime,
    until: datetime,
    step: timedelta | None,
) -> tuple[list[_Item], set[datetime]]:
    """The pair's records up to ``until`` as a heap, with the sample times (the grid, and just
    before each incident O reported against P)."""
    originator, _ = pair
    both = set(pair)
    queue: list[_Item] = []
    wanted = set(grid(since, until, step or default_step(since, until)))
    for number, record in enumerate(records):
        if isinstance(record, ObservedRelease):
            if {record.originator, record.partner} == both and record.released_at <= until:
                queue.append((record.released_at, _Order.RELEASE, number, record))
        elif {record.reporter, record.subject} == both and record.occurred_at <= until:
            queue.append((record.occurred_at, _Order.EVENT, number, record))
            if record.reporter == originator and record.kind in _INCIDENT_KINDS:
                before = record.occurred_at - JUST_BEFORE
                if before >= since:
                    wanted.add(before)
    queue.extend((at, _Order.SAMPLE, 0, None) for at in wanted)
    heapq.heapify(queue)
    return queue, wanted


_INCIDENT_KINDS = frozenset(
    {
        TrustEventKind.INCIDENT_MISHANDLING,
        TrustEventKind.INCIDENT_LEAK,
        TrustEventKind.INCIDENT_CORRUPTION,
    }
)
