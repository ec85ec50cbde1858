"""The router's live trust fold: audit releases and verified trust events into a ledger (pure).

Rules that keep a dishonest partner from gaming, dodging or growing the trust layer (README,
"Threat model"):

* **times are observations**: an event is dated when the router observed it (the record's
  append time in Kafka, never after the router's own clock); the claimed ``occurred_at`` must
  lie within ``[observed - max_past, observed + max_future]`` or the event is refused
  (``clock_skew``). A receipt is on time when it *arrived* within the deadline of the release.
* **claims are bounded**: positive feedback goes through the ledger's claim budget
  (``broker.claims``).
* receipts and feedback count only for a bulletin the router released to the reporter, once
  per (bulletin, partner, kind); a receipt read before its release's audit record waits as an
  orphan, at most ``orphans_per_reporter`` of them per reporter and ``orphan_wait`` long;
* events name registry agencies only (``unknown_agency``), never the reporter itself
  (``self_report``); every event counts once by ``(reporter, event_id)`` (``duplicate``),
  remembered for as long as its claimed time stays acceptable and at most
  ``event_ids_per_reporter`` per reporter;
* a release with no receipt by the policy's deadline counts as a missing receipt.

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

from broker.evidence import EvidenceClass, classify_receipt, evidence_from_event
from broker.ledger import TrustLedger
from broker.policy import Policy
from broker.trust import TrustScore
from schemas.models import TrustEvent
from schemas.vocab import TrustEventKind

RELEASE_MEMORY = timedelta(days=30)

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
AFTER_MISSING = "after_missing"
# Bounds (counted when hit).
BOUND_ORPHANS = "orphans"
BOUND_ORPHAN_AGE = "orphan_age"  # an orphan waited longer than orphan_wait: dropped
BOUND_EVENT_IDS = "event_ids"
BOUND_CLAIMS = "claims"

_BULLETIN_KINDS = frozenset(
    {
        TrustEventKind.RECEIPT,
        TrustEventKind.FEEDBACK_ACTIONED,
        TrustEventKind.FEEDBACK_USEFUL,
        TrustEventKind.FEEDBACK_NOT_USEFUL,
    }
)


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
    """How far a claimed time may be from the observation, and the per-reporter bounds."""

    max_past: timedelta = timedelta(days=7)
    max_future: timedelta = timedelta(minutes=5)
    orphans_per_reporter: int = 1_000
    orphan_wait: timedelta = timedelta(minutes=5)
    event_ids_per_reporter: int = 20_000


@dataclass(frozen=True, slots=True)
class _Orphan:
    event: TrustEvent
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
        self._released: dict[ReleaseKey, datetime] = {}
        # Releases in arrival order (about time order), to forget them without a full scan.
        self._release_order: deque[tuple[datetime, ReleaseKey]] = deque()
        # Receipt deadlines as a heap: a sweep costs what expires, not what is remembered.
        self._deadlines: list[tuple[datetime, ReleaseKey]] = []
        self._awaiting_receipt: set[ReleaseKey] = set()
        # Releases already counted as a missing receipt: a receipt after that adds nothing more.
        self._missed: set[ReleaseKey] = set()
        self._counted: dict[ReleaseKey, set[TrustEventKind]] = {}
        # Per reporter, in arrival order: (release key, event id) -> the waiting event.
        self._orphans: dict[str, dict[tuple[ReleaseKey, str], _Orphan]] = {}
        self._orphans_of: dict[ReleaseKey, list[str]] = {}
        # Per reporter, in arrival order: event id -> when it was observed.
        self._event_ids: dict[str, dict[str, datetime]] = {}
        self.events_applied = 0

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
        if key in self._released or self._outside_registry(originator, partner):
            return []
        if now is not None:
            at = min(at, now)
        self._released[key] = at
        self._release_order.append((at, key))
        self._awaiting_receipt.add(key)
        heapq.heappush(self._deadlines, (at + self._deadline, key))
        self.ledger.record_release(originator, partner, at)
        counted: list[TrustEventKind] = []
        waiting = self._orphans.get(partner)
        for event_id in self._orphans_of.pop(key, ()):
            orphan = waiting.pop((key, event_id), None) if waiting is not None else None
            if orphan is not None and self._fold_released(orphan.event, key, orphan.observed):
                counted.append(orphan.event.kind)
        return counted

    # -- events --------------------------------------------------------------------------
    def event(self, event: TrustEvent, observed: datetime, now: datetime) -> Folded:  # noqa: PLR0911 - one exit per outcome reads as the rules
        """Fold one verified event observed at ``observed`` (clamped to ``now``)."""
        observed = min(observed, now)
        refused = self._refusal(event, observed)
        if refused is not None:
            return refused
        ids = self._event_ids.setdefault(event.reporter, {})
        if event.event_id in ids:
            return Folded(Outcome.IGNORED, DUPLICATE, kind=event.kind)
        kind = event.kind
        if kind not in _BULLETIN_KINDS:
            evidence = evidence_from_event(kind, event.reporter, event.subject, observed)
            if evidence is None:
                return Folded(Outcome.IGNORED, NO_EVIDENCE, kind=kind)
            self._remember(ids, event.event_id, observed)
            self.ledger.add(evidence)
            self.events_applied += 1
            return Folded(Outcome.COUNTED, kind=kind)
        assert event.bulletin_id is not None  # _refusal checked it
        key = (event.subject, event.reporter, event.bulletin_id)
        if key not in self._released:
            self._remember(ids, event.event_id, observed)
            self._hold(key, event, observed)
            return Folded(Outcome.HELD, kind=kind)
        counted = self._counted.get(key)
        if counted is not None and kind in counted:
            return Folded(Outcome.IGNORED, REPEAT, kind=kind)
        self._remember(ids, event.event_id, observed)
        if not self._fold_released(event, key, observed):
            return Folded(Outcome.IGNORED, AFTER_MISSING, kind=kind)
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
        if event.kind in _BULLETIN_KINDS and event.bulletin_id is None:
            return Folded(Outcome.REJECTED, NO_BULLETIN, f"a {event.kind} names no bulletin")
        return None

    def _outside_registry(self, *agencies: str) -> bool:
        known = self._agencies
        return known is not None and any(a not in known for a in agencies)

    def _fold_released(self, event: TrustEvent, key: ReleaseKey, observed: datetime) -> bool:
        """Count a receipt or feedback for a known release, once per kind."""
        counted = self._counted.setdefault(key, set())
        if event.kind in counted:
            return False
        counted.add(event.kind)
        receipt_class = EvidenceClass.RECEIPT_ON_TIME
        if event.kind is TrustEventKind.RECEIPT:
            self._awaiting_receipt.discard(key)
            if key in self._missed:
                return False
            receipt_class = classify_receipt(self._released[key], observed, self._deadline)
        evidence = evidence_from_event(
            event.kind,
            event.reporter,
            event.subject,
            observed,
            bulletin_id=event.bulletin_id,
            receipt_class=receipt_class,
        )
        if evidence is None:
            return False
        if self.ledger.add(evidence) < 1.0:
            self._on_bound(BOUND_CLAIMS)
        self.events_applied += 1
        return True

    def _hold(self, key: ReleaseKey, event: TrustEvent, observed: datetime) -> None:
        waiting = self._orphans.setdefault(event.reporter, {})
        waiting[key, event.event_id] = _Orphan(event, observed)
        self._orphans_of.setdefault(key, []).append(event.event_id)
        if len(waiting) > self.limits.orphans_per_reporter:
            self._drop_orphan(event.reporter, waiting, next(iter(waiting)))
            self._on_bound(BOUND_ORPHANS)

    def _drop_orphan(
        self,
        reporter: str,
        waiting: dict[tuple[ReleaseKey, str], _Orphan],
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
        self._event_ids.get(reporter, {}).pop(event_id, None)

    def _remember(self, ids: dict[str, datetime], event_id: str, observed: datetime) -> None:
        ids[event_id] = observed
        if len(ids) > self.limits.event_ids_per_reporter:
            del ids[next(iter(ids))]
            self._on_bound(BOUND_EVENT_IDS)

    # -- time ----------------------------------------------------------------------------
    def sweep(self, now: datetime) -> int:
        """Missing receipts past the deadline; forget old releases, orphans and event ids."""
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
        orphan_horizon = now - self.limits.orphan_wait
        for reporter, waiting in self._orphans.items():
            while waiting:
                entry = next(iter(waiting))
                if waiting[entry].observed >= orphan_horizon:
                    break
                self._drop_orphan(reporter, waiting, entry)
                self._on_bound(BOUND_ORPHAN_AGE)
        # An id older than this would be refused as clock_skew anyway if it came again.
        id_horizon = now - self.limits.max_past - self.limits.max_future
        for ids in self._event_ids.values():
            while ids:
                oldest = next(iter(ids))
                if ids[oldest] >= id_horizon:
                    break
                del ids[oldest]
        return missing

    def orphans(self) -> int:
        return sum(len(w) for w in self._orphans.values())

    def remembered_ids(self) -> int:
        return sum(len(ids) for ids in self._event_ids.values())

    def score(self, originator: str, partner: str, policy: Policy, now: datetime) -> TrustScore:
        return self.ledger.score(originator, partner, policy, now)
