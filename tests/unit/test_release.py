"""The release decision: every rule, and that the first matching rule wins."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.evidence import Evidence, EvidenceClass
from broker.ledger import TrustLedger
from broker.policy import Policy
from broker.release import Partner, ReleaseSubject, Rule, decide
from broker.trust import TrustScore
from schemas.vocab import Category, Caveat, Classification, ReleaseKind, Tlp
from tests.samples import fixed_bulletin

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POLICY_FILE = Path(__file__).resolve().parents[2] / "deploy" / "policy.yaml"

US = Partner("us-jiatfs", "US")
CO = Partner("co-ponal", "CO")
CR = Partner("cr-msp", "CR")
PA = Partner("pa-senafront", "PA")
BZ = Partner("bz-bdf", "BZ")
GT = Partner("gt-pnc", "GT")
MX = Partner("mx-sedena", "MX")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load(POLICY_FILE)


def subject(**changes: object) -> ReleaseSubject:
    base = ReleaseSubject(
        bulletin_id="0b8f6f0e-3f55-4d8e-9a47-6f1f3c0f2a11",
        origin="us-jiatfs",
        origin_country="US",
        category=Category.DRUG_TRAFFICKING,
        classification=Classification.CONFIDENTIAL,
        tearline_classification=Classification.UNCLASSIFIED,
        tlp=Tlp.AMBER,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]  # test factory: any field


def fixed(policy: Policy, origin: str, partner: str, value: float) -> TrustScore:
    """A score pinned at ``value`` (the rules under test read only the value)."""
    prior = policy.agreement(origin, partner).prior
    return TrustScore(origin, partner, value, value * 10, (1 - value) * 10, prior, NOW)


def test_partner_is_originator_gets_nothing(policy: Policy) -> None:
    decision = decide(subject(), US, fixed(policy, "us-jiatfs", "us-jiatfs", 1.0), policy, NOW)
    assert (decision.kind, decision.rule) == (ReleaseKind.WITHHELD, Rule.ORIGINATOR)
    assert decision.score is None


def test_originator_rule_comes_before_expiry(policy: Policy) -> None:
    expired = subject(valid_until=NOW - timedelta(days=1))
    assert decide(expired, US, TrustLedger.for_policy(policy), policy, NOW).rule == Rule.ORIGINATOR


def test_expired_bulletin_is_withheld_even_from_a_trusted_partner(policy: Policy) -> None:
    s = subject(valid_until=NOW - timedelta(seconds=1))
    decision = decide(s, CO, fixed(policy, "us-jiatfs", "co-ponal", 1.0), policy, NOW)
    assert (decision.kind, decision.rule) == (ReleaseKind.WITHHELD, Rule.EXPIRED)


def test_valid_until_now_is_still_valid(policy: Policy) -> None:
    decision = decide(
        subject(valid_until=NOW), CO, fixed(policy, "us-jiatfs", "co-ponal", 0.7), policy, NOW
    )
    assert decision.rule == Rule.SCORE_FULL


@pytest.mark.parametrize(
    ("releasable_to", "partner", "rule"),
    [
        (frozenset({"CR"}), CO, Rule.NOT_RELEASABLE_TO),
        (frozenset({"cr-msp", "PA"}), CO, Rule.NOT_RELEASABLE_TO),
        (frozenset({"CO"}), CO, Rule.SCORE_FULL),  # by country
        (frozenset({"co-ponal"}), CO, Rule.SCORE_FULL),  # by agency id
        (frozenset(), CO, Rule.SCORE_FULL),  # empty: as trust allows
    ],
)
def test_releasable_to_matches_id_or_country(
    policy: Policy, releasable_to: frozenset[str], partner: Partner, rule: Rule
) -> None:
    s = subject(releasable_to=releasable_to)
    decision = decide(s, partner, fixed(policy, "us-jiatfs", partner.agency_id, 0.7), policy, NOW)
    assert decision.rule == rule


def test_releasable_to_comes_before_tlp_red(policy: Policy) -> None:
    s = subject(tlp=Tlp.RED, releasable_to=frozenset({"cr-msp"}))
    decision = decide(s, CO, fixed(policy, "us-jiatfs", "co-ponal", 0.9), policy, NOW)
    assert decision.rule == Rule.NOT_RELEASABLE_TO


@pytest.mark.parametrize(
    ("releasable_to", "rule"),
    [
        (frozenset(), Rule.TLP_RED_NOT_NAMED),
        (frozenset({"CO"}), Rule.TLP_RED_NOT_NAMED),  # a country is not a named recipient
        (frozenset({"co-ponal"}), Rule.SCORE_FULL),
    ],
)
def test_tlp_red_needs_the_partner_named_by_id(
    policy: Policy, releasable_to: frozenset[str], rule: Rule
) -> None:
    s = subject(tlp=Tlp.RED, releasable_to=releasable_to)
    decision = decide(s, CO, fixed(policy, "us-jiatfs", "co-ponal", 0.7), policy, NOW)
    assert decision.rule == rule
    assert decision.tlp is Tlp.RED


def test_category_not_shared_under_the_agreement(policy: Policy) -> None:
    # co-ponal <-> mx-sedena shares a counter-narcotics list only.
    s = subject(origin="co-ponal", origin_country="CO", category=Category.MIGRANT_SMUGGLING)
    decision = decide(s, MX, fixed(policy, "co-ponal", "mx-sedena", 0.99), policy, NOW)
    assert (decision.kind, decision.rule) == (ReleaseKind.WITHHELD, Rule.CATEGORY_NOT_SHARED)
    assert "agreements[" in decision.reason


def test_none_agreement_shares_nothing(policy: Policy) -> None:
    s = subject(
        origin="do-dncd",
        origin_country="DO",
        classification=Classification.UNCLASSIFIED,
        category=Category.NATURAL_DISASTER,
    )
    decision = decide(s, BZ, TrustLedger.for_policy(policy), policy, NOW)
    assert decision.rule == Rule.CATEGORY_NOT_SHARED


def test_category_rule_comes_before_overrides(policy: Policy) -> None:
    # cr-msp always allows pa-senafront up to RESTRICTED, but cr-msp<->pa-senafront is standard,
    # which does not share TERRORISM.
    s = subject(
        origin="cr-msp",
        origin_country="CR",
        category=Category.TERRORISM,
        classification=Classification.UNCLASSIFIED,
    )
    decision = decide(s, PA, fixed(policy, "cr-msp", "pa-senafront", 0.99), policy, NOW)
    assert decision.rule == Rule.CATEGORY_NOT_SHARED


def test_override_never_by_country_beats_any_score(policy: Policy) -> None:
    s = subject(
        origin="gt-pnc",
        origin_country="GT",
        category=Category.NATURAL_DISASTER,
        classification=Classification.UNCLASSIFIED,
    )
    decision = decide(s, BZ, fixed(policy, "gt-pnc", "bz-bdf", 1.0), policy, NOW)
    assert (decision.kind, decision.rule) == (ReleaseKind.WITHHELD, Rule.OVERRIDE_NEVER)
    assert "overrides.gt-pnc.never[0]" in decision.reason


def test_override_allow_gives_full_up_to_its_level(policy: Policy) -> None:
    s = subject(origin="cr-msp", origin_country="CR", classification=Classification.RESTRICTED)
    decision = decide(s, PA, fixed(policy, "cr-msp", "pa-senafront", 0.0), policy, NOW)
    assert (decision.kind, decision.rule) == (ReleaseKind.FULL, Rule.OVERRIDE_ALLOW)
    assert decision.score is None  # decided without a score


def test_override_allow_above_its_level_falls_to_the_score(policy: Policy) -> None:
    s = subject(
        origin="cr-msp",
        origin_country="CR",
        classification=Classification.SECRET,
        tearline_classification=Classification.RESTRICTED,
    )
    high = decide(s, PA, fixed(policy, "cr-msp", "pa-senafront", 0.85), policy, NOW)
    assert (high.kind, high.rule) == (ReleaseKind.FULL, Rule.SCORE_FULL)
    low = decide(s, PA, fixed(policy, "cr-msp", "pa-senafront", 0.1), policy, NOW)
    assert (low.kind, low.rule) == (ReleaseKind.TEARLINE, Rule.OVERRIDE_ALLOW)
    assert low.score is not None


@pytest.mark.parametrize(
    ("value", "kind", "rule"),
    [
        (0.80, ReleaseKind.FULL, Rule.SCORE_FULL),
        (0.7999, ReleaseKind.TEARLINE, Rule.SCORE_TEARLINE),
        (0.35, ReleaseKind.TEARLINE, Rule.SCORE_TEARLINE),
        (0.3499, ReleaseKind.WITHHELD, Rule.SCORE_BELOW),
    ],
)
def test_score_thresholds_are_inclusive(
    policy: Policy, value: float, kind: ReleaseKind, rule: Rule
) -> None:
    s = subject(
        classification=Classification.SECRET, tearline_classification=Classification.RESTRICTED
    )
    decision = decide(s, CO, fixed(policy, "us-jiatfs", "co-ponal", value), policy, NOW)
    assert (decision.kind, decision.rule) == (kind, rule)
    assert decision.score is not None
    assert decision.score.value == value


def test_unclassified_is_full_for_any_shared_category(policy: Policy) -> None:
    s = subject(classification=Classification.UNCLASSIFIED)
    decision = decide(s, CO, fixed(policy, "us-jiatfs", "co-ponal", 0.0), policy, NOW)
    assert decision.rule == Rule.SCORE_FULL


def test_caveats_and_tlp_travel_with_the_release(policy: Policy) -> None:
    s = subject(caveats=frozenset({Caveat.ORCON}), tlp=Tlp.AMBER_STRICT)
    decision = decide(s, CO, fixed(policy, "us-jiatfs", "co-ponal", 0.7), policy, NOW)
    assert decision.released
    assert decision.orcon
    assert decision.tlp is Tlp.AMBER_STRICT
    assert decision.caveats == frozenset({Caveat.ORCON})


def test_ledger_as_score_source_scores_only_when_needed(policy: Policy) -> None:
    ledger = TrustLedger.for_policy(policy)
    decision = decide(subject(), CO, ledger, policy, NOW)
    # No evidence: the full agreement's prior, 0.70, reaches CONFIDENTIAL.
    assert decision.rule == Rule.SCORE_FULL
    assert decision.score is not None
    assert decision.score.value == pytest.approx(0.7)


def test_no_evidence_by_agreement_level(policy: Policy) -> None:
    ledger = TrustLedger.for_policy(policy)
    reached = {
        partner.agency_id: policy.reached(
            ledger.score("us-jiatfs", partner.agency_id, policy, NOW).value
        )
        for partner in (CO, GT)
    }
    assert reached == {"co-ponal": Classification.CONFIDENTIAL, "gt-pnc": Classification.RESTRICTED}
    limited = ledger.score("bz-bdf", "gt-pnc", policy, NOW).value
    assert policy.reached(limited) is Classification.UNCLASSIFIED


def test_a_leak_drops_a_full_partner_at_least_one_level(policy: Policy) -> None:
    ledger = TrustLedger.for_policy(policy)
    s = subject(classification=Classification.CONFIDENTIAL)
    assert decide(s, CO, ledger, policy, NOW).kind is ReleaseKind.FULL
    ledger.add(Evidence("us-jiatfs", "co-ponal", EvidenceClass.INCIDENT_LEAK, NOW))
    after = decide(s, CO, ledger, policy, NOW)
    assert (after.kind, after.rule) == (ReleaseKind.TEARLINE, Rule.SCORE_TEARLINE)


def test_subject_from_a_threat_bulletin(policy: Policy) -> None:
    bulletin = fixed_bulletin(
        "us-jiatfs",
        category="DRUG_TRAFFICKING",
        classification="SECRET",
        tearline_classification="RESTRICTED",
        tlp="AMBER",
        releasable_to=["CO", "pa-senafront"],
        caveats=["ORCON"],
        valid_until=None,
    )
    s = ReleaseSubject.of(bulletin)
    assert s.releasable_to == frozenset({"CO", "pa-senafront"})
    assert s.caveats == frozenset({Caveat.ORCON})
    ledger = TrustLedger.for_policy(policy)
    at = bulletin.issued_at
    assert decide(s, CO, ledger, policy, at).kind is ReleaseKind.TEARLINE  # 0.70 < SECRET
    assert decide(s, CR, ledger, policy, at).rule == Rule.NOT_RELEASABLE_TO
    assert decide(s, PA, ledger, policy, at).orcon
