"""The audit trail's pure queries: flattening, filters, the words, json/csv round trips, and
the bulletin facts a version-3 record carries."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.audit_query import (
    AuditedDecision,
    AuditedFactor,
    Query,
    decisions_of,
    in_words,
    parse_since,
    render_csv,
    render_json,
    select,
    without_facts,
)
from broker.policy import Policy
from broker.release import ReleaseSubject
from schemas.models import AuditRecord
from schemas.vocab import Category, Classification, Tlp

T0 = datetime(2026, 11, 1, tzinfo=UTC)
POLICY = Policy()
# Thresholds near a prior are refused while a burst of claims could cross them.
NO_CLAIMS = {"evidence": {"claims": {"burst": 0.0}}}
LEAK = AuditedFactor("incident_leak", -14.234, "0.89 decayed events x weight 16 -> beta +14.23")
PRIOR = AuditedFactor("prior", 0.7, "agreement 'full': mean 0.70 x strength 10 -> alpha0 7.00")


def row(
    partner: str = "do-dncd",
    decision: str = "WITHHELD",
    rule: str = "score_below",
    score: float | None = 0.41,
    at: datetime = T0,
    **kw: object,
) -> AuditedDecision:
    values: dict[str, object] = {
        "bulletin_id": str(uuid.UUID(int=1)),
        "origin": "us-jiatfs",
        "partner": partner,
        "decision": decision,
        "rule": rule,
        "score": score,
        "factors": (PRIOR, LEAK),
        "decided_at": at,
        "source_topic": "enlace.outbound.us-jiatfs",
        "source_partition": 0,
        "source_offset": 7,
        **kw,
    }
    return AuditedDecision(**values)  # type: ignore[arg-type]  # test builder, typed fields


def subject(classification: Classification = Classification.CONFIDENTIAL) -> ReleaseSubject:
    return ReleaseSubject(
        str(uuid.UUID(int=1)),
        "us-jiatfs",
        "US",
        Category.DRUG_TRAFFICKING,
        classification,
        Classification.RESTRICTED,
        Tlp.AMBER,
    )


def test_a_routed_record_is_one_row_per_partner() -> None:
    record = AuditRecord.model_validate(
        {
            "bulletin_id": str(uuid.UUID(int=2)),
            "origin": "pa-senafront",
            "partner": "pa-senafront",
            "decision": "ROUTED",
            "rule": "per_partner",
            "decided_at": T0,
            "source_topic": "enlace.outbound.pa-senafront",
            "source_partition": 0,
            "source_offset": 3,
            "decisions": [
                {"partner": "cr-msp", "decision": "FULL", "rule": "score_full", "score": 0.7},
                {"partner": "mx-sedena", "decision": "WITHHELD", "rule": "category_not_shared"},
            ],
        }
    )
    rows = decisions_of([record])
    assert [(r.partner, r.decision, r.score) for r in rows] == [
        ("cr-msp", "FULL", 0.7),
        ("mx-sedena", "WITHHELD", None),
    ]
    assert {r.source_offset for r in rows} == {3}


def test_select_filters_and_keeps_the_newest() -> None:
    rows = [
        row(partner=p, at=T0 + timedelta(hours=h)) for h, p in enumerate(["ab-x", "cd-y", "ab-x"])
    ]
    assert [r.decided_at for r in select(rows, Query(partner="ab-x"))] == [
        T0,
        T0 + timedelta(hours=2),
    ]
    assert select(rows, Query(partner="ab-x", limit=1))[0].decided_at == T0 + timedelta(hours=2)
    assert select(rows, Query(since=T0 + timedelta(minutes=30))) == rows[1:]
    assert select(rows, Query(decision="full")) == []
    assert len(select(rows, Query(decision="withheld", origin="us-jiatfs"))) == 3
    assert select(rows, Query(limit=0)) == []


def test_parse_since() -> None:
    assert parse_since("7d", T0) == T0 - timedelta(days=7)
    assert parse_since("90s", T0) == T0 - timedelta(seconds=90)
    assert parse_since("2026-10-01T00:00", T0) == datetime(2026, 10, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="7d"):
        parse_since("last week", T0)


def test_withheld_in_words_names_the_threshold_and_factors() -> None:
    policy = Policy.model_validate(
        {"thresholds": {"RESTRICTED": 0.45, "CONFIDENTIAL": 0.55}, **NO_CLAIMS}
    )
    words = in_words(row(), policy, subject())
    assert words == (
        "withheld: score 0.41 below the 0.55 CONFIDENTIAL threshold and the 0.45 RESTRICTED "
        "tearline threshold for us-jiatfs -> do-dncd (prior 0.70 (full), leaks -14.23)"
    )
    # Without the bulletin's facts: what the score reached under the policy.
    assert in_words(row(), policy).startswith(
        "withheld (score_below): score 0.41 reaches UNCLASSIFIED (>= 0.00) under the policy"
    )


def test_each_rule_has_words() -> None:
    full = in_words(row(decision="FULL", rule="score_full", score=0.72), POLICY, subject())
    assert full.startswith("released in full: score 0.72 meets the 0.60 CONFIDENTIAL threshold")
    tear = in_words(row(decision="TEARLINE", rule="score_tearline", score=0.5), POLICY, subject())
    assert "tearline only: score 0.50 below the 0.60 CONFIDENTIAL threshold, meets" in tear
    cat = in_words(row(rule="category_not_shared", score=None), POLICY, subject())
    assert "does not share the bulletin's category (DRUG_TRAFFICKING)" in cat
    assert "TLP:RED" in in_words(row(rule="tlp_red_not_named", score=None), POLICY)
    assert "duplicate" in in_words(row(decision="DUPLICATE", rule="duplicate", score=None), POLICY)
    assert "by rule some_new_rule" in in_words(row(rule="some_new_rule", score=None), POLICY)


rows_strategy = st.lists(
    st.builds(
        row,
        partner=st.sampled_from(["do-dncd", "cr-msp", "mx-sedena"]),
        decision=st.sampled_from(["FULL", "TEARLINE", "WITHHELD"]),
        rule=st.sampled_from(["score_full", "score_below", "category_not_shared", "expired"]),
        score=st.none() | st.floats(0, 1),
        at=st.datetimes(
            # Hypothesis takes naive bounds; timezones= makes every value UTC.
            min_value=datetime(2020, 1, 1),  # noqa: DTZ001
            max_value=datetime(2030, 1, 1),  # noqa: DTZ001
            timezones=st.just(UTC),
        ).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)),
    ),
    max_size=8,
)


@given(rows_strategy)
def test_json_round_trips(rows: list[AuditedDecision]) -> None:
    back = json.loads(render_json(rows, POLICY))
    assert len(back) == len(rows)
    for r, b in zip(rows, back, strict=True):
        assert (b["partner"], b["decision"], b["rule"], b["score"]) == (
            r.partner,
            r.decision,
            r.rule,
            r.score,
        )
        assert datetime.fromisoformat(b["decided_at"]) == r.decided_at
        assert [(f["name"], f["value"]) for f in b["factors"]] == [
            (f.name, f.value) for f in r.factors
        ]


@given(rows_strategy)
def test_csv_round_trips(rows: list[AuditedDecision]) -> None:
    back = list(csv.DictReader(io.StringIO(render_csv(rows, POLICY))))
    assert len(back) == len(rows)
    for r, b in zip(rows, back, strict=True):
        assert (b["partner"], b["decision"], b["rule"]) == (r.partner, r.decision, r.rule)
        assert (float(b["score"]) if b["score"] else None) == r.score
        assert datetime.fromisoformat(b["decided_at"]) == r.decided_at
        assert b["explanation"] == in_words(r, POLICY)


def routed_v3(**facts: object) -> AuditRecord:
    """A ROUTED record (version 3) with the bulletin's facts."""
    return AuditRecord.model_validate(
        {
            "bulletin_id": str(uuid.UUID(int=1)),
            "origin": "us-jiatfs",
            "partner": "us-jiatfs",
            "decision": "ROUTED",
            "rule": "per_partner",
            "decided_at": T0,
            "source_topic": "enlace.outbound.us-jiatfs",
            "source_partition": 0,
            "source_offset": 7,
            "decisions": [
                {"partner": "do-dncd", "decision": "WITHHELD", "rule": "score_below",
                 "score": 0.41,
                 "factors": [{"name": PRIOR.name, "value": PRIOR.value, "note": PRIOR.note}]},
                {"partner": "mx-sedena", "decision": "WITHHELD", "rule": "category_not_shared"},
            ],
            "facts": {
                "category": "DRUG_TRAFFICKING", "classification": "CONFIDENTIAL",
                "tearline_classification": "RESTRICTED", "tlp": "AMBER",
                "releasable_to": ["DO", "mx-sedena"], "caveats": ["ORCON"],
                "valid_until": T0 + timedelta(days=7), **facts,
            },
        }
    )  # fmt: skip


