"""The router's live trust fold: audit releases and verified trust events into a ledger (pure).

Rules that keep a dishonest partner from gaming, dodging or growing the trust layer (README,
"Threat model"):

* **times are observations**: an event is dated when the router observed it (the record's
  append time in Kafka, never after the router's own clock); the claimed ``occurred_at`` must
  lie within ``[observed - max_past, observed + max_future]`` or the event is refused
  (``clock_skew``). A receipt is on time when it *arrived* within the deadline of the release.
* **claims are bounded**: positive feedback goes through the ledger's claim budget
  (``broker.claims``).
* receipts and feedback count only for a bulletin the router released to the reporter (and
  remembers: ``release_memory``, ``releases_per_partner``), once per (bulletin, partner, kind);
  a receipt read before its release's audit record waits as an orphan, at most
  ``orphans_per_reporter`` of them per reporter and ``orphan_wait`` long;
* events name registry agencies only (``unknown_agency``), never the reporter itself
  (``self_report``); every event counts once by ``(reporter, event_id)`` (``duplicate``),
  remembered for as long as its claimed time stays acceptable and at most
  ``event_ids_per_reporter`` per reporter;
* a release with no receipt by the policy's deadline counts as a missing receipt; a receipt
  that comes after that replaces it (late, or on time if it arrived in time and was read late).

**The outcome depends on the records, not on when they are folded or swept.** A release's
receipt evidence is decided by the receipt's observed time alone, and a release is judged
remembered by the event's observed time, not by whether a sweep has forgotten it yet. So a state
rebuilt from history, a live state, and a state restored from a snapshot (``broker.trust_image``)
and fed the rest of the records give the same ledger: the snapshot test relies on it.

Every call returns a :class:`Folded` saying what happened and why; bounds that are hit are
reported through ``on_bound`` so the router can count them.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from broker.evidence import Evidence, EvidenceClass, classify_receipt, evidence_from_event
from broker.ledger import TrustLedger
from broker.policy import Policy
from broker.trust import TrustScore
from schemas.models import TrustEvent
from schemas.vocab import TrustEventKind

ReleaseKey = tuple[str, str, str]  # originator, partner, bulletin id

# Rejections (dead-lettered, counted by reason).
UNKNOWN_AGENCY = "unknown_agency"
SELF_REPORT = "self_report"
CLOCK_SKEW = "clock_skew"
NO_BULLETIN = "no_bulletin"
# Events that are valid but add nothing (counted, not dead-lettered).
DUPLICATE = "duplicate"
REPEAT = "repeat"
NO_EVIDENCE = "no_evidence"
# Bounds (counted when hit).
BOUND_ORPHANS = "orphans"
BOUND_ORPHAN_AGE = "orphan_age"  # an orphan waited longer than orphan_wait: dropped
BOUND_EVENT_IDS = "event_ids"
BOUND_CLAIMS = "claims"
BOUND_RELEASES = "releases"  # a partner's oldest remembered release forgotten early

# One bit per kind a release can count (``_Release.counted``): the snapshot stores the mask.
KIND_BITS: dict[TrustEventKind, int] = {
    TrustEventKind.RECEIPT: 1,
    TrustEventKind.FEEDBACK_ACTIONED: 2,
    TrustEventKind.FEEDBACK_USEFUL: 4,
    TrustEventKind.FEEDBACK_NOT_USEFUL: 8,
}


class Outcome(StrEnum):
    COUNTED = "counted"  # folded into the ledger
    HELD = "held"  # waits for the release it refers to
    IGNORED = "ignored"  # valid, adds nothing (``reason`` says why)
    REJECTED = "rejected"  # refused: dead letter with ``reason``


@dataclass(frozen=True, slots=True)
class Folded:
    outcome: Outcome
    reason: str = ""
    message: str = ""
    kind: TrustEventKind | None = None


@dataclass(frozen=True, slots=True)
class TrustLimits:
    """How far a claimed time may be from the observation, and every bound of the state."""

    max_past: timedelta = timedelta(days=7)
    max_future: timedelta = timedelta(minutes=5)
    orphans_per_reporter: int = 1_000
    orphan_wait: timedelta = timedelta(minutes=5)
    event_ids_per_reporter: int = 20_000
    # Feedback may come weeks after a release; older releases are forgotten.
    release_memory: timedelta = timedelta(days=30)
    releases_per_partner: int = 100_000


@dataclass(slots=True)
class Release:
    """What the state remembers of one release O→P of a bulletin."""

    at: datetime
    awaiting: bool = True  # no receipt folded yet
    missed: bool = False  # counted as a missing receipt at its deadline
    counted: int = 0  # KIND_BITS of the kinds already counted


@dataclass(frozen=True, slots=True)
class Orphan:
    """A receipt or feedback waiting for the release it names."""

    kind: TrustEventKind
    observed: datetime


class TrustState:
    """Folds audit releases and trust events into a :class:`TrustLedger` (no I/O)."""

    def __init__(
        self,
        policy: Policy,
        agencies: Iterable[str] | None = None,
        limits: TrustLimits | None = None,
        *,
        on_bound: Callable[[str], None] = lambda _b: None,
    ) -> None:
        self.policy = policy
        self.limits = limits or TrustLimits()
        # None: any well-formed id (offline replays of a file); the router always passes them.
        self._agencies = frozenset(agencies) if agencies is not None else None
        self._on_bound = on_bound
        self.ledger = TrustLedger.for_policy(policy)
        self._deadline = timedelta(minutes=policy.evidence.receipt_deadline_minutes)
        self.releases: dict[ReleaseKey, Release] = {}
        # Per partner, releases in arrival order (about time order): forgotten from the left.
        self.release_order: dict[str, deque[ReleaseKey]] = {}
        # Receipt deadlines as a heap: a sweep costs what expires, not what is remembered.
        self._deadlines: list[tuple[datetime, ReleaseKey]] = []
        # Per reporter, in arrival order: (release key, event id) -> the waiting event.
        self.orphans_by_reporter: dict[str, dict[tuple[ReleaseKey, str], Orphan]] = {}
        self._orphans_of: dict[ReleaseKey, list[str]] = {}
        # Per reporter, in arrival order: event id -> when it was observed.
        self.event_ids: dict[str, dict[str, datetime]] = {}
        self.events_applied = 0
        # An id older than this would be refused as clock_skew anyway if it came again.
        self._id_memory = self.limits.max_past + self.limits.max_future

    # -- releases ------------------------------------------------------------------------
    def release(
        self,
        originator: str,
        partner: str,
        bulletin_id: str,
        at: datetime,
        now: datetime | None = None,
    ) -> list[TrustEventKind]:
        """Record a release (from the audit topic); returns the kinds of the waiting events
        that counted now."""
        key = (originator, partner, bulletin_id)
        if key in self.releases or self._outside_registry(originator, partner):
            return []
        if now is not None:
            at = min(at, now)
        release = self._remember_release(key, at)
        heapq.heappush(self._deadlines, (at + self._deadline, key))
        self.ledger.record_release(originator, partner, at)
        counted: list[TrustEventKind] = []
        waiting = self.orphans_by_reporter.get(partner)
        for event_id in self._orphans_of.pop(key, ()):
            orphan = waiting.pop((key, event_id), None) if waiting is not None else None
            if orphan is None or not self._orphan_counts(orphan, at):
                continue
            if self._fold_released(orphan.kind, key, release, orphan.observed):
                counted.append(orphan.kind)
        return counted

    def _orphan_counts(self, orphan: Orphan, released_at: datetime) -> bool:
        """Judged by the records' times, not by how long the orphan really waited: an event
        observed before the release (no honest partner's) counts only within orphan_wait."""
        limits = self.limits
        waited = released_at - orphan.observed
        return waited <= limits.orphan_wait and -waited <= limits.release_memory

    def _remember_release(self, key: ReleaseKey, at: datetime) -> Release:
        release = self.releases[key] = Release(at)
        order = self.release_order.setdefault(key[1], deque())
        order.append(key)
        if len(order) > self.limits.releases_per_partner:
            evicted = order.popleft()
            old = self.releases.pop(evicted, None)
            self._on_bound(BOUND_RELEASES)
            due = old.at + self._deadline if old is not None else at
            if old is not None and old.awaiting and not old.missed and due <= at:
                # A sweep may or may not have counted it yet: count it now, so either way
                # the missing receipt counts exactly once.
                self.ledger.record_missing_receipt(evicted[0], evicted[1], due, evicted[2])
        return release

    # -- events --------------------------------------------------------------------------
    def event(self, event: TrustEvent, observed: datetime, now: datetime) -> Folded:  # noqa: PLR0911 - one exit per outcome reads as the rules
        """Fold one verified event observed at ``observed`` (clamped to ``now``)."""
        observed = min(observed, now)
        refused = self._refusal(event, observed)
        if refused is not None:
            return refused
        ids = self.event_ids.setdefault(event.reporter, {})
        seen = ids.get(event.event_id)
        if seen is not None and observed - seen <= self._id_memory:
            return Folded(Outcome.IGNORED, DUPLICATE, kind=event.kind)
        kind = event.kind
        if kind not in KIND_BITS:
            evidence = evidence_from_event(kind, event.reporter, event.subject, observed)
            if evidence is None:
                return Folded(Outcome.IGNORED, NO_EVIDENCE, kind=kind)
            self._remember(ids, event.event_id, observed)
            self.ledger.add(evidence)
            self.events_applied += 1
            return Folded(Outcome.COUNTED, kind=kind)
        assert event.bulletin_id is not None  # _refusal checked it
        key = (event.subject, event.reporter, event.bulletin_id)
        release = self.releases.get(key)
        if release is not None and observed - release.at > self.limits.release_memory:
            release = None  # forgotten by now, whether or not a sweep has dropped it yet
        if release is None:
            self._remember(ids, event.event_id, observed)
            self._hold(key, event.event_id, Orphan(kind, observed))
            return Folded(Outcome.HELD, kind=kind)
        if release.counted & KIND_BITS[kind]:
            return Folded(Outcome.IGNORED, REPEAT, kind=kind)
        self._remember(ids, event.event_id, observed)
        self._fold_released(kind, key, release, observed)
        return Folded(Outcome.COUNTED, kind=kind)

    def _refusal(self, event: TrustEvent, observed: datetime) -> Folded | None:
        if self._outside_registry(event.subject, event.reporter):
            return Folded(
                Outcome.REJECTED, UNKNOWN_AGENCY, f"{event.subject!r} is not a registry agency"
            )
        if event.subject == event.reporter:
            return Folded(Outcome.REJECTED, SELF_REPORT, "an agency reporting on itself")
        claimed = event.occurred_at
        if claimed > observed + self.limits.max_future:
            return Folded(
                Outcome.REJECTED, CLOCK_SKEW, f"occurred_at {claimed} is after its arrival"
            )
        if claimed < observed - self.limits.max_past:
            return Folded(
                Outcome.REJECTED,
                CLOCK_SKEW,
                f"occurred_at {claimed} is more than {self.limits.max_past} before its arrival",
            )
        if event.kind in KIND_BITS and event.bulletin_id is None:
            return Folded(Outcome.REJECTED, NO_BULLETIN, f"a {event.kind} names no bulletin")
        return None

    def _outside_registry(self, *agencies: str) -> bool:
        known = self._agencies
        return known is not None and any(a not in known for a in agencies)

    def _fold_released(
        self, kind: TrustEventKind, key: ReleaseKey, release: Release, observed: datetime
    ) -> bool:
        """Count a receipt or feedback for a known release, once per kind."""
        bit = KIND_BITS[kind]
        if release.counted & bit:
            return False
        release.counted |= bit
        originator, reporter, bulletin_id = key
        receipt_class = EvidenceClass.RECEIPT_ON_TIME
        if kind is TrustEventKind.RECEIPT:
            release.awaiting = False
            if release.missed:
                # The sweep passed the deadline before this receipt was folded: the receipt's
                # own arrival time decides, as if it had been folded first.
                release.missed = False
                self.ledger.retract(
                    Evidence(
                        originator,
                        reporter,
                        EvidenceClass.RECEIPT_MISSING,
                        release.at + self._deadline,
                        bulletin_id,
                    )
                )
            receipt_class = classify_receipt(release.at, observed, self._deadline)
        evidence = evidence_from_event(
            kind,
            reporter,
            originator,
            observed,
            bulletin_id=bulletin_id,
            receipt_class=receipt_class,
        )
        if evidence is None:
            return False
        if self.ledger.add(evidence) < 1.0:
            self._on_bound(BOUND_CLAIMS)
        self.events_applied += 1
        return True

    def _hold(self, key: ReleaseKey, event_id: str, orphan: Orphan) -> None:
        reporter = key[1]
        waiting = self.orphans_by_reporter.setdefault(reporter, {})
        waiting[key, event_id] = orphan
        self._orphans_of.setdefault(key, []).append(event_id)
        if len(waiting) > self.limits.orphans_per_reporter:
            self._drop_orphan(reporter, waiting, next(iter(waiting)))
            self._on_bound(BOUND_ORPHANS)

    def _drop_orphan(
        self,
        reporter: str,
        waiting: dict[tuple[ReleaseKey, str], Orphan],
        entry: tuple[ReleaseKey, str],
    ) -> None:
        key, event_id = entry
        del waiting[entry]
        ids = self._orphans_of.get(key)
        if ids is not None:
            ids[:] = [i for i in ids if i != event_id]
            if not ids:
                del self._orphans_of[key]
        # Forgotten, so an honest re-send may still count once its release is known.
        self.event_ids.get(reporter, {}).pop(event_id, None)

    def _remember(self, ids: dict[str, datetime], event_id: str, observed: datetime) -> None:
        ids[event_id] = observed
        if len(ids) > self.limits.event_ids_per_reporter:
            del ids[next(iter(ids))]
            self._on_bound(BOUND_EVENT_IDS)

    # -- time ----------------------------------------------------------------------------
    def sweep(self, now: datetime) -> int:
        """Missing receipts past the deadline; forget old releases, orphans and event ids.

        ``now`` should be a time up to which every receipt has been read (the trust feed's
        watermark): a receipt read later than that still counts, replacing the missing one.
        """
        missing = 0
        while self._deadlines and self._deadlines[0][0] <= now:
            due, key = heapq.heappop(self._deadlines)
            release = self.releases.get(key)
            if release is None or not release.awaiting or release.missed:
                continue
            release.missed = True
            originator, partner, bulletin_id = key
            self.ledger.record_missing_receipt(originator, partner, due, bulletin_id)
            missing += 1
        self.forget(now)
        return missing

    def forget(self, now: datetime) -> None:
        """Drop what no later record can use any more (memory only: outcomes do not change)."""
        horizon = now - self.limits.release_memory
        for order in self.release_order.values():
            while order:
                release = self.releases.get(order[0])
                if release is not None and release.at >= horizon:
                    break
                self.releases.pop(order.popleft(), None)
        orphan_horizon = now - self.limits.orphan_wait
        for reporter, waiting in self.orphans_by_reporter.items():
            while waiting:
                entry = next(iter(waiting))
                if waiting[entry].observed >= orphan_horizon:
                    break
                self._drop_orphan(reporter, waiting, entry)
                self._on_bound(BOUND_ORPHAN_AGE)
        id_horizon = now - self._id_memory
        for ids in self.event_ids.values():
            while ids:
                oldest = next(iter(ids))
                if ids[oldest] >= id_horizon:
                    break
                del ids[oldest]

    def restored(self) -> None:
        """Rebuild the derived indexes after :mod:`broker.trust_image` filled the state."""
        self._deadlines = [
            (release.at + self._deadline, key)
            for key, release in self.releases.items()
            if release.awaiting and not release.missed
        ]
        heapq.heapify(self._deadlines)
        self._orphans_of = {}
        for waiting in self.orphans_by_reporter.values():
            for key, event_id in waiting:
                self._orphans_of.setdefault(key, []).append(event_id)

    def orphans(self) -> int:
        return sum(len(w) for w in self.orphans_by_reporter.values())

    def remembered_ids(self) -> int:
        return sum(len(ids) for ids in self.event_ids.values())

    def remembered_releases(self) -> int:
        return len(self.releases)

    def score(self, originator: str, partner: str, policy: Policy, now: datetime) -> TrustScore:
        return self.ledger.score(originator, partner, policy, now)
