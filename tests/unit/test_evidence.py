"""Trust events to evidence, decayed counters, the ledger, and rebuilding it from records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.evidence import (
    DAY,
    Decay,
    Evidence,
    EvidenceClass,
    PairEvidence,
    classify_receipt,
    evidence_from_event,
)
from broker.ledger import ObservedEvent, ObservedRelease, TrustLedger, build_ledger
from broker.policy import Policy
from schemas.vocab import TrustEventKind

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DECAY = Decay(positive=30 * DAY, negative=180 * DAY, reciprocity=30 * DAY)
POLICY = Policy()


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        (TrustEventKind.RECEIPT, EvidenceClass.RECEIPT_ON_TIME),
        (TrustEventKind.FEEDBACK_ACTIONED, EvidenceClass.FEEDBACK_ACTIONED),
        (TrustEventKind.FEEDBACK_USEFUL, EvidenceClass.FEEDBACK_USEFUL),
        (TrustEventKind.FEEDBACK_NOT_USEFUL, EvidenceClass.FEEDBACK_NOT_USEFUL),
    ],
)
def test_receipts_and_feedback_are_about_the_reporter(
    kind: TrustEventKind, cls: EvidenceClass
) -> None:
    # Sent by partner co-ponal about a bulletin from us-jiatfs: evidence about co-ponal.
    evidence = evidence_from_event(kind, "co-ponal", "us-jiatfs", T0, bulletin_id="b1")
    assert evidence == Evidence("us-jiatfs", "co-ponal", cls, T0, "b1")


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        (TrustEventKind.INCIDENT_MISHANDLING, EvidenceClass.INCIDENT_MISHANDLING),
        (TrustEventKind.INCIDENT_LEAK, EvidenceClass.INCIDENT_LEAK),
        (TrustEventKind.INCIDENT_CORRUPTION, EvidenceClass.INCIDENT_CORRUPTION),
    ],
)
def test_incidents_are_about_the_subject(kind: TrustEventKind, cls: EvidenceClass) -> None:
    # Reported by originator us-jiatfs against partner do-dncd.
    evidence = evidence_from_event(kind, "us-jiatfs", "do-dncd", T0)
    assert evidence == Evidence("us-jiatfs", "do-dncd", cls, T0)
    assert not cls.positive


def test_other_and_self_reports_carry_no_evidence() -> None:
    assert evidence_from_event(TrustEventKind.OTHER, "co-ponal", "us-jiatfs", T0) is None
    assert evidence_from_event(TrustEventKind.RECEIPT, "co-ponal", "co-ponal", T0) is None


def test_receipt_class_must_be_a_receipt() -> None:
    with pytest.raises(ValueError, match="receipt class"):
        evidence_from_event(
            TrustEventKind.RECEIPT,
            "co-ponal",
            "us-jiatfs",
            T0,
            receipt_class=EvidenceClass.FEEDBACK_USEFUL,
        )


def test_receipt_deadline_is_inclusive() -> None:
    deadline = timedelta(minutes=POLICY.evidence.receipt_deadline_minutes)
    assert classify_receipt(T0, T0 + deadline, deadline) is EvidenceClass.RECEIPT_ON_TIME
    late = T0 + deadline + timedelta(seconds=1)
    assert classify_receipt(T0, late, deadline) is EvidenceClass.RECEIPT_LATE


def test_counts_halve_per_half_life_of_their_polarity() -> None:
    at = T0.timestamp()
    ev = PairEvidence.empty(at).with_evidence(EvidenceClass.RECEIPT_ON_TIME, at, DECAY)
    ev = ev.with_evidence(EvidenceClass.INCIDENT_LEAK, at, DECAY)
    ev = ev.with_release(outbound=True, at=at, decay=DECAY)
    later = ev.advanced(at + 30 * DAY, DECAY)
    assert later.count(EvidenceClass.RECEIPT_ON_TIME) == pytest.approx(0.5)
    assert later.count(EvidenceClass.INCIDENT_LEAK) == pytest.approx(0.5 ** (30 / 180))
    assert later.shared_out == pytest.approx(0.5)
    assert ev.advanced(at - DAY, DECAY) is ev  # never back in time


def test_a_late_arriving_event_counts_already_decayed() -> None:
    at = T0.timestamp()
    ev = PairEvidence.empty(at + 30 * DAY).with_evidence(EvidenceClass.FEEDBACK_USEFUL, at, DECAY)
    assert ev.as_of == at + 30 * DAY
    assert ev.count(EvidenceClass.FEEDBACK_USEFUL) == pytest.approx(0.5)


@given(
    st.lists(
        st.tuples(st.sampled_from(list(EvidenceClass)), st.floats(0, 400 * DAY)),
        min_size=1,
        max_size=30,
    ),
    st.randoms(use_true_random=False),
)
def test_folding_is_order_independent(
    events: list[tuple[EvidenceClass, float]], rnd: object
) -> None:
    at = T0.timestamp()
    shuffled = list(events)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]  # hypothesis Random
    end = at + 400 * DAY

    def fold(order: list[tuple[EvidenceClass, float]]) -> PairEvidence:
        ev = PairEvidence.empty(at)
        for cls, offset in order:
            ev = ev.with_evidence(cls, at + offset, DECAY)
        return ev.advanced(end, DECAY)

    a, b = fold(events), fold(shuffled)
    assert a.counts == pytest.approx(b.counts, rel=1e-9, abs=1e-12)


def test_ledger_counts_a_release_on_both_sides() -> None:
    ledger = TrustLedger(DECAY)
    ledger.record_release("us-jiatfs", "co-ponal", T0)
    out = ledger.evidence("us-jiatfs", "co-ponal")
    back = ledger.evidence("co-ponal", "us-jiatfs")
    assert out is not None
    assert back is not None
    assert (out.shared_out, out.shared_in) == (1.0, 0.0)
    assert (back.shared_out, back.shared_in) == (0.0, 1.0)
    assert set(ledger.pairs()) == {("us-jiatfs", "co-ponal"), ("co-ponal", "us-jiatfs")}


def test_ledger_records_missing_receipts() -> None:
    ledger = TrustLedger(DECAY)
    ledger.record_missing_receipt("us-jiatfs", "co-ponal", T0, "b1")
    ev = ledger.evidence("us-jiatfs", "co-ponal")
    assert ev is not None
    assert ev.count(EvidenceClass.RECEIPT_MISSING) == 1.0


def _receipt(at: datetime, bulletin: str, released: datetime | None = None) -> ObservedEvent:
    return ObservedEvent(TrustEventKind.RECEIPT, "co-ponal", "us-jiatfs", at, bulletin, released)


def _count(ledger: TrustLedger, cls: EvidenceClass) -> float:
    ev = ledger.evidence("us-jiatfs", "co-ponal")
    return 0.0 if ev is None else ev.count(cls)


def test_build_ledger_judges_receipts_against_their_release() -> None:
    records: list[ObservedEvent | ObservedRelease] = [
        ObservedRelease("us-jiatfs", "co-ponal", T0, "b1"),
        ObservedRelease("us-jiatfs", "co-ponal", T0, "b2"),
        _receipt(T0 + timedelta(minutes=10), "b1"),
        _receipt(T0 + timedelta(hours=3), "b2"),
        _receipt(T0 + timedelta(hours=3), "b3", released=T0 + timedelta(hours=2, minutes=30)),
        _receipt(T0 + timedelta(hours=3), "b4"),  # no known release: benefit of the doubt
    ]
    ledger = build_ledger(records, POLICY, T0 + timedelta(hours=4))
    assert _count(ledger, EvidenceClass.RECEIPT_ON_TIME) > 2.99
    assert _count(ledger, EvidenceClass.RECEIPT_LATE) > 0.99
    assert _count(ledger, EvidenceClass.RECEIPT_MISSING) == 0.0


def test_build_ledger_counts_missing_receipts_once_the_deadline_passed() -> None:
    records: list[ObservedEvent | ObservedRelease] = [
        ObservedRelease("us-jiatfs", "co-ponal", T0, "b1")
    ]
    before = build_ledger(records, POLICY, T0 + timedelta(minutes=59))
    assert _count(before, EvidenceClass.RECEIPT_MISSING) == 0.0
    after = build_ledger(records, POLICY, T0 + timedelta(minutes=61))
    assert _count(after, EvidenceClass.RECEIPT_MISSING) > 0.99


def test_build_ledger_ignores_the_future() -> None:
    records: list[ObservedEvent | ObservedRelease] = [
        ObservedEvent(TrustEventKind.INCIDENT_LEAK, "us-jiatfs", "co-ponal", T0 + timedelta(days=1))
    ]
    ledger = build_ledger(records, POLICY, T0)
    assert ledger.evidence("us-jiatfs", "co-ponal") is None
