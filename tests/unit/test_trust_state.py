"""The router's live trust fold: which events count, once, dated by observation, bounded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from broker.outputs import Source, audit_record, release_summary
from broker.policy import Policy
from broker.release import Partner, ReleaseSubject, decide
from broker.trust_state import Folded, Outcome, TrustLimits, TrustState
from schemas.models import TrustEvent
from schemas.vocab import TrustEventKind
from tests.samples import sample_event

T0 = datetime(2026, 3, 1, tzinfo=UTC)
POLICY = Policy.model_validate({"agreements": [{"between": ["pa-senafront", "cr-msp"],
                                                "level": "standard"}]})  # fmt: skip
PA, CR, MX = "pa-senafront", "cr-msp", "mx-sedena"
AGENCIES = (PA, CR, MX)
BID = "6f1c7d2e-8b3a-4c5d-9e0f-1a2b3c4d5e6f"


def bid_of(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


def receipt(
    at: datetime, kind: TrustEventKind = TrustEventKind.RECEIPT, bulletin_id: str = BID
) -> TrustEvent:
    return sample_event(kind, reporter=CR, subject=PA, bulletin_id=bulletin_id, occurred_at=at)


def state(**limits: object) -> TrustState:
    hit: list[str] = []
    made = TrustState(POLICY, AGENCIES, TrustLimits(**limits), on_bound=hit.append)  # type: ignore[arg-type]  # test-only kwargs
    made.bounds_hit = hit  # type: ignore[attr-defined]  # the test reads what was counted
    return made


def fold(s: TrustState, event: TrustEvent, observed: datetime | None = None) -> Folded:
    at = observed or event.occurred_at
    return s.event(event, at, max(at, T0))


def factor(s: TrustState, name: str, at: datetime) -> float:
    found = s.score(PA, CR, POLICY, at).factor(name)
    return 0.0 if found is None else found.value


def test_feedback_counts_only_for_a_release_and_only_once() -> None:
    s = state()
    assert fold(s, receipt(T0, TrustEventKind.FEEDBACK_USEFUL)).outcome is Outcome.HELD
    s.release(PA, CR, BID, T0 - timedelta(days=2))  # the waiting feedback now counts
    assert factor(s, "feedback_useful", T0) > 0
    again = fold(s, receipt(T0, TrustEventKind.FEEDBACK_USEFUL))
    assert (again.outcome, again.reason) == (Outcome.IGNORED, "repeat")
    assert s.events_applied == 1


def test_missing_receipt_after_the_deadline_and_a_late_receipt_replaces_it() -> None:
    s = state()
    s.release(PA, CR, BID, T0)
    assert s.sweep(T0 + timedelta(minutes=59)) == 0
    assert s.sweep(T0 + timedelta(minutes=61)) == 1
    assert s.sweep(T0 + timedelta(minutes=62)) == 0
    assert factor(s, "receipt_missing", T0 + timedelta(hours=2)) < 0
    late = fold(s, receipt(T0 + timedelta(hours=2)))
    assert late.outcome is Outcome.COUNTED
    assert factor(s, "receipt_missing", T0 + timedelta(hours=2)) == 0
    assert factor(s, "receipt_late", T0 + timedelta(hours=2)) < 0
    # The same as if no sweep had run before the receipt was folded.
    unswept = state()
    unswept.release(PA, CR, BID, T0)
    fold(unswept, receipt(T0 + timedelta(hours=2)))
    unswept.sweep(T0 + timedelta(hours=2))
    at = T0 + timedelta(hours=3)
    assert s.score(PA, CR, POLICY, at).value == unswept.score(PA, CR, POLICY, at).value


def test_an_on_time_receipt_read_after_the_sweep_still_counts_on_time() -> None:
    s = state()
    s.release(PA, CR, BID, T0)
    assert s.sweep(T0 + timedelta(hours=5)) == 1  # the router lagged behind the receipts
    fold(s, receipt(T0 + timedelta(minutes=5)), observed=T0 + timedelta(minutes=5))
    assert factor(s, "receipt_missing", T0 + timedelta(hours=5)) == 0
    assert factor(s, "receipt_on_time", T0 + timedelta(hours=5)) > 0


def test_a_receipt_is_on_time_by_its_arrival_not_its_claimed_time() -> None:
    s = state()
    s.release(PA, CR, BID, T0)
    # Claims to have been stored a minute after the release, arrives three hours later.
    event = receipt(T0 + timedelta(minutes=1))
    assert fold(s, event, observed=T0 + timedelta(hours=3)).outcome is Outcome.COUNTED
    assert factor(s, "receipt_late", T0 + timedelta(hours=3)) < 0
    assert factor(s, "receipt_on_time", T0 + timedelta(hours=3)) == 0


def test_a_receipt_on_time_is_positive_and_stops_the_deadline() -> None:
    s = state()
    s.release(PA, CR, BID, T0)
    assert fold(s, receipt(T0 + timedelta(minutes=5))).kind is TrustEventKind.RECEIPT
    assert s.sweep(T0 + timedelta(hours=3)) == 0
    assert factor(s, "receipt_on_time", T0 + timedelta(hours=3)) > 0


def test_claimed_times_outside_the_window_are_refused_as_clock_skew() -> None:
    s = state()
    s.release(PA, CR, BID, T0)
    future = s.event(receipt(T0 + timedelta(days=30)), T0 + timedelta(minutes=1), T0)
    past = s.event(receipt(T0 - timedelta(days=8)), T0 + timedelta(minutes=1), T0)
    assert (future.outcome, future.reason) == (Outcome.REJECTED, "clock_skew")
    assert (past.outcome, past.reason) == (Outcome.REJECTED, "clock_skew")
    assert s.events_applied == 0


def test_no_event_moves_the_evidence_clock_past_now() -> None:
    s = state()
    now = T0
    # The broker's clock ran ahead of the router's: the observation is clamped to now.
    leak = sample_event(TrustEventKind.INCIDENT_LEAK, reporter=PA, subject=CR, bulletin_id=None,
                        occurred_at=T0 + timedelta(minutes=4))  # fmt: skip
    assert s.event(leak, T0 + timedelta(minutes=4), now).outcome is Outcome.COUNTED
    s.release(PA, CR, BID, T0 + timedelta(hours=1), now)
    evidence = s.ledger.evidence(PA, CR)
    assert evidence is not None
    assert evidence.as_of <= now.timestamp()


def test_incidents_count_without_a_release_and_once_per_event_id() -> None:
    s = state()
    leak = sample_event(TrustEventKind.INCIDENT_LEAK, reporter=PA, subject=CR, bulletin_id=None,
                        occurred_at=T0)  # fmt: skip
    assert fold(s, leak).kind is TrustEventKind.INCIDENT_LEAK
    once = factor(s, "incident_leak", T0)
    again = fold(s, leak, observed=T0 + timedelta(minutes=1))
    assert (again.outcome, again.reason) == (Outcome.IGNORED, "duplicate")
    assert factor(s, "incident_leak", T0) == once < 0


def test_events_about_unknown_agencies_or_oneself_are_refused() -> None:
    s = state()
    stranger = sample_event(TrustEventKind.INCIDENT_LEAK, reporter=PA, subject="zz-nobody",
                            bulletin_id=None, occurred_at=T0)  # fmt: skip
    # The model refuses it when decoding; the fold refuses it too, whatever built it.
    itself = stranger.model_copy(update={"subject": PA})
    no_bulletin = receipt(T0).model_copy(update={"bulletin_id": None})
    assert fold(s, stranger).reason == "unknown_agency"
    assert fold(s, itself).reason == "self_report"
    assert fold(s, no_bulletin).reason == "no_bulletin"
    assert list(s.ledger.pairs()) == []


def test_releases_between_agencies_outside_the_registry_are_not_kept() -> None:
    s = state()
    assert s.release("zz-other", PA, BID, T0) == []
    assert list(s.ledger.pairs()) == []


def test_orphans_are_bounded_per_reporter_and_by_age() -> None:
    s = state(orphans_per_reporter=10)
    for n in range(25):
        at = T0 + timedelta(seconds=n)
        fold(s, receipt(at, bulletin_id=bid_of(n)))
    assert s.orphans() == 10
    assert s.bounds_hit.count("orphans") == 15  # type: ignore[attr-defined]
    # The newest ten wait; an evicted one's release finds nothing to count.
    assert s.release(PA, CR, bid_of(3), T0) == []
    assert s.release(PA, CR, bid_of(24), T0) == [TrustEventKind.RECEIPT]
    s.sweep(T0 + timedelta(minutes=10))
    assert s.orphans() == 0


def test_event_ids_are_bounded_per_reporter_and_forgotten_after_the_window() -> None:
    s = state(event_ids_per_reporter=100)
    for n in range(150):
        leak = sample_event(TrustEventKind.INCIDENT_MISHANDLING, reporter=PA, subject=CR,
                            bulletin_id=None, occurred_at=T0)  # fmt: skip
        fold(s, leak, observed=T0 + timedelta(seconds=n))
    assert s.remembered_ids() == 100
    assert s.bounds_hit.count("event_ids") == 50  # type: ignore[attr-defined]
    s.sweep(T0 + timedelta(days=8))
    assert s.remembered_ids() == 0


def test_a_burst_of_claims_beyond_the_budget_is_counted_as_a_bound() -> None:
    s = state()
    for n in range(20):
        bid = bid_of(n)
        s.release(PA, CR, bid, T0)
        fold(s, receipt(T0 + timedelta(days=1, seconds=n), TrustEventKind.FEEDBACK_ACTIONED,
                        bid))  # fmt: skip
    budget = POLICY.evidence.claims
    counted = factor(s, "feedback_actioned", T0 + timedelta(days=1))
    # The bucket opened at the first release and held a day's accrual, no more.
    assert counted <= min(budget.burst, budget.rate_per_day * (1.0 + 20 / 86_400))
    assert s.bounds_hit.count("claims") >= 19  # type: ignore[attr-defined]


@given(
    st.lists(
        st.tuples(
            st.integers(0, 4),  # which bulletin
            st.sampled_from(list(TrustEventKind)),
            st.integers(-10 * 86_400, 86_400),  # claimed offset from observation, seconds
            st.integers(0, 3 * 86_400),  # observation, seconds after T0
            st.booleans(),  # released first
        ),
        max_size=40,
    )
)
def test_state_stays_bounded_and_the_clock_never_passes_now(
    steps: list[tuple[int, TrustEventKind, int, int, bool]],
) -> None:
    s = state(orphans_per_reporter=3, event_ids_per_reporter=5)
    now = T0 + timedelta(days=3)
    for which, kind, skew, seen, released in steps:
        bid = bid_of(which)
        if released:
            s.release(PA, CR, bid, T0 + timedelta(seconds=seen), now)
        observed = T0 + timedelta(seconds=seen)
        is_incident = kind.value.startswith("INCIDENT")
        event = sample_event(kind, reporter=PA if is_incident else CR,
                             subject=CR if is_incident else PA, bulletin_id=bid,
                             occurred_at=observed + timedelta(seconds=skew))  # fmt: skip
        result = s.event(event, observed, now)
        if abs(skew) > 7 * 86_400 or skew > 300:
            assert result.outcome is Outcome.REJECTED
        assert s.orphans() <= 3
        assert s.remembered_ids() <= 10  # two reporters
    for pair in s.ledger.pairs():
        evidence = s.ledger.evidence(*pair)
        assert evidence is not None
        assert evidence.as_of <= now.timestamp()


def test_audit_summary_header_round_trips() -> None:
    from broker.admission import Admitted
    from schemas import headers as hdr
    from schemas.agency_key import AgencyKey
    from schemas.envelope import seal
    from tests.samples import sample_bulletin

    key = AgencyKey.generate(PA, valid_from=T0)
    sealed = seal(sample_bulletin(PA), key)
    admitted = Admitted(sample_bulletin(PA), sealed.value, sealed.tearline_value,
                        hdr.SignedHeaders.parse(sealed.headers))  # fmt: skip
    decision = decide(ReleaseSubject.of(admitted.bulletin), Partner(CR, "CR"), state(),
                      POLICY, T0)  # fmt: skip
    out = audit_record(admitted, decision, Source("t", 0, 7), T0)
    summary = release_summary(out.headers)
    assert summary is not None
    assert (summary.decision, summary.origin, summary.partner) == (decision.kind.value, PA, CR)
    assert summary.bulletin_id == admitted.bulletin.bulletin_id
    assert summary.at == T0
    assert release_summary([("enlace-audit", b"garbage")]) is None
    assert release_summary([("enlace-audit", b"FULL|a|b|c|99999999999999999999")]) is None
