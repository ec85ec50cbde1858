"""The trust ledger: the live evidence of every directed pair, folded in O(1) per event.

The ledger is a small mutable state object owned by one task (the router, or a command that
replays a file). Its values are immutable :class:`PairEvidence`, and scoring stays pure:
:meth:`TrustLedger.score` just looks the pair up and calls :func:`broker.trust.score`.
:func:`build_ledger` builds a ledger from recorded releases and trust events the way the
router does live: receipts judged against their release time, missing receipts after the deadline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from broker.claims import Bucket, ClaimBudget
from broker.evidence import (
    Decay,
    Evidence,
    EvidenceClass,
    PairEvidence,
    classify_receipt,
    evidence_from_event,
)
from broker.policy import Policy
from broker.trust import TrustScore, score
from schemas.vocab import TrustEventKind

Pair = tuple[str, str]


class TrustLedger:
    """Decayed evidence per directed pair (originator, partner).

    With a :class:`ClaimBudget` (as :meth:`for_policy` builds it), a partner's claims about
    itself count only as far as the pair's budget allows.
    """

    def __init__(
        self,
        decay: Decay,
        claims: ClaimBudget | None = None,
        claim_weights: dict[EvidenceClass, float] | None = None,
    ) -> None:
        self._decay = decay
        self._claims = claims
        self._claim_weights = claim_weights or {}
        self._pairs: dict[Pair, PairEvidence] = {}

    @classmethod
    def for_policy(cls, policy: Policy) -> TrustLedger:
        ev = policy.evidence
        budget = ClaimBudget(ev.claims.rate_per_day, ev.claims.burst)
        weights = {c: ev.weights.of(c) for c in EvidenceClass if c.claim}
        return cls(ev.decay, budget, weights)

    def add(self, evidence: Evidence) -> float:
        """Fold one piece of evidence into its pair; returns the fraction of it that counted
        (below 1 only for a claim beyond the pair's claim budget)."""
        pair = (evidence.originator, evidence.partner)
        at = evidence.at.timestamp()
        amount = 1.0
        if self._claims is not None and evidence.cls.claim:
            amount = self._claims.spend(pair, self._claim_weights.get(evidence.cls, 1.0), at)
            if amount <= 0.0:
                return 0.0
        current = self._pairs.get(pair) or PairEvidence.empty(at)
        self._pairs[pair] = current.with_evidence(evidence.cls, at, self._decay, amount)
        return amount

    def retract(self, evidence: Evidence) -> None:
        """Take back evidence added before (a missing receipt its late receipt replaces).
        Never a claim: what the claim budget let through stays spent."""
        pair = (evidence.originator, evidence.partner)
        current = self._pairs.get(pair)
        if current is not None and not evidence.cls.claim:
            at = evidence.at.timestamp()
            self._pairs[pair] = current.with_evidence(evidence.cls, at, self._decay, -1.0)

    def record_missing_receipt(
        self, originator: str, partner: str, at: datetime, bulletin_id: str | None = None
    ) -> None:
        """The receipt deadline for a release O→P passed without a receipt."""
        self.add(Evidence(originator, partner, EvidenceClass.RECEIPT_MISSING, at, bulletin_id))

    def record_release(self, originator: str, partner: str, at: datetime) -> None:
        """Count one release O→P (full or tearline) on both sides, for reciprocity."""
        ts = at.timestamp()
        if self._claims is not None:
            self._claims.open((originator, partner), ts)
        out = self._pairs.get((originator, partner)) or PairEvidence.empty(ts)
        self._pairs[originator, partner] = out.with_release(outbound=True, at=ts, decay=self._decay)
        back = self._pairs.get((partner, originator)) or PairEvidence.empty(ts)
        self._pairs[partner, originator] = back.with_release(
            outbound=False, at=ts, decay=self._decay
        )

    def export(self) -> tuple[dict[Pair, PairEvidence], dict[Pair, Bucket]]:
        """Every pair's evidence and claim bucket (for a snapshot)."""
        buckets = self._claims.buckets() if self._claims is not None else {}
        return dict(self._pairs), buckets

    def load(self, pairs: dict[Pair, PairEvidence], buckets: dict[Pair, Bucket]) -> None:
        """Replace the state with a snapshot's (see :meth:`export`)."""
        self._pairs = dict(pairs)
        if self._claims is not None:
            self._claims.load(buckets)

    def evidence(self, originator: str, partner: str) -> PairEvidence | None:
        return self._pairs.get((originator, partner))

    def pairs(self) -> Iterator[Pair]:
        return iter(self._pairs)

    def score(self, originator: str, partner: str, policy: Policy, now: datetime) -> TrustScore:
        """P's score in O's eyes at ``now``, under the agreement the policy sets for the pair."""
        return score(
            self._pairs.get((originator, partner)),
            policy.agreement(originator, partner).prior,
            policy.evidence,
            now,
            originator=originator,
            partner=partner,
        )


@dataclass(frozen=True, slots=True)
class ObservedEvent:
    """A trust event as recorded. ``released_at``: when O released the bulletin to P, if known."""

    kind: TrustEventKind
    reporter: str
    subject: str
    occurred_at: datetime
    bulletin_id: str | None = None
    released_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ObservedRelease:
    """The router released a bulletin (full or tearline) from ``originator`` to ``partner``."""

    originator: str
    partner: str
    released_at: datetime
    bulletin_id: str | None = None


def build_ledger(
    records: Iterable[ObservedEvent | ObservedRelease], policy: Policy, now: datetime
) -> TrustLedger:
    """Build the ledger as of ``now`` from recorded releases and events (later ones ignored).

    A RECEIPT is judged on time or late against its release (``released_at`` on the event, or
    a recorded release of the same bulletin to the reporter); a receipt with no known release
    counts as on time. A release with a bulletin id and no receipt by the deadline counts as a
    missing receipt at the deadline, if the deadline is before ``now``.
    """
    ledger = TrustLedger.for_policy(policy)
    deadline = timedelta(minutes=policy.evidence.receipt_deadline_minutes)
    past = [r for r in records if _when(r) <= now]
    releases: dict[tuple[str, str, str], datetime] = {}
    for record in past:
        if isinstance(record, ObservedRelease):
            ledger.record_release(record.originator, record.partner, record.released_at)
            if record.bulletin_id is not None:
                releases[record.originator, record.partner, record.bulletin_id] = record.released_at
    receipted: set[tuple[str, str, str]] = set()
    for record in past:
        if isinstance(record, ObservedRelease):
            continue
        receipt_class = EvidenceClass.RECEIPT_ON_TIME
        if record.kind is TrustEventKind.RECEIPT and record.bulletin_id is not None:
            key = (record.subject, record.reporter, record.bulletin_id)
            receipted.add(key)
            released_at = record.released_at or releases.get(key)
            if released_at is not None:
                receipt_class = classify_receipt(released_at, record.occurred_at, deadline)
        evidence = evidence_from_event(
            record.kind,
            record.reporter,
            record.subject,
            record.occurred_at,
            bulletin_id=record.bulletin_id,
            receipt_class=receipt_class,
        )
        if evidence is not None:
            ledger.add(evidence)
    for (originator, partner, bulletin_id), released_at in releases.items():
        due = released_at + deadline
        if (originator, partner, bulletin_id) not in receipted and due <= now:
            ledger.record_missing_receipt(originator, partner, due, bulletin_id)
    return ledger


def _when(record: ObservedEvent | ObservedRelease) -> datetime:
    return record.released_at if isinstance(record, ObservedRelease) else record.occurred_at
