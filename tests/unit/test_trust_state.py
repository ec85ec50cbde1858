"""The router's live trust fold: which events count, once, and when receipts go missing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from broker.outputs import Source, audit_record, release_summary
from broker.policy import Policy
from broker.release import Partner, ReleaseSubject, decide
from broker.trust_view import TrustState
from schemas.models import TrustEvent
from schemas.samples import sample_event
from schemas.vocab import TrustEventKind

T0 = datetime(2026, 3, 1, tzinfo=UTC)
POLICY = Policy.model_validate({"agreements": [{"between": ["pa-senafront", "cr-msp"],
                                                "level": "standard"}]})  # fmt: skip
PA, CR, BID = "pa-senafront", "cr-msp", "6f1c7d2e-8b3a-4c5d-9e0f-1a2b3c4d5e6f"


def receipt(at: datetime, kind: TrustEventKind = TrustEventKind.RECEIPT) -> TrustEvent:
    return sample_event(kind, reporter=CR, subject=PA, bulletin_id=BID, occurred_at=at)


def factor(state: TrustState, name: str, at: datetime) -> float:
    found = state.score(PA, CR, POLICY, at).factor(name)
    return 0.0 if found is None else found.value


def test_feedback_counts_only_for_a_release_and_only_once() -> None:
    state = TrustState(POLICY)
    assert state.event(receipt(T0, TrustEventKind.FEEDBACK_ACTIONED)) is None
    state.release(PA, CR, BID, T0)  # the waiting feedback now counts
    assert factor(state, "feedback_actioned", T0) > 0
    again = state.event(receipt(T0, TrustEventKind.FEEDBACK_ACTIONED))
    assert again is None
    assert state.events_applied == 1


def test_missing_receipt_after_the_deadline_and_no_second_penalty_when_it_comes_late() -> None:
    state = TrustState(POLICY)
    state.release(PA, CR, BID, T0)
    assert state.sweep(T0 + timedelta(minutes=59)) == 0
    assert state.sweep(T0 + timedelta(minutes=61)) == 1
    assert state.sweep(T0 + timedelta(minutes=62)) == 0
    missing = factor(state, "receipt_missing", T0 + timedelta(hours=2))
    assert missing < 0
    assert state.event(receipt(T0 + timedelta(hours=2))) is None
    assert factor(state, "receipt_late", T0 + timedelta(hours=2)) == 0


def test_a_receipt_on_time_is_positive_and_stops_the_deadline() -> None:
    state = TrustState(POLICY)
    state.release(PA, CR, BID, T0)
    assert state.event(receipt(T0 + timedelta(minutes=5))) is TrustEventKind.RECEIPT
    assert state.sweep(T0 + timedelta(hours=3)) == 0
    assert factor(state, "receipt_on_time", T0 + timedelta(hours=3)) > 0


def test_old_releases_are_forgotten() -> None:
    state = TrustState(POLICY)
    state.release(PA, CR, BID, T0)
    state.event(receipt(T0 + timedelta(minutes=1)))
    state.sweep(T0 + timedelta(days=31))
    # Forgotten: feedback for it no longer finds the release (it waits as an orphan).
    late = receipt(T0 + timedelta(days=31), TrustEventKind.FEEDBACK_USEFUL)
    assert state.event(late) is None


def test_incidents_count_without_a_release() -> None:
    state = TrustState(POLICY)
    leak = sample_event(TrustEventKind.INCIDENT_LEAK, reporter=PA, subject=CR, bulletin_id=None)
    assert state.event(leak) is TrustEventKind.INCIDENT_LEAK
    assert factor(state, "incident_leak", datetime.now(UTC)) < 0


def test_audit_summary_header_round_trips() -> None:
    from broker.admission import Admitted
    from schemas import headers as hdr
    from schemas.agency_key import AgencyKey
    from schemas.envelope import seal
    from schemas.samples import sample_bulletin

    key = AgencyKey.generate(PA, valid_from=T0)
    sealed = seal(sample_bulletin(PA), key)
    admitted = Admitted(sample_bulletin(PA), sealed.value, sealed.tearline_value,
                        hdr.SignedHeaders.parse(sealed.headers))  # fmt: skip
    decision = decide(ReleaseSubject.of(admitted.bulletin), Partner(CR, "CR"), state_score(),
                      POLICY, T0)  # fmt: skip
    out = audit_record(admitted, decision, Source("t", 0, 7), T0)
    summary = release_summary(out.headers)
    assert summary is not None
    assert (summary.decision, summary.origin, summary.partner) == (decision.kind.value, PA, CR)
    assert summary.bulletin_id == admitted.bulletin.bulletin_id
    assert summary.at == T0
    assert release_summary([("enlace-audit", b"garbage")]) is None


def state_score() -> TrustState:
    return TrustState(POLICY)