def test_a_version_3_record_explains_itself_without_the_bulletin() -> None:
    policy = Policy.model_validate(
        {"thresholds": {"RESTRICTED": 0.45, "CONFIDENTIAL": 0.55}, **NO_CLAIMS}
    )
    withheld, other = decisions_of([routed_v3()])
    assert withheld.subject == other.subject
    assert withheld.subject is not None
    assert withheld.subject.classification is Classification.CONFIDENTIAL
    assert withheld.subject.releasable_to == frozenset({"DO", "mx-sedena"})
    assert withheld.subject.origin_country == "US"
    # No subject passed: the record's own facts name the thresholds and the category.
    assert in_words(withheld, policy) == (
        "withheld: score 0.41 below the 0.55 CONFIDENTIAL threshold and the 0.45 RESTRICTED "
        "tearline threshold for us-jiatfs -> do-dncd (prior 0.70 (full))"
    )
    assert "category (DRUG_TRAFFICKING)" in in_words(other, policy)
    [back] = json.loads(render_json([withheld], policy))
    assert (back["category"], back["classification"], back["tearline_classification"]) == (
        "DRUG_TRAFFICKING",
        "CONFIDENTIAL",
        "RESTRICTED",
    )
    assert (back["tlp"], back["releasable_to"], back["caveats"]) == (
        "AMBER",
        ["DO", "mx-sedena"],
        ["ORCON"],
    )
    assert datetime.fromisoformat(back["valid_until"]) == T0 + timedelta(days=7)
    [line] = csv.DictReader(io.StringIO(render_csv([withheld], policy)))
    assert (line["classification"], line["releasable_to"]) == ("CONFIDENTIAL", "DO;mx-sedena")
    assert without_facts([withheld, other]) == []


def test_older_records_and_unknown_symbols_have_no_facts_of_their_own() -> None:
    old = routed_v3().model_copy(update={"facts": None})
    assert [r.subject for r in decisions_of([old])] == [None, None]
    assert without_facts(decisions_of([old])) == decisions_of([old])
    # A symbol a newer bulletin schema added: readable, but not facts this version can use.
    newer = routed_v3(category="ILLEGAL_MINING")
    assert [r.subject for r in decisions_of([newer])] == [None, None]
    # The outbound record's facts then serve, as for version-2 records.
    [row, _] = decisions_of([old])
    assert "CONFIDENTIAL threshold" in in_words(row, POLICY, subject())
    [back] = json.loads(render_json([row], POLICY))
    assert back["classification"] is None
