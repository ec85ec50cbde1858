"""A simulated year between us-jiatfs (O) and pa-senafront (P, full agreement): P leaks once in
month 3. How fast is SECRET earned, how far does the leak drop P, and how long until P is
trusted with CONFIDENTIAL again? ``python -m tests.unit.test_trust_scenario`` prints the numbers
quoted in the README ("A simulated year")."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.evidence import Evidence, EvidenceClass
from broker.ledger import TrustLedger
from broker.policy import AgreementLevel, Policy
from schemas.vocab import Classification

POLICY_FILE = Path(__file__).resolve().parents[2] / "deploy" / "policy.yaml"
START = datetime(2026, 1, 1, tzinfo=UTC)
LEAK_DAY = 75  # 2026-03-17, month 3
ORIG, PART = "us-jiatfs", "pa-senafront"

# P's behaviour, per bulletin O releases to it (O releases 6 a day, P releases 5 a day to O).
OUT_PER_DAY, IN_PER_DAY = 6, 5
ON_TIME, LATE = 0.97, 0.025  # the rest of the receipts are missing
USEFUL, ACTIONED, NOT_USEFUL = 0.15, 0.03, 0.03


@dataclass(frozen=True)
class Day:
    day: int
    score: float
    reached: Classification | None


@dataclass(frozen=True)
class YearResult:
    days: tuple[Day, ...]  # the score at 23:59 each day
    before_leak: float
    after_leak: float
    reached_after_leak: Classification | None

    def first(self, level: Classification, *, after: int = 0) -> int | None:
        """First day (>= after) whose score reaches ``level``."""
        return next(
            (d.day for d in self.days if d.day >= after and _at_least(d.reached, level)), None
        )


def _at_least(reached: Classification | None, level: Classification) -> bool:
    return reached is not None and reached.rank >= level.rank


def simulate_year(
    policy: Policy,
    *,
    seed: int = 2026,
    leak_day: int | None = LEAK_DAY,
    days: int = 365,
    claims_everything: bool = False,
) -> YearResult:
    """``claims_everything``: P also claims FEEDBACK_ACTIONED for every bulletin it receives,
    within a minute of the release (the dishonest partner of the issue)."""
    rng = random.Random(seed)
    ledger = TrustLedger.for_policy(policy)
    history: list[Day] = []
    before = after = 0.0
    reached_after: Classification | None = None
    for day in range(days):
        base = START + timedelta(days=day)
        for n in range(OUT_PER_DAY):
            released = base + timedelta(hours=7 + 2 * n)
            ledger.record_release(ORIG, PART, released)
            roll = rng.random()
            if roll < ON_TIME:
                cls = EvidenceClass.RECEIPT_ON_TIME
            elif roll < ON_TIME + LATE:
                cls = EvidenceClass.RECEIPT_LATE
            else:
                cls = EvidenceClass.RECEIPT_MISSING
            ledger.add(Evidence(ORIG, PART, cls, released + timedelta(minutes=30)))
            roll = rng.random()
            feedback = (
                EvidenceClass.FEEDBACK_ACTIONED
                if roll < ACTIONED
                else EvidenceClass.FEEDBACK_USEFUL
                if roll < ACTIONED + USEFUL
                else EvidenceClass.FEEDBACK_NOT_USEFUL
                if roll < ACTIONED + USEFUL + NOT_USEFUL
                else None
            )
            if claims_everything:
                feedback = EvidenceClass.FEEDBACK_ACTIONED
                claimed_at = released + timedelta(minutes=1)
            else:
                claimed_at = released + timedelta(hours=6)
            if feedback is not None:
                ledger.add(Evidence(ORIG, PART, feedback, claimed_at))
        for n in range(IN_PER_DAY):
            ledger.record_release(PART, ORIG, base + timedelta(hours=8 + 2 * n))
        if day == leak_day:
            leak_at = base + timedelta(hours=21)
            before = ledger.score(ORIG, PART, policy, leak_at).value
            ledger.add(Evidence(ORIG, PART, EvidenceClass.INCIDENT_LEAK, leak_at))
            after = ledger.score(ORIG, PART, policy, leak_at).value
            reached_after = policy.reached(after)
        value = ledger.score(ORIG, PART, policy, base + timedelta(hours=23, minutes=59)).value
        history.append(Day(day, value, policy.reached(value)))
    return YearResult(tuple(history), before, after, reached_after)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load(POLICY_FILE)


@pytest.fixture(scope="module")
def year(policy: Policy) -> YearResult:
    return simulate_year(policy)


def test_secret_is_earned_within_weeks(year: YearResult) -> None:
    assert year.days[0].reached is Classification.CONFIDENTIAL
    earned = year.first(Classification.SECRET)
    assert earned is not None
    assert 7 <= earned <= 45


def test_the_leak_drops_p_below_confidential_at_once(year: YearResult) -> None:
    assert year.before_leak >= 0.8
    assert year.reached_after_leak is Classification.RESTRICTED
    assert year.days[LEAK_DAY].reached is Classification.RESTRICTED


def test_confidential_comes_back_after_months_secret_not_within_the_year(
    year: YearResult,
) -> None:
    regained = year.first(Classification.CONFIDENTIAL, after=LEAK_DAY)
    assert regained is not None
    assert 30 <= regained - LEAK_DAY <= 120
    assert year.first(Classification.SECRET, after=LEAK_DAY) is None
    # Once regained, CONFIDENTIAL holds for the rest of the year under steady good behaviour.
    assert all(_at_least(d.reached, Classification.CONFIDENTIAL) for d in year.days[regained:])


def test_without_the_leak_p_keeps_secret(policy: Policy) -> None:
    clean = simulate_year(policy, leak_day=None)
    earned = clean.first(Classification.SECRET)
    assert earned is not None
    assert all(d.reached is Classification.SECRET for d in clean.days[earned + 14 :])


def test_claiming_actioned_on_everything_climbs_no_faster_than_the_honest_partner(
    policy: Policy,
) -> None:
    honest = simulate_year(policy, leak_day=None)
    dishonest = simulate_year(policy, leak_day=None, claims_everything=True)
    honest_secret = honest.first(Classification.SECRET)
    dishonest_secret = dishonest.first(Classification.SECRET)
    assert honest_secret is not None
    assert dishonest_secret is not None
    assert dishonest_secret >= honest_secret
    # Day by day, never more than a hair above the honest partner (same receipts, and the
    # claim budget caps both partners' feedback at the same rate).
    gaps = [d.score - h.score for d, h in zip(dishonest.days, honest.days, strict=True)]
    assert max(gaps) <= 0.01


def test_a_burst_of_claims_lifts_no_fresh_partner_a_classification(policy: Policy) -> None:
    for level in ("full", "standard", "limited"):
        ledger = TrustLedger.for_policy(policy)
        prior = ledger.score(ORIG, PART, _with_level(policy, level), START)
        for n in range(20):  # 20 claims within a minute, a day after the pair's first claim
            at = START + timedelta(days=1, seconds=3 * n)
            ledger.add(Evidence(ORIG, PART, EvidenceClass.FEEDBACK_ACTIONED, at))
        after = ledger.score(ORIG, PART, _with_level(policy, level), START + timedelta(days=1))
        assert policy.reached(after.value) == policy.reached(prior.value), level
        assert after.value - prior.value < 0.1


def test_a_full_bucket_of_claims_is_all_claims_can_add_at_once(policy: Policy) -> None:
    ledger = TrustLedger.for_policy(policy)
    ledger.add(Evidence(ORIG, PART, EvidenceClass.FEEDBACK_USEFUL, START))  # opens the bucket
    later = START + timedelta(days=365)
    counted = sum(
        ledger.add(Evidence(ORIG, PART, EvidenceClass.FEEDBACK_ACTIONED, later)) for _ in range(100)
    )
    assert counted == pytest.approx(policy.evidence.claims.burst / 1.0)


def _with_level(policy: Policy, level: str) -> Policy:
    return policy.model_copy(update={"agreements": (), "default_agreement": AgreementLevel(level)})


def _since_leak(day: int | None) -> int | None:
    return None if day is None else day - LEAK_DAY


def report(policy: Policy) -> str:
    """The README table (``python -m tests.unit.test_trust_scenario``)."""
    year = simulate_year(policy)
    clean = simulate_year(policy, leak_day=None)
    regained = year.first(Classification.CONFIDENTIAL, after=LEAK_DAY)
    secret_again = simulate_year(policy, days=3 * 365).first(Classification.SECRET, after=LEAK_DAY)
    lines = [
        f"SECRET first reached: day {year.first(Classification.SECRET)}",
        f"score before leak (day {LEAK_DAY}): {year.before_leak:.3f}",
        f"score right after leak: {year.after_leak:.3f} ({year.reached_after_leak})",
        f"CONFIDENTIAL regained: day {regained} ({_since_leak(regained)} d after the leak)",
        f"SECRET regained: day {secret_again} ({_since_leak(secret_again)} d after the leak)",
        f"year-end score: {year.days[-1].score:.3f} (no leak: {clean.days[-1].score:.3f})",
    ]
    claimer = simulate_year(policy, leak_day=None, claims_everything=True)
    lines.append(
        "claims ACTIONED on everything (no leak): SECRET day "
        f"{claimer.first(Classification.SECRET)}"
        f" (honest, no leak: day {clean.first(Classification.SECRET)}), year-end "
        f"{claimer.days[-1].score:.3f} (honest {clean.days[-1].score:.3f})"
    )
    for month in range(12):
        day = (START.replace(month=month + 1) - START).days + 14
        lines.append(
            f"  {START.replace(month=month + 1):%b} 15: honest {clean.days[day].score:.3f} "
            f"claimer {claimer.days[day].score:.3f}"
        )
    for month in range(12):
        day = (START.replace(month=month + 1) - START).days + 14
        d = year.days[day]
        lines.append(f"  {START.replace(month=month + 1):%b} 15: {d.score:.3f} {d.reached}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(Policy.load(POLICY_FILE)))
