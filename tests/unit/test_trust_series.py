"""A pair's score over time (``broker.trust_series``): each sample is the score the ledger
rebuilt at that time gives, samples are in time order, and every marked piece of evidence
in range is marked once."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.evidence import EvidenceClass
from broker.ledger import ObservedEvent, ObservedRelease, build_ledger
from broker.policy import Policy
from broker.trust_series import (
    JUST_BEFORE,
    MAX_SAMPLES,
    default_step,
    grid,
    series_from_records,
)
from broker.trust_source import read_records
from schemas.vocab import Classification, TrustEventKind

ROOT = Path(__file__).resolve().parents[2]
POLICY = Policy.load(ROOT / "deploy" / "policy.yaml")
EVENTS = read_records(Path(__file__).with_name("data") / "trust_events.jsonl")
O, P, OTHER = "us-jiatfs", "pa-senafront", "co-ponal"  # noqa: E741 - the README names them O, P
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEADLINE = timedelta(minutes=POLICY.evidence.receipt_deadline_minutes)
Record = ObservedEvent | ObservedRelease


def ledger_score(records: list[Record], at: datetime) -> float:
    return build_ledger(records, POLICY, at).score(O, P, POLICY, at).value


# -- a random history of the pair, with some noise about other pairs ---------------------------

minutes = st.integers(0, 60 * 24 * 40)  # within 40 days of T0


@st.composite
def histories(draw: st.DrawFn) -> list[Record]:
    records: list[Record] = []
    for n in range(draw(st.integers(0, 25))):
        released = T0 + timedelta(minutes=draw(minutes))
        bulletin = f"b{n}"
        records.append(ObservedRelease(O, P, released, bulletin))
        receipt = draw(st.none() | st.integers(0, 3 * DEADLINE.seconds // 60))
        if receipt is not None:
            at = released + timedelta(minutes=receipt)
            records.append(ObservedEvent(TrustEventKind.RECEIPT, P, O, at, bulletin))
        feedback = draw(
            st.none()
            | st.sampled_from(
                [
                    TrustEventKind.FEEDBACK_ACTIONED,
                    TrustEventKind.FEEDBACK_USEFUL,
                    TrustEventKind.FEEDBACK_NOT_USEFUL,
                ]
            )
        )
        if feedback is not None:
            at = released + timedelta(minutes=draw(st.integers(1, 600)))
            records.append(ObservedEvent(feedback, P, O, at, bulletin))
    back = draw(st.lists(minutes, max_size=15))
    records.extend(ObservedRelease(P, O, T0 + timedelta(minutes=m)) for m in back)
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(
            st.sampled_from(
                [
                    TrustEventKind.INCIDENT_LEAK,
                    TrustEventKind.INCIDENT_MISHANDLING,
                    TrustEventKind.INCIDENT_CORRUPTION,
                ]
            )
        )
        records.append(ObservedEvent(kind, O, P, T0 + timedelta(minutes=draw(minutes))))
    # Noise: another partner's history and P's incident against O (the pair P -> O).
    at = T0 + timedelta(minutes=draw(minutes))
    records.append(ObservedRelease(O, OTHER, at, "noise"))
    records.append(ObservedEvent(TrustEventKind.FEEDBACK_ACTIONED, OTHER, O, at, "noise"))
    records.append(ObservedEvent(TrustEventKind.INCIDENT_LEAK, P, O, at))
    # As a file holds them, in time order (build_ledger spends claims in file order).
    return sorted(records, key=_when)


def _when(record: Record) -> datetime:
    return record.released_at if isinstance(record, ObservedRelease) else record.occurred_at


ranges = st.tuples(st.integers(0, 60 * 24 * 30), st.integers(60, 60 * 24 * 20)).map(
    lambda r: (T0 + timedelta(minutes=r[0]), T0 + timedelta(minutes=r[0] + r[1]))
)


def expected_marks(records: list[Record], since: datetime, until: datetime) -> Counter[object]:
    """What should be marked, worked out from the records as of ``until``."""
    marks: Counter[object] = Counter()
    released = {r.bulletin_id: r.released_at for r in records if isinstance(r, ObservedRelease)}
    receipted: set[str | None] = set()
    for r in records:
        if not isinstance(r, ObservedEvent) or r.occurred_at > until:
            continue
        if r.kind is TrustEventKind.RECEIPT:
            receipted.add(r.bulletin_id)
            late = r.occurred_at - released[r.bulletin_id] > DEADLINE
            if late and r.occurred_at >= since:
                marks[EvidenceClass.RECEIPT_LATE, r.occurred_at] += 1
        elif r.occurred_at >= since and (
            ((r.reporter, r.subject) == (P, O) and r.kind.value.startswith("FEEDBACK"))
            or ((r.reporter, r.subject) == (O, P) and r.kind.value.startswith("INCIDENT"))
        ):
            marks[EvidenceClass(r.kind.value.lower()), r.occurred_at] += 1
    for r in records:
        if isinstance(r, ObservedRelease) and (r.originator, r.partner) == (O, P):
            due = r.released_at + DEADLINE
            if r.bulletin_id not in receipted and since <= due <= until:
                marks[EvidenceClass.RECEIPT_MISSING, due] += 1
    return marks


@settings(max_examples=60, deadline=None)
@given(histories(), ranges)
def test_every_sample_is_the_score_of_the_ledger_rebuilt_at_its_time(
    records: list[Record], span: tuple[datetime, datetime]
) -> None:
    since, until = span
    series = series_from_records(records, POLICY, O, P, since=since, until=until)
    times = [s.at for s in series.samples]
    assert times == sorted(set(times))
    assert times[0] == since
    assert times[-1] == until
    for sample in series.samples[:: max(1, len(series.samples) // 15)] + series.samples[-1:]:
        assert sample.score == pytest.approx(ledger_score(records, sample.at), abs=1e-9)
        assert sample.reached is POLICY.reached(sample.score)
    for mark in series.marks:
        assert mark.score == pytest.approx(ledger_score(records, mark.at), abs=1e-9)
        assert mark.at in times


@settings(max_examples=60, deadline=None)
@given(histories(), ranges)
def test_every_marked_event_in_range_is_marked_once(
    records: list[Record], span: tuple[datetime, datetime]
) -> None:
    since, until = span
    series = series_from_records(records, POLICY, O, P, since=since, until=until)
    assert Counter((m.cls, m.at) for m in series.marks) == expected_marks(records, since, until)
    assert [m.at for m in series.marks] == sorted(m.at for m in series.marks)


def test_the_example_history_ends_where_trust_explain_says() -> None:
    since, until = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)
    series = series_from_records(EVENTS, POLICY, O, "do-dncd", since=since, until=until)
    assert round(series.samples[-1].score, 3) == 0.462  # the README's `trust explain`
    leaks = [m for m in series.marks if m.cls is EvidenceClass.INCIDENT_LEAK]
    assert len(leaks) == 1
    before = next(s for s in series.samples if s.at == leaks[0].at - JUST_BEFORE)
    assert before.score - leaks[0].score > 0.2  # the drop is drawn as a drop
    assert before.reached is Classification.SECRET
    assert series.samples[-1].reached is Classification.RESTRICTED


def test_a_missing_receipt_a_late_one_replaces_is_marked_late() -> None:
    released = T0 + timedelta(hours=1)
    late = released + DEADLINE + timedelta(minutes=30)
    records: list[Record] = [
        ObservedRelease(O, P, released, "b"),
        ObservedEvent(TrustEventKind.RECEIPT, P, O, late, "b"),
    ]
    early = series_from_records(records, POLICY, O, P, since=T0, until=late - timedelta(minutes=1))
    assert [m.cls for m in early.marks] == [EvidenceClass.RECEIPT_MISSING]
    after = series_from_records(records, POLICY, O, P, since=T0, until=late + timedelta(hours=1))
    assert [(m.cls, m.at) for m in after.marks] == [(EvidenceClass.RECEIPT_LATE, late)]


def test_no_history_is_the_prior_throughout() -> None:
    series = series_from_records([], POLICY, O, P, since=T0, until=T0 + timedelta(days=1))
    assert {round(s.score, 6) for s in series.samples} == {0.7}
    assert series.marks == ()
    assert series.thresholds[0] == (Classification.UNCLASSIFIED, 0.0)
    assert series.thresholds[-1] == (Classification.SECRET, 0.8)


def test_the_step_keeps_a_range_within_the_sample_budget() -> None:
    assert default_step(T0, T0 + timedelta(hours=2)) == timedelta(minutes=1)
    assert default_step(T0, T0 + timedelta(days=365)) == timedelta(hours=12)
    for days in (0.01, 1, 30, 365, 3650, 36500):
        until = T0 + timedelta(days=days)
        step = default_step(T0, until)
        assert len(grid(T0, until, step)) <= MAX_SAMPLES or step == timedelta(days=7)
    assert grid(T0, T0, timedelta(hours=1)) == [T0]
    assert grid(T0, T0 + timedelta(minutes=90), timedelta(hours=1))[-1] == T0 + timedelta(
        minutes=90
    )
    with pytest.raises(ValueError, match="positive"):
        grid(T0, T0 + timedelta(days=1), timedelta(0))


def test_until_before_since_is_refused() -> None:
    with pytest.raises(ValueError, match="before since"):
        series_from_records([], POLICY, O, P, since=T0, until=T0 - timedelta(seconds=1))
