"""`policy whatif`'s pure core on a crafted history: what moves, and only that."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from broker.audit_query import AuditedDecision
from broker.policy import Policy
from broker.release import Partner, ReleaseSubject, decide
from broker.trust import TrustScore
from broker.whatif import what_if
from schemas.vocab import Category, Classification, Tlp

T0 = datetime(2026, 11, 1, tzinfo=UTC)
AGENCIES = {"us-jiatfs": "US", "do-dncd": "DO", "cr-msp": "CR", "mx-sedena": "MX"}
AGREEMENTS = [
    {"between": ["us-jiatfs", "do-dncd"], "level": "full"},
    {"between": ["us-jiatfs", "cr-msp"], "level": "standard"},
    {"between": ["us-jiatfs", "mx-sedena"], "level": "none"},
]
OLD = Policy.model_validate({"agreements": AGREEMENTS})


def subject(n: int, classification: Classification) -> ReleaseSubject:
    return ReleaseSubject(
        str(uuid.UUID(int=n)),
        "us-jiatfs",
        "US",
        Category.DRUG_TRAFFICKING,
        classification,
        Classification.UNCLASSIFIED,
        Tlp.AMBER,
    )


def recorded(
    history: list[tuple[int, Classification, str, float]], policy: Policy = OLD
) -> tuple[list[AuditedDecision], dict[str, ReleaseSubject]]:
    """Decisions as the router would record them: (n, classification, partner, score)."""
    rows, subjects = [], {}
    for n, classification, partner, value in history:
        s = subject(n, classification)
        subjects[s.bulletin_id] = s
        at = T0 + timedelta(minutes=n)
        score = TrustScore(
            "us-jiatfs",
            partner,
            value,
            value,
            1 - value,
            policy.agreement("us-jiatfs", partner).prior,
            at,
        )
        d = decide(s, Partner(partner, AGENCIES[partner]), score, policy, at)
        rows.append(
            AuditedDecision(
                s.bulletin_id,
                "us-jiatfs",
                partner,
                d.kind.value,
                d.rule.value,
                None if d.score is None else value,
                (),
                at,
                "enlace.outbound.us-jiatfs",
                0,
                n,
            )
        )
    return rows, subjects


HISTORY = [
    (1, Classification.CONFIDENTIAL, "do-dncd", 0.70),  # FULL, and stays (0.70 >= 0.65)
    (2, Classification.CONFIDENTIAL, "do-dncd", 0.62),  # FULL -> TEARLINE at 0.65
    (3, Classification.CONFIDENTIAL, "cr-msp", 0.50),  # TEARLINE, stays
    (4, Classification.RESTRICTED, "cr-msp", 0.50),  # FULL, stays
    (5, Classification.CONFIDENTIAL, "mx-sedena", 0.10),  # category_not_shared, stays
    (6, Classification.CONFIDENTIAL, "do-dncd", 0.61),  # FULL -> TEARLINE
]


def test_a_threshold_change_moves_exactly_the_expected_decisions() -> None:
    rows, subjects = recorded(HISTORY)
    new = Policy.model_validate({"agreements": AGREEMENTS, "thresholds": {"CONFIDENTIAL": 0.65}})
    report = what_if(rows, subjects, AGENCIES, OLD, new)
    assert [(c.decision.source_offset, c.transition) for c in report.changes] == [
        (2, ("FULL", "TEARLINE")),
        (6, ("FULL", "TEARLINE")),
    ]
    assert report.considered == 6
    assert report.unchanged == 4
    assert report.lost() == 2
    assert report.gained() == 0
    assert report.by_pair() == {("us-jiatfs", "do-dncd"): {("FULL", "TEARLINE"): 2}}
    assert report.by_classification() == {"CONFIDENTIAL": {("FULL", "TEARLINE"): 2}}
    assert report.examples(("us-jiatfs", "do-dncd"), ("FULL", "TEARLINE")) == [
        rows[1].bulletin_id,
        rows[5].bulletin_id,
    ]
    assert not report.undecided
    assert not report.not_reproduced
    assert not report.caveats


def test_sharing_a_category_uses_the_pairs_nearest_recorded_score() -> None:
    history = [*HISTORY, (7, Classification.RESTRICTED, "mx-sedena", 0.0)]
    rows, subjects = recorded(history)
    # mx-sedena has no recorded score at all: undecided, said so.
    opened = [*AGREEMENTS[:2], {"between": ["us-jiatfs", "mx-sedena"], "level": "limited"}]
    new = Policy.model_validate({"agreements": opened})
    report = what_if(rows, subjects, AGENCIES, OLD, new)
    assert {u.why for u in report.undecided} == {
        "no recorded score for us-jiatfs -> mx-sedena in the window"
    }
    assert any("prior of 1 pair(s) differs" in c for c in report.caveats)
    # cr-msp -> a category not shared before: its score of another bulletin stands in.
    closed = [
        AGREEMENTS[0],
        {
            "between": ["us-jiatfs", "cr-msp"],
            "level": "standard",
            "categories": ["ARMS_TRAFFICKING"],
        },
    ]
    was = Policy.model_validate({"agreements": closed})
    rows, subjects = recorded(
        [
            (3, Classification.CONFIDENTIAL, "cr-msp", 0.5),
            (4, Classification.RESTRICTED, "do-dncd", 0.9),
        ],
        was,
    )
    assert rows[0].rule == "category_not_shared"
    scored, _ = recorded([(9, Classification.RESTRICTED, "cr-msp", 0.5)])
    report = what_if([*rows, *scored], {**subjects, **_}, AGENCIES, was, OLD)
    [change] = report.changes
    assert change.transition == ("WITHHELD", "TEARLINE")
    assert change.score_from.startswith(f"score of {scored[0].bulletin_id}")


def test_missing_bulletins_are_undecided_unless_the_rule_ignores_policy() -> None:
    rows, _ = recorded(HISTORY[:2])
    expired = AuditedDecision(
        str(uuid.UUID(int=99)),
        "us-jiatfs",
        "do-dncd",
        "WITHHELD",
        "expired",
        None,
        (),
        T0,
        "enlace.outbound.us-jiatfs",
        0,
        99,
    )
    report = what_if(
        [*rows, expired],
        {},
        AGENCIES,
        OLD,
        OLD,
        missing_subject={rows[0].bulletin_id: "gone (outbound retention)"},
    )
    assert [u.why for u in report.undecided] == ["gone (outbound retention)", "bulletin not read"]
    assert report.unchanged == 1


histories = st.lists(
    st.tuples(
        st.integers(0, 10_000),
        st.sampled_from(list(Classification)),
        st.sampled_from(["do-dncd", "cr-msp", "mx-sedena"]),
        st.floats(0, 1),
    ),
    max_size=20,
    unique_by=lambda t: t[0],
)
# Thresholds near a prior are refused while a burst of claims could cross them.
NO_CLAIMS = {"evidence": {"claims": {"burst": 0.0}}}
thresholds = st.tuples(st.floats(0.2, 0.4), st.floats(0.45, 0.6), st.floats(0.71, 0.79))


@given(histories, thresholds)
def test_an_unchanged_policy_changes_nothing(history: list, levels: tuple) -> None:  # type: ignore[type-arg]  # hypothesis tuples
    policy = Policy.model_validate(
        {
            "agreements": AGREEMENTS,
            "thresholds": dict(zip(("RESTRICTED", "CONFIDENTIAL", "SECRET"), levels, strict=True)),
            **NO_CLAIMS,
        }
    )
    rows, subjects = recorded(history, policy)
    report = what_if(rows, subjects, AGENCIES, policy, policy)
    assert not report.changed
    assert not report.not_reproduced
    assert report.unchanged + len(report.undecided) == len(rows)


@given(histories, st.floats(0.61, 0.79))
def test_raising_a_threshold_only_loses(history: list, confidential: float) -> None:  # type: ignore[type-arg]  # hypothesis tuples
    rows, subjects = recorded(history)
    new = Policy.model_validate(
        {"agreements": AGREEMENTS, **NO_CLAIMS, "thresholds": {"CONFIDENTIAL": confidential}}
    )
    report = what_if(rows, subjects, AGENCIES, OLD, new)
    assert report.gained() == 0
    for c in report.changes:
        assert c.classification is Classification.CONFIDENTIAL
        assert c.decision.score is not None
        assert c.decision.score < confidential
