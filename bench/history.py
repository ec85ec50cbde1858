"""A realistic trust history for the history phase (``python -m bench --history``): pure, no
I/O, no crypto, deterministic for a seed.

``plan_history`` lays out ``count`` audit releases (FULL or TEARLINE, as the router writes
them) and exactly ``count`` trust events over the ``DAYS`` before ``end``, for the agencies of
an exchange and the agreements of its policy:

* bulletins are decided one after another, each released at once to the partners its
  originator's agreements let it reach (all ``full`` partners, most ``standard`` ones, some
  ``limited`` ones: about six releases per bulletin, as in the end-to-end phase);
* ``ON_TIME_SHARE`` of the releases get a receipt within the deadline, the rest of the
  receipts arrive late, a few per cent of the releases get feedback hours or days later, and
  a handful of originators file incidents against partners they released to;
* every receipt and feedback names a bulletin released to its reporter, arrives after that
  release and never after ``end``, and claims an ``occurred_at`` a few seconds before its
  arrival (the partner stamps it, then sends it): the trust feed's 7-day skew rule holds.

What the writer makes of it (signing, encoding, partitions) is :mod:`bench.history_writer`.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from broker.policy import Policy
from broker.policy_terms import AgreementLevel
from consumers.receipts import receipt_event_id
from schemas.vocab import ReleaseKind, TrustEventKind

DAYS = 90
DAY_MS = 86_400_000
MINUTE_MS = 60_000
ON_TIME_SHARE = 0.90  # of releases: a receipt within the deadline
FEEDBACK_SHARE = 0.04  # of releases: one feedback event
INCIDENTS = 12  # filed by originators over the whole history (fewer for tiny histories)
ON_TIME_MAX_MS = 55 * MINUTE_MS  # the policy's deadline is 60 min: a margin for clamping
LATE_MS = (65 * MINUTE_MS, DAY_MS)
FEEDBACK_MS = (60 * MINUTE_MS, 5 * DAY_MS)
INCIDENT_MS = (60 * MINUTE_MS, 10 * DAY_MS)
CLAIM_LEAD_MS = 20_000  # occurred_at is up to this much before the arrival
# How likely a bulletin is released to a partner of each agreement level, and as what.
REACH = {
    AgreementLevel.FULL: 1.0,
    AgreementLevel.STANDARD: 0.8,
    AgreementLevel.LIMITED: 0.4,
    AgreementLevel.NONE: 0.0,
}
FEEDBACK_KINDS = (
    TrustEventKind.FEEDBACK_ACTIONED,
    TrustEventKind.FEEDBACK_USEFUL,
    TrustEventKind.FEEDBACK_USEFUL,
    TrustEventKind.FEEDBACK_NOT_USEFUL,
)
INCIDENT_KINDS = (
    TrustEventKind.INCIDENT_MISHANDLING,
    TrustEventKind.INCIDENT_LEAK,
    TrustEventKind.INCIDENT_CORRUPTION,
)


class Release(NamedTuple):
    """One audit record the trust feed counts: ``origin`` released ``bulletin_id`` to
    ``partner`` at ``at_ms`` (the record's ``decided_at`` and timestamp)."""

    at_ms: int
    origin: str
    partner: str
    bulletin_id: str
    decision: str  # ReleaseKind.FULL or TEARLINE value


class Event(NamedTuple):
    """One trust event on ``reporter``'s receipts topic; ``arrival_ms`` is its record
    timestamp, ``occurred_ms`` the time it claims."""

    arrival_ms: int
    occurred_ms: int
    kind: TrustEventKind
    reporter: str
    subject: str
    bulletin_id: str | None
    event_id: str


@dataclass(frozen=True)
class History:
    releases: list[Release]  # in decision order
    events: dict[str, list[Event]]  # per reporter, in arrival order
    start_ms: int
    end_ms: int

    @property
    def event_count(self) -> int:
        return sum(len(e) for e in self.events.values())

    def kinds(self) -> Counter[TrustEventKind]:
        return Counter(e.kind for events in self.events.values() for e in events)


@dataclass(frozen=True)
class Counts:
    """How the ``count`` trust events split (they add up to exactly ``count``)."""

    on_time: int
    late: int
    feedback: int
    incidents: int

    @classmethod
    def of(cls, count: int) -> Counts:
        incidents = min(INCIDENTS, count // 100)
        feedback = int(count * FEEDBACK_SHARE)
        receipts = count - feedback - incidents
        on_time = min(receipts, round(count * ON_TIME_SHARE))
        return cls(on_time, receipts - on_time, feedback, incidents)


def reach(policy: Policy, agencies: tuple[str, ...]) -> dict[str, list[tuple[str, float, str]]]:
    """Per originator: (partner, chance of a release, decision) for every partner it can
    reach. A ``full`` agreement releases FULL, ``limited`` the tearline; ``standard`` is
    decided per bulletin (half and half): the decision then is ``""``."""
    found: dict[str, list[tuple[str, float, str]]] = {}
    for origin in agencies:
        for partner in agencies:
            if partner == origin:
                continue
            level = policy.agreement(origin, partner).level
            if REACH[level] <= 0:
                continue
            decision = {
                AgreementLevel.FULL: ReleaseKind.FULL.value,
                AgreementLevel.LIMITED: ReleaseKind.TEARLINE.value,
            }.get(level, "")
            found.setdefault(origin, []).append((partner, REACH[level], decision))
    return found


def _bulletin_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def plan_releases(
    policy: Policy, agencies: tuple[str, ...], count: int, window: tuple[int, int],
    rng: random.Random,
) -> list[Release]:  # fmt: skip
    """Exactly ``count`` releases of bulletins decided in time order over the window (the
    last bulletin may reach fewer partners than it would have: the count is exact);
    ``window`` is (start, end) in epoch milliseconds."""
    start_ms, end_ms = window
    pairs = reach(policy, agencies)
    origins = sorted(pairs)
    bulletins: list[tuple[str, str, list[tuple[str, str]]]] = []
    made = 0
    while made < count:
        origin = rng.choice(origins)
        partners = [
            (partner, decision or rng.choice((ReleaseKind.FULL.value, ReleaseKind.TEARLINE.value)))
            for partner, chance, decision in pairs[origin]
            if rng.random() < chance
        ][: count - made]
        if partners:
            bulletins.append((origin, _bulletin_id(rng), partners))
            made += len(partners)
    # Decision times: sorted uniform draws, one per bulletin; its partners a millisecond apart
    # (the router decides them in turn), never past the end.
    span = end_ms - start_ms
    times = sorted(start_ms + int(rng.random() * span) for _ in bulletins)
    releases: list[Release] = []
    for at, (origin, bulletin_id, partners) in zip(times, bulletins, strict=True):
        releases.extend(
            Release(min(at + i, end_ms), origin, partner, bulletin_id, decision)
            for i, (partner, decision) in enumerate(partners)
        )
    return releases


def _event(
    release: Release, kind: TrustEventKind, delay_ms: int, end_ms: int, rng: random.Random,
    *, by_origin: bool = False,
) -> Event:  # fmt: skip
    arrival = min(release.at_ms + delay_ms, end_ms)
    occurred = max(release.at_ms, arrival - int(rng.random() * CLAIM_LEAD_MS))
    if by_origin:  # an incident: the originator reports on the partner it released to
        reporter, subject = release.origin, release.partner
    else:
        reporter, subject = release.partner, release.origin
    if kind is TrustEventKind.RECEIPT:
        event_id = receipt_event_id(reporter, release.bulletin_id)  # as a partner's consumer
    else:
        event_id = _bulletin_id(rng)
    return Event(arrival, occurred, kind, reporter, subject, release.bulletin_id, event_id)


def plan_events(
    releases: list[Release], count: int, end_ms: int, rng: random.Random
) -> dict[str, list[Event]]:
    """Exactly ``count`` trust events about ``releases`` (see :class:`Counts`), per reporter
    in arrival order."""
    if not releases:
        return {}
    counts = Counts.of(count)
    receipts = counts.on_time + counts.late
    if receipts > len(releases):
        raise ValueError(f"{receipts} receipts need as many releases, not {len(releases)}")
    order = rng.sample(range(len(releases)), receipts)
    events: list[Event] = []
    for n, index in enumerate(order):
        low, high = (0, ON_TIME_MAX_MS) if n < counts.on_time else LATE_MS
        delay = rng.randint(low + 1000, high)
        events.append(_event(releases[index], TrustEventKind.RECEIPT, delay, end_ms, rng))
    for index in rng.sample(range(len(releases)), counts.feedback):
        kind = rng.choice(FEEDBACK_KINDS)
        events.append(_event(releases[index], kind, rng.randint(*FEEDBACK_MS), end_ms, rng))
    for _ in range(counts.incidents):
        release = releases[rng.randrange(len(releases))]
        kind, delay = rng.choice(INCIDENT_KINDS), rng.randint(*INCIDENT_MS)
        events.append(_event(release, kind, delay, end_ms, rng, by_origin=True))
    by_reporter: dict[str, list[Event]] = {}
    for event in events:
        by_reporter.setdefault(event.reporter, []).append(event)
    for mine in by_reporter.values():
        mine.sort(key=lambda e: e.arrival_ms)
    return by_reporter


def plan_history(
    policy: Policy, agencies: tuple[str, ...], count: int, end: datetime, *, seed: int = 14
) -> History:
    """``count`` releases and ``count`` trust events over the ``DAYS`` before ``end``."""
    rng = random.Random(seed)
    end_ms = int(end.timestamp() * 1000)
    start_ms = end_ms - DAYS * DAY_MS
    releases = plan_releases(policy, agencies, count, (start_ms, end_ms), rng)
    return History(releases, plan_events(releases, count, end_ms, rng), start_ms, end_ms)
