"""Trust evidence: what a trust event says about a partner, and the decayed counters that hold it.

Evidence is always about a directed pair (originator O, partner P): how much O should trust P.
Receipts and feedback are sent by P about a bulletin from O (reporter=P, subject=O); incidents
are reported by O against P (reporter=O, subject=P). Both land on the pair (O, P).

A pair's evidence is a handful of exponentially decayed event counts, one per evidence class,
plus decayed release counts in both directions (for reciprocity), all valid at ``as_of``. Decay
is multiplicative, so a counter is advanced to any later time in O(1) and an event is folded in
O(1), in any order: ``count(t) = sum_i 2 ** (-(t - t_i) / half_life)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from schemas.vocab import TrustEventKind

_LN2 = math.log(2.0)
DAY = 86_400.0


class EvidenceClass(StrEnum):
    """What an event counts as. The value is the policy's weight key."""

    RECEIPT_ON_TIME = "receipt_on_time"
    RECEIPT_LATE = "receipt_late"
    RECEIPT_MISSING = "receipt_missing"
    FEEDBACK_ACTIONED = "feedback_actioned"
    FEEDBACK_USEFUL = "feedback_useful"
    FEEDBACK_NOT_USEFUL = "feedback_not_useful"
    INCIDENT_MISHANDLING = "incident_mishandling"
    INCIDENT_LEAK = "incident_leak"
    INCIDENT_CORRUPTION = "incident_corruption"

    @property
    def positive(self) -> bool:
        """Positive evidence raises alpha; everything else raises beta."""
        return self in _POSITIVE

    @property
    def claim(self) -> bool:
        """The partner's own word about itself in its favour: weaker evidence, rate-bounded."""
        return self in _CLAIMS


_POSITIVE = frozenset(
    {
        EvidenceClass.RECEIPT_ON_TIME,
        EvidenceClass.FEEDBACK_ACTIONED,
        EvidenceClass.FEEDBACK_USEFUL,
    }
)
_CLAIMS = frozenset({EvidenceClass.FEEDBACK_ACTIONED, EvidenceClass.FEEDBACK_USEFUL})
CLASSES: tuple[EvidenceClass, ...] = tuple(EvidenceClass)
_INDEX = {cls: i for i, cls in enumerate(CLASSES)}
POSITIVE_MASK: tuple[bool, ...] = tuple(cls.positive for cls in CLASSES)

_FEEDBACK = {
    TrustEventKind.FEEDBACK_ACTIONED: EvidenceClass.FEEDBACK_ACTIONED,
    TrustEventKind.FEEDBACK_USEFUL: EvidenceClass.FEEDBACK_USEFUL,
    TrustEventKind.FEEDBACK_NOT_USEFUL: EvidenceClass.FEEDBACK_NOT_USEFUL,
}
_INCIDENT = {
    TrustEventKind.INCIDENT_MISHANDLING: EvidenceClass.INCIDENT_MISHANDLING,
    TrustEventKind.INCIDENT_LEAK: EvidenceClass.INCIDENT_LEAK,
    TrustEventKind.INCIDENT_CORRUPTION: EvidenceClass.INCIDENT_CORRUPTION,
}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One piece of evidence about partner P in originator O's eyes."""

    originator: str
    partner: str
    cls: EvidenceClass
    at: datetime
    bulletin_id: str | None = None


def classify_receipt(
    released_at: datetime, receipt_at: datetime, deadline: timedelta
) -> EvidenceClass:
    """On time if the receipt came within the policy's deadline after the release, else late."""
    if receipt_at - released_at <= deadline:
        return EvidenceClass.RECEIPT_ON_TIME
    return EvidenceClass.RECEIPT_LATE


