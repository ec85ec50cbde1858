"""The trust score: its formula, its factors, and its properties over arbitrary histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

from broker.evidence import CLASSES, DAY, EvidenceClass, PairEvidence
from broker.policy import AgreementLevel, EvidenceParams, LevelTerms, Policy, Prior
from broker.trust import TrustScore, score
from enlace.core.errors import PolicyError
from schemas.vocab import Classification

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HORIZON = 365.0  # days of history
NOW = T0 + timedelta(days=HORIZON)
EXAMPLE = Policy.load(Path(__file__).resolve().parents[2] / "deploy" / "policy.yaml")
SECRET = EXAMPLE.threshold(Classification.SECRET)

POSITIVE = [c for c in CLASSES if c.positive]
NEGATIVE = [c for c in CLASSES if not c.positive]

Event = tuple[EvidenceClass, float]
Release = tuple[bool, float]

events_st = st.lists(st.tuples(st.sampled_from(CLASSES), st.floats(0.0, HORIZON)), max_size=40)
# Busy pairs: many positive events, to probe the cap.
busy_st = st.lists(
    st.tuples(st.sampled_from(POSITIVE), st.floats(HORIZON - 60, HORIZON)),
    min_size=0,
    max_size=400,
)
releases_st = st.lists(st.tuples(st.booleans(), st.floats(0.0, HORIZON)), max_size=40)
level_st = st.sampled_from(list(AgreementLevel))


def prior_of(level: AgreementLevel, policy: Policy = EXAMPLE) -> Prior:
    terms = policy.levels[level]
    return Prior(level, terms.prior_mean, terms.prior_strength)


def fold(events: list[Event], releases: list[Release], params: EvidenceParams) -> PairEvidence:
    decay = params.decay
    ev = PairEvidence.empty(T0.timestamp())
    for cls, day in events:
        ev = ev.with_evidence(cls, T0.timestamp() + day * DAY, decay)
    for outbound, day in releases:
        ev = ev.with_release(outbound=outbound, at=T0.timestamp() + day * DAY, decay=decay)
    return ev


def score_of(
    events: list[Event],
    releases: list[Release],
    level: AgreementLevel,
    policy: Policy = EXAMPLE,
    now: datetime = NOW,
) -> TrustScore:
    return score(
        fold(events, releases, policy.evidence),
        prior_of(level, policy),
        policy.evidence,
        now,
        originator="us-jiatfs",
        partner="co-ponal",
    )


def test_no_evidence_is_the_prior_mean() -> None:
    prior = prior_of(AgreementLevel.FULL)
    s = score(None, prior, EXAMPLE.evidence, NOW, originator="a", partner="b")
    assert s.value == pytest.approx(0.7)
    assert [f.name for f in s.factors] == ["prior"]


def test_the_formula_on_a_small_history() -> None:
    events = [(EvidenceClass.FEEDBACK_ACTIONED, HORIZON), (EvidenceClass.INCIDENT_LEAK, HORIZON)]
    s = score_of(events, [], AgreementLevel.FULL)
    cap = EXAMPLE.evidence.positive_cap
    alpha = 7.0 + cap * (1 - 2.718281828459045 ** (-1.0 / cap))
    beta = 3.0 + EXAMPLE.evidence.weights.incident_leak
    assert s.alpha == pytest.approx(alpha)
    assert s.beta == pytest.approx(beta)
    assert s.value == pytest.approx(alpha / (alpha + beta))


@given(events_st, releases_st, level_st)
def test_factors_add_up_to_alpha_and_beta(
    events: list[Event], releases: list[Release], level: AgreementLevel
) -> None:
    s = score_of(events, releases, level)
    prior = s.prior
    alpha, beta = prior.alpha, prior.beta
    for f in s.factors:
        if f.name in {"prior", "decay"}:
            continue
        if f.value >= 0:
            alpha += f.value
        elif f.name == "positive_cap":
            alpha += f.value  # the cap takes back part of the positive evidence
        else:
            beta -= f.value
    assert s.alpha == pytest.approx(alpha, rel=1e-9, abs=1e-9)
    assert s.beta == pytest.approx(beta, rel=1e-9, abs=1e-9)


@given(events_st, releases_st, level_st)
def test_scores_stay_in_the_unit_interval(
    events: list[Event], releases: list[Release], level: AgreementLevel
) -> None:
    assert 0.0 < score_of(events, releases, level).value < 1.0


@given(events_st, releases_st, level_st, st.sampled_from(NEGATIVE), st.floats(0.0, HORIZON))
def test_negative_evidence_never_raises_a_score(
    events: list[Event],
    releases: list[Release],
    level: AgreementLevel,
    cls: EvidenceClass,
    day: float,
) -> None:
    before = score_of(events, releases, level).value
    after = score_of([*events, (cls, day)], releases, level).value
    assert after <= before + 1e-12


@given(events_st, releases_st, level_st, st.sampled_from(POSITIVE), st.floats(0.0, HORIZON))
def test_positive_evidence_never_lowers_a_score(
    events: list[Event],
    releases: list[Release],
    level: AgreementLevel,
    cls: EvidenceClass,
    day: float,
) -> None:
    before = score_of(events, releases, level).value
    after = score_of([*events, (cls, day)], releases, level).value
    assert after >= before - 1e-12


@given(events_st, releases_st, level_st, st.floats(0.0, HORIZON))
def test_reciprocity_rewards_what_p_shares_back(
    events: list[Event], releases: list[Release], level: AgreementLevel, day: float
) -> None:
    base = score_of(events, releases, level).value
    assert score_of(events, [*releases, (False, day)], level).value >= base - 1e-12  # P->O
    assert score_of(events, [*releases, (True, day)], level).value <= base + 1e-12  # O->P


@given(events_st, releases_st, level_st)
def test_with_no_new_evidence_the_score_returns_to_the_prior(
    events: list[Event], releases: list[Release], level: AgreementLevel
) -> None:
    # 40 negative half-lives: every piece of evidence weighs less than 1e-11 of itself.
    later = NOW + timedelta(days=40 * EXAMPLE.evidence.negative_half_life_days)
    s = score_of(events, releases, level, now=later)
    assert s.value == pytest.approx(s.prior.mean, abs=1e-6)


@given(busy_st, releases_st, level_st)
def test_one_leak_drops_any_partner_below_secret_at_once(
    events: list[Event], releases: list[Release], level: AgreementLevel
) -> None:
    leaked = score_of([*events, (EvidenceClass.INCIDENT_LEAK, HORIZON)], releases, level)
    assert leaked.value < SECRET


@st.composite
def valid_policies(draw: st.DrawFn) -> Policy:
    """Policies with arbitrary prior, cap, leak weight and reciprocity that pass validation."""
    mean, strength = draw(st.floats(0.01, 0.79)), draw(st.floats(0.5, 60.0))
    try:
        return Policy.model_validate(
            {
                "levels": {"full": LevelTerms(prior_mean=mean, prior_strength=strength)},
                "evidence": {
                    "positive_cap": draw(st.floats(1.0, 200.0)),
                    "weights": {"incident_leak": draw(st.floats(0.0, 60.0))},
                    "reciprocity": {"max_weight": draw(st.floats(0.0, 10.0))},
                },
            }
        )
    except PolicyError:
        reject()


shared_back_st = st.lists(st.floats(HORIZON - 30, HORIZON).map(lambda d: (False, d)), max_size=200)


@given(valid_policies(), busy_st, shared_back_st)
def test_any_valid_policy_keeps_the_leak_guarantee(
    policy: Policy, events: list[Event], releases: list[Release]
) -> None:
    leaked = score_of(
        [*events, (EvidenceClass.INCIDENT_LEAK, HORIZON)], releases, AgreementLevel.FULL, policy
    )
    assert leaked.value < policy.threshold(Classification.SECRET)


def test_agreement_levels_with_no_evidence() -> None:
    reached = {level: EXAMPLE.reached(prior_of(level).mean) for level in AgreementLevel}
    assert reached[AgreementLevel.FULL] is Classification.CONFIDENTIAL
    assert reached[AgreementLevel.STANDARD] is Classification.RESTRICTED
    assert reached[AgreementLevel.LIMITED] is Classification.UNCLASSIFIED
    assert not EXAMPLE.levels[AgreementLevel.NONE].categories


def test_decay_factor_reports_the_time_since_the_last_evidence() -> None:
    s = score_of([(EvidenceClass.RECEIPT_ON_TIME, HORIZON - 30)], [], AgreementLevel.STANDARD)
    decay = s.factor("decay")
    assert decay is not None
    assert decay.value == pytest.approx(30.0)
    assert "positive x0.500" in decay.note
