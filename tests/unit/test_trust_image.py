"""A trust snapshot continues exactly: full history and snapshot + tail give the same scores.

The same history (releases, receipts on time, late and missing, feedback beyond the claim
budget, incidents, re-sent events, receipts for bulletins never released) is folded twice:
once from the start with no sweep until the end, once with sweeps along the way and a snapshot
(captured, encoded, decoded, restored into a fresh state) at several cut points, under a
different score-time policy after each cut. Every pair's score and factors agree to 1e-9.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import trust_image
from broker.policy import Policy
from broker.trust_state import TrustLimits, TrustState
from schemas.agency_key import AgencyKey
from schemas.key_directory import KeyDirectory
from schemas.models import TrustEvent
from schemas.vocab import TrustEventKind
from tests.samples import sample_event

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PA, CR, MX, GT = "pa-senafront", "cr-msp", "mx-sedena", "gt-pnc"
AGENCIES = (PA, CR, MX, GT)
LIMITS = TrustLimits(orphans_per_reporter=4, event_ids_per_reporter=30, releases_per_partner=25)
KEYS = KeyDirectory.from_keys([AgencyKey.generate(a, valid_from=T0 - timedelta(days=400))
                               for a in AGENCIES])  # fmt: skip


def policy(level: str = "standard", on_time: float = 1.0, cap: float = 30.0) -> Policy:
    """Score-time knobs only (agreement, a non-claim weight, the cap): same fold basis."""
    agreements = [{"between": [PA, CR], "level": level}, {"between": [MX, CR], "level": "full"}]
    return Policy.model_validate({
        "agreements": agreements,
        "evidence": {"weights": {"receipt_on_time": on_time}, "positive_cap": cap},
    })  # fmt: skip


POLICIES = (policy(), policy("full", 0.5, 12.0), policy("limited", 2.0, 50.0))


@dataclass(frozen=True)
class Released:
    at: datetime
    originator: str
    partner: str
    bulletin_id: str


@dataclass(frozen=True)
class Observed:
    at: datetime
    event: TrustEvent


Record = Released | Observed

pairs = st.sampled_from([(o, p) for o in AGENCIES for p in AGENCIES if o != p])
FEEDBACK = [TrustEventKind.FEEDBACK_ACTIONED, TrustEventKind.FEEDBACK_USEFUL,
            TrustEventKind.FEEDBACK_NOT_USEFUL]  # fmt: skip
INCIDENTS = [TrustEventKind.INCIDENT_MISHANDLING, TrustEventKind.INCIDENT_LEAK]


@st.composite
def histories(draw: st.DrawFn) -> list[Record]:
    """A time-ordered history, as the trust feed reads it (receipts after their release)."""
    records: list[Record] = []
    at = T0
    for n in range(draw(st.integers(5, 60))):
        at += timedelta(seconds=draw(st.integers(0, 6 * 3600)))
        originator, partner = draw(pairs)
        bid = str(uuid.UUID(int=n + 1))
        what = draw(st.sampled_from(["release", "release", "incident", "orphan"]))
        if what == "incident":
            event = sample_event(draw(st.sampled_from(INCIDENTS)), reporter=originator,
                                 subject=partner, bulletin_id=None, occurred_at=at)  # fmt: skip
            records.append(Observed(at, event))
            continue
        if what == "orphan":  # a receipt naming a bulletin never released to it
            event = sample_event(reporter=partner, subject=originator, bulletin_id=bid,
                                 occurred_at=at)  # fmt: skip
            records.append(Observed(at, event))
            continue
        records.append(Released(at, originator, partner, bid))
        # Receipt on time, late, or never (a missing receipt); feedback days later.
        delay = draw(st.sampled_from([None, 60, 30 * 60, 59 * 60, 61 * 60, 5 * 3600]))
        if delay is not None:
            seen = at + timedelta(seconds=delay)
            event = sample_event(reporter=partner, subject=originator, bulletin_id=bid,
                                 occurred_at=seen)  # fmt: skip
            records.append(Observed(seen, event))
            if draw(st.booleans()):  # the consumer re-sends it (same event id)
                records.append(Observed(seen + timedelta(seconds=30), event))
        for kind in draw(st.lists(st.sampled_from(FEEDBACK), max_size=2)):
            seen = at + timedelta(hours=draw(st.integers(1, 24 * 40)))
            event = sample_event(kind, reporter=partner, subject=originator, bulletin_id=bid,
                                 occurred_at=seen)  # fmt: skip
            records.append(Observed(seen, event))
    return sorted(records, key=lambda r: (r.at, isinstance(r, Observed)))


def fold(state: TrustState, record: Record) -> None:
    if isinstance(record, Released):
        state.release(record.originator, record.partner, record.bulletin_id, record.at)
    else:
        state.event(record.event, record.at, record.at)


def through_snapshot(state: TrustState, next_policy: Policy) -> TrustState:
    image = trust_image.capture(state, {("enlace.audit", 0): 7}, KEYS, T0)
    decoded = trust_image.decode(trust_image.encode(image))
    fresh = TrustState(next_policy, AGENCIES, LIMITS)
    assert trust_image.refusal(decoded, fresh, KEYS) is None
    trust_image.restore(fresh, decoded, AGENCIES)
    assert decoded.offsets == {("enlace.audit", 0): 7}
    return fresh


def assert_same_scores(a: TrustState, b: TrustState, pol: Policy, now: datetime) -> None:
    for o in AGENCIES:
        for p in AGENCIES:
            if o == p:
                continue
            x, y = a.score(o, p, pol, now), b.score(o, p, pol, now)
            assert x.value == pytest.approx(y.value, abs=1e-9), (o, p)
            assert [f.name for f in x.factors] == [f.name for f in y.factors], (o, p)
            for fx, fy in zip(x.factors, y.factors, strict=True):
                assert fx.value == pytest.approx(fy.value, abs=1e-9), (o, p, fx.name)


@settings(max_examples=150, deadline=None)
@given(history=histories(), cuts=st.lists(st.floats(0, 1), min_size=1, max_size=3),
       sweeps=st.sets(st.integers(0, 300), max_size=40))  # fmt: skip
def test_snapshot_and_tail_equal_full_history_at_every_cut(
    history: list[Record], cuts: list[float], sweeps: set[int]
) -> None:
    final = POLICIES[len(cuts) % len(POLICIES)]
    full = TrustState(final, AGENCIES, LIMITS)
    for record in history:
        fold(full, record)
    cut_at = {int(c * len(history)) for c in cuts}
    resumed = TrustState(POLICIES[0], AGENCIES, LIMITS)
    changes = 0
    for i, record in enumerate(history):
        if i in cut_at:
            changes += 1
            resumed = through_snapshot(resumed, POLICIES[changes % len(POLICIES)])
        fold(resumed, record)
        if i in sweeps:  # a live router sweeps as its watermark moves
            resumed.sweep(record.at)
    if len(history) in cut_at:
        resumed = through_snapshot(resumed, POLICIES[(changes + 1) % len(POLICIES)])
    now = (history[-1].at if history else T0) + timedelta(days=2)
    full.sweep(now)
    resumed.sweep(now)
    assert_same_scores(full, resumed, final, now)
    assert full.events_applied == resumed.events_applied


def test_a_fold_change_or_a_revoked_key_refuses_the_snapshot() -> None:
    state = TrustState(POLICIES[0], AGENCIES, LIMITS)
    state.release(PA, CR, str(uuid.uuid4()), T0)
    image = trust_image.decode(trust_image.encode(trust_image.capture(state, {}, KEYS, T0)))
    slower = Policy.model_validate({"evidence": {"negative_half_life_days": 365}})
    refused = trust_image.refusal(image, TrustState(slower, AGENCIES, LIMITS), KEYS)
    assert refused is not None
    assert refused[0] == trust_image.REFUSED_FOLD
    assert "negative_half_life_days" in refused[1]
    smaller = TrustLimits(releases_per_partner=10)
    assert trust_image.refusal(image, TrustState(POLICIES[0], AGENCIES, smaller), KEYS) is not None
    revoked = KEYS.revoke(next(iter(KEYS)).key_id)
    refused = trust_image.refusal(image, TrustState(POLICIES[0], AGENCIES, LIMITS), revoked)
    assert refused is not None
    assert refused[0] == trust_image.REFUSED_KEYS
    # A new key (a rotation) is not a reason to replay.
    rotated = KeyDirectory.from_keys([*KEYS, AgencyKey.generate(PA, valid_from=T0)])
    assert trust_image.refusal(image, TrustState(POLICIES[0], AGENCIES, LIMITS), rotated) is None


def test_entries_of_agencies_no_longer_registered_are_dropped() -> None:
    state = TrustState(POLICIES[0], AGENCIES, LIMITS)
    state.release(PA, GT, str(uuid.uuid4()), T0)
    state.release(PA, CR, str(uuid.uuid4()), T0)
    image = trust_image.capture(state, {}, KEYS, T0)
    fresh = TrustState(POLICIES[0], (PA, CR), LIMITS)
    trust_image.restore(fresh, image, (PA, CR))
    assert fresh.remembered_releases() == 1
    assert set(fresh.ledger.pairs()) == {(PA, CR), (CR, PA)}


def test_garbage_is_not_a_snapshot() -> None:
    from enlace.core.errors import ValidationError

    with pytest.raises(ValidationError):
        trust_image.decode(b"not zlib")
