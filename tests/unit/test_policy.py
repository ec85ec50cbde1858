"""The policy file: the example loads, lookups resolve, and each rule's error names key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.policy import AgreementLevel, Policy
from enlace.core.errors import ConfigError, PolicyError
from enlace.core.registry import Registry
from schemas.vocab import Category, Classification

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "policy.yaml"


@pytest.fixture(scope="module")
def example() -> Policy:
    return Policy.load(EXAMPLE)


def load_text(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return Policy.load(path)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(PolicyError) as err:
        load_text(tmp_path, text)
    return str(err.value)


def test_example_names_only_registered_agencies(example: Policy) -> None:
    registry = Registry.load(ROOT / "deploy" / "agencies.yaml")
    assert example.agencies() == set(registry.ids)


def test_between_sets_both_directions(example: Policy) -> None:
    for o, p in (("us-jiatfs", "co-ponal"), ("co-ponal", "us-jiatfs")):
        agreement = example.agreement(o, p)
        assert agreement.level is AgreementLevel.FULL
        assert agreement.categories == frozenset(Category)
        assert agreement.source == "agreements[0]"


def test_one_way_entry_refines_a_between(example: Policy) -> None:
    assert example.agreement("ca-rcmp", "mx-sedena").level is AgreementLevel.LIMITED
    assert example.agreement("mx-sedena", "ca-rcmp").level is AgreementLevel.STANDARD


def test_refinement_wins_whatever_the_order(tmp_path: Path) -> None:
    policy = load_text(
        tmp_path,
        "agreements:\n"
        "  - {originator: us-jiatfs, partner: bz-bdf, level: limited}\n"
        "  - {between: [us-jiatfs, bz-bdf], level: full}\n",
    )
    assert policy.agreement("us-jiatfs", "bz-bdf").level is AgreementLevel.LIMITED
    assert policy.agreement("bz-bdf", "us-jiatfs").level is AgreementLevel.FULL


def test_unlisted_pairs_take_the_default(example: Policy) -> None:
    agreement = example.agreement("bz-bdf", "ca-rcmp")
    assert agreement.level is AgreementLevel.LIMITED
    assert agreement.source == "default_agreement"
    assert Category.NATURAL_DISASTER in agreement.categories
    assert Category.TERRORISM not in agreement.categories


def test_entry_categories_replace_the_levels(example: Policy) -> None:
    categories = example.agreement("mx-sedena", "co-ponal").categories
    assert categories == {
        Category.DRUG_TRAFFICKING,
        Category.ARMS_TRAFFICKING,
        Category.ARMED_GROUPS,
        Category.MONEY_LAUNDERING,
    }


def test_override_by_id_takes_precedence_over_country(tmp_path: Path) -> None:
    policy = load_text(
        tmp_path,
        "overrides:\n"
        "  us-jiatfs:\n"
        "    never: [CR]\n"
        "    always: [{partner: cr-msp, up_to: RESTRICTED}]\n",
    )
    by_id = policy.override("us-jiatfs", "cr-msp", "CR")
    assert by_id is not None
    assert (by_id.kind, by_id.up_to) == ("always", Classification.RESTRICTED)
    other = policy.override("us-jiatfs", "cr-oij", "CR")
    assert other is not None
    assert other.kind == "never"
    assert policy.override("co-ponal", "cr-msp", "CR") is None


def test_reached_is_the_highest_threshold_met(example: Policy) -> None:
    assert example.reached(0.0) is Classification.UNCLASSIFIED
    assert example.reached(0.35) is Classification.RESTRICTED
    assert example.reached(0.79) is Classification.CONFIDENTIAL
    assert example.reached(0.8) is Classification.SECRET


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="top level must be a mapping"):
        load_text(tmp_path, "")
    policy = load_text(tmp_path, "version: 1\n")
    assert policy.threshold(Classification.SECRET) == 0.8
    assert policy.agreement("us-jiatfs", "co-ponal").level is AgreementLevel.LIMITED


def test_policy_error_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_text(tmp_path, "version: 2\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 1\nagreements:\n  - {between: [us-jiatfs, co-ponal], level: best}\n",
            "agreements[0].level (line 3): Input should be 'none', 'limited'",
        ),
        (
            (
                "agreements:\n  - {between: [us-jiatfs, co-ponal], originator: us-jiatfs,"
                " level: full}\n"
            ),
            "agreements[0] (line 2): use either 'between' or",
        ),
        (
            "agreements:\n  - {between: [us-jiatfs, us-jiatfs], level: full}\n",
            "an agency has no agreement with itself",
        ),
        (
            "agreements:\n  - {between: [US-JIATFS, co-ponal], level: full}\n",
            "agreements[0].between[0] (line 2): agency id 'US-JIATFS' must be lowercase",
        ),
        (
            (
                "agreements:\n  - {between: [us-jiatfs, co-ponal], level: full}\n"
                "  - {between: [co-ponal, us-jiatfs], level: standard}\n"
            ),
            "agreements[1] (line 3): co-ponal -> us-jiatfs is already set by agreements[0]",
        ),
        (
            "thresholds:\n  RESTRICTED: 0.7\n",
            "thresholds.CONFIDENTIAL (line 1): 0.6 is below the threshold of a lower",
        ),
        (
            "thresholds:\n  TOP_SECRET: 0.9\n",
            "thresholds.TOP_SECRET [key] (line 2): Input should be",
        ),
        (
            "levels:\n  full: {prior_mean: 0.85, prior_strength: 10, categories: all}\n",
            "levels.full.prior_mean (line 2): 0.85 reaches the SECRET threshold 0.8",
        ),
        (
            "levels:\n  full: {prior_mean: 1.0, prior_strength: 10}\n",
            "levels.full.prior_mean (line 2): Input should be less than 1",
        ),
        (
            "levels:\n  limited: {prior_mean: 0.3, prior_strength: 5, categories: [PIRACY]}\n",
            "levels.limited.categories",
        ),
        (
            "evidence:\n  weights:\n    incident_leak: 3\n",
            "evidence.weights.incident_leak (line 3): 3.0 is too light: one leak must drop",
        ),
        (
            "evidence:\n  positive_half_life_days: 90\n  negative_half_life_days: 30\n",
            "evidence.negative_half_life_days (line 3): must be >= positive_half_life_days",
        ),
        (
            "evidence:\n  claims:\n    burst: 6\n",
            (
                "evidence.claims.burst (line 3): 6.0 is too large: a burst of claims would lift "
                "a fresh 'full' partner from 0.700 to 0.806, past the SECRET threshold 0.8"
            ),
        ),
        (
            "evidence:\n  weights:\n    incident_leek: 20\n",
            "evidence.weights.incident_leek (line 3): Extra inputs are not permitted",
        ),
        (
            (
                "overrides:\n  gt-pnc:\n    never: [bz-bdf]\n    always:\n"
                "      - {partner: bz-bdf, up_to: SECRET}\n"
            ),
            "overrides.gt-pnc.never[0] (line 3): bz-bdf is also under 'always'",
        ),
        (
            "overrides:\n  gt-pnc:\n    never: [Bz]\n",
            "overrides.gt-pnc.never[0] (line 3): agency id 'Bz' must be lowercase",
        ),
        (
            "overrides:\n  gt-pnc:\n    never: [gt-pnc]\n",
            "an agency cannot name itself",
        ),
    ],
)
def test_errors_name_key_line_and_rule(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        "thresholds:\n  SECRET: 1.5\nevidence:\n  negative_half_life_days: 1\n",
    )
    assert "thresholds.SECRET (line 2)" in message
    assert "evidence.negative_half_life_days (line 4)" in message


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy"):
        Policy.load(tmp_path / "missing.yaml")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_text(tmp_path, "agreements: [\n")
