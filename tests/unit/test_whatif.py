"""`policy whatif`'s pure core on a crafted history: what moves, and only that; on version-3
audit records, from the records alone (no outbound read)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from broker import audit_cli
from broker.audit_query import AuditedDecision, decisions_of
from broker.audit_read import AuditRead, Subjects
from broker.policy import Policy
from broker.release import Partner, ReleaseSubject, decide
from broker.trust import TrustScore
from broker.whatif import needs_outbound, what_if
from enlace.cli import app
from schemas.catalog import Catalog
from schemas.codec import AUDIT, decode_audit, encode, encode_audit
from schemas.models import AuditRecord, validate_audit
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


# -- version-3 audit records carry their bulletin's facts: no outbound read ---------------


def audit_records(
    history: list[tuple[int, Classification, str, float]], *, facts: bool = True
) -> list[AuditRecord]:
    """The router's ROUTED records of ``recorded(history)``, one per bulletin, through the
    codec (encoded as version 3, decoded as a reader does); ``facts=False``: as version 2."""
    rows, subjects = recorded(history)
    records = []
    for r in rows:
        s = subjects[r.bulletin_id]
        datum = {
            "bulletin_id": r.bulletin_id, "origin": r.origin, "partner": r.origin,
            "decision": "ROUTED", "rule": "per_partner", "decided_at": r.decided_at,
            "source_topic": r.source_topic, "source_partition": r.source_partition,
            "source_offset": r.source_offset,
            "decisions": [{"partner": r.partner, "decision": r.decision, "rule": r.rule,
                           "score": r.score}],
            "facts": {
                "category": s.category, "classification": s.classification,
                "tearline_classification": s.tearline_classification, "tlp": s.tlp,
                "releasable_to": sorted(s.releasable_to), "caveats": sorted(s.caveats),
                "valid_until": s.valid_until,
            },
        }  # fmt: skip
        record = validate_audit(datum)
        if facts:
            records.append(decode_audit(encode_audit(record)))
        else:
            old = record.to_avro()
            del old["facts"]
            v2 = Catalog.default().get(AUDIT, 2).fingerprint
            records.append(decode_audit(encode(old, AUDIT, writer=v2)))
    return records


CONFIDENTIAL_065 = Policy.model_validate(
    {"agreements": AGREEMENTS, "thresholds": {"CONFIDENTIAL": 0.65}}
)


def test_version_3_records_alone_give_a_fully_decided_report() -> None:
    rows = decisions_of(audit_records(HISTORY))
    assert all(r.subject is not None for r in rows)
    assert needs_outbound(rows) == [], "nothing to read from the outbound topics"
    # No outbound subjects at all, and every outbound read refused: the record suffices.
    refused = dict.fromkeys((r.bulletin_id for r in rows), "not authorised (router only)")
    report = what_if(rows, {}, AGENCIES, OLD, CONFIDENTIAL_065, missing_subject=refused)
    assert not report.undecided
    assert not report.not_reproduced
    assert report.considered == len(HISTORY)
    assert [(c.decision.source_offset, c.transition) for c in report.changes] == [
        (2, ("FULL", "TEARLINE")),
        (6, ("FULL", "TEARLINE")),
    ]
    assert report.by_classification() == {"CONFIDENTIAL": {("FULL", "TEARLINE"): 2}}
    # The same report as from the outbound records' facts.
    old_rows, subjects = recorded(HISTORY)
    from_outbound = what_if(old_rows, subjects, AGENCIES, OLD, CONFIDENTIAL_065)
    assert [(c.decision.bulletin_id, c.transition) for c in report.changes] == [
        (c.decision.bulletin_id, c.transition) for c in from_outbound.changes
    ]


def test_only_records_older_than_version_3_need_the_outbound_record() -> None:
    new = decisions_of(audit_records(HISTORY[:3]))
    old = decisions_of(audit_records(HISTORY[3:], facts=False))
    assert all(r.subject is None for r in old)
    # Offset 5 was decided category_not_shared, which depends on the policy: it is read too.
    assert needs_outbound([*new, *old]) == old
    report = what_if([*new, *old], {}, AGENCIES, OLD, CONFIDENTIAL_065)
    assert sorted(u.decision.source_offset for u in report.undecided) == [4, 5, 6]
    assert {u.why for u in report.undecided} == {"bulletin not read"}
    assert [c.decision.source_offset for c in report.changes] == [2]


def test_whatif_on_version_3_records_never_reads_outbound(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The command as the operator runs it: the audit topic only."""
    records = audit_records(HISTORY)

    async def read_audit(*_a: object, **_kw: object) -> AuditRead:
        return AuditRead(records=records, total=len(records))

    async def no_outbound(*_a: object, **_kw: object) -> Subjects:
        raise AssertionError("whatif read an outbound topic")

    monkeypatch.setattr(audit_cli, "read_audit", read_audit)
    monkeypatch.setattr(audit_cli, "read_subjects", no_outbound)
    agencies = [{"id": a, "country": c, "name": a} for a, c in AGENCIES.items()]
    (tmp_path / "agencies.yaml").write_text(yaml.safe_dump({"agencies": agencies}))
    (tmp_path / "old.yaml").write_text(yaml.safe_dump({"agreements": AGREEMENTS}))
    stricter = {"agreements": AGREEMENTS, "thresholds": {"CONFIDENTIAL": 0.65}}
    (tmp_path / "new.yaml").write_text(yaml.safe_dump(stricter))
    monkeypatch.setenv("ENLACE_AGENCIES_FILE", str(tmp_path / "agencies.yaml"))
    args = ["policy", "whatif", str(tmp_path / "new.yaml"), "--policy", str(tmp_path / "old.yaml")]
    result = CliRunner().invoke(app, [*args, "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["considered"], report["changed"], report["undecided"]) == (6, 2, [])
    assert {(c["was"], c["would_be"], c["classification"]) for c in report["changes"]} == {
        ("FULL", "TEARLINE", "CONFIDENTIAL")
    }