def evidence_from_event(
    kind: TrustEventKind,
    reporter: str,
    subject: str,
    occurred_at: datetime,
    *,
    bulletin_id: str | None = None,
    receipt_class: EvidenceClass = EvidenceClass.RECEIPT_ON_TIME,
) -> Evidence | None:
    """Map a trust event's fields to evidence, or ``None`` when it says nothing about trust.

    ``receipt_class`` is the caller's judgement of a RECEIPT (see :func:`classify_receipt`):
    only the router knows when it released the bulletin. It must only pass receipts that match
    a release it made, once per (bulletin, partner): the mapping itself cannot tell.
    Self-reports (reporter == subject) and ``OTHER`` events carry no evidence.
    """
    if reporter == subject:
        return None
    if kind is TrustEventKind.RECEIPT:
        if receipt_class not in _RECEIPT_CLASSES:
            raise ValueError(f"receipt_class must be a receipt class, not {receipt_class}")
        return Evidence(subject, reporter, receipt_class, occurred_at, bulletin_id)
    if kind in _FEEDBACK:
        return Evidence(subject, reporter, _FEEDBACK[kind], occurred_at, bulletin_id)
    if kind in _INCIDENT:
        return Evidence(reporter, subject, _INCIDENT[kind], occurred_at, bulletin_id)
    return None


_RECEIPT_CLASSES = frozenset(
    {EvidenceClass.RECEIPT_ON_TIME, EvidenceClass.RECEIPT_LATE, EvidenceClass.RECEIPT_MISSING}
)


@dataclass(frozen=True, slots=True)
class Decay:
    """Half-lives in seconds: positive and negative evidence, and the reciprocity window."""

    positive: float
    negative: float
    reciprocity: float

    def factors(self, seconds: float) -> tuple[float, float, float]:
        """Multipliers (positive, negative, reciprocity) for ``seconds`` of elapsed time."""
        if seconds <= 0.0:
            return 1.0, 1.0, 1.0
        return (
            math.exp(-_LN2 * seconds / self.positive),
            math.exp(-_LN2 * seconds / self.negative),
            math.exp(-_LN2 * seconds / self.reciprocity),
        )


@dataclass(frozen=True, slots=True)
class PairEvidence:
    """Decayed evidence about one directed pair, valid at ``as_of`` (POSIX seconds).

    ``counts`` are decayed event counts per :data:`CLASSES` (unweighted, so the policy's weights
    can change without a replay); ``shared_out`` counts releases O→P, ``shared_in`` P→O.
    """

    as_of: float
    counts: tuple[float, ...]
    shared_out: float = 0.0
    shared_in: float = 0.0

    @classmethod
    def empty(cls, at: float) -> PairEvidence:
        return cls(at, (0.0,) * len(CLASSES))

    def count(self, cls: EvidenceClass) -> float:
        return self.counts[_INDEX[cls]]

    def advanced(self, to: float, decay: Decay) -> PairEvidence:
        """The same evidence seen at a later time ``to`` (earlier times return ``self``)."""
        if to <= self.as_of:
            return self
        pos, neg, rec = decay.factors(to - self.as_of)
        counts = tuple(
            [c * pos if m else c * neg for c, m in zip(self.counts, POSITIVE_MASK, strict=True)]
        )
        return PairEvidence(to, counts, self.shared_out * rec, self.shared_in * rec)

    def with_evidence(
        self, cls: EvidenceClass, at: float, decay: Decay, amount: float = 1.0
    ) -> PairEvidence:
        """Fold in ``amount`` events (a fraction when a claim is capped) at ``at``; a
        late-arriving older event counts already decayed."""
        base = self.advanced(at, decay)
        pos, neg, _ = decay.factors(base.as_of - at)
        i = _INDEX[cls]
        counts = list(base.counts)
        # A retraction (negative amount) may leave a rounding residue below zero.
        counts[i] = max(0.0, counts[i] + amount * (pos if cls.positive else neg))
        return PairEvidence(base.as_of, tuple(counts), base.shared_out, base.shared_in)

    def with_release(self, *, outbound: bool, at: float, decay: Decay) -> PairEvidence:
        """Count one release: O→P when ``outbound``, else P→O."""
        base = self.advanced(at, decay)
        _, _, rec = decay.factors(base.as_of - at)
        if outbound:
            return PairEvidence(base.as_of, base.counts, base.shared_out + rec, base.shared_in)
        return PairEvidence(base.as_of, base.counts, base.shared_out, base.shared_in + rec)
