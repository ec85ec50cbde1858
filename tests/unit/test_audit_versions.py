"""Audit records, version 2: one ROUTED record per bulletin with every partner's decision;
version-1 records (one decision each) stay readable, and a version-1 reader skips ROUTED.
Version 3: every record also carries the bulletin's facts the decisions read; v1 and v2 records
read as v3 have none, and a v2 reader reads a v3 record (without them)."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastavro import schemaless_reader
from hypothesis import given
from hypothesis import strategies as st

from broker.admission import Admitted
from broker.outputs import (
    AUDIT_SUMMARY,
    Source,
    duplicate_audit,
    release_summaries,
    routed_audit,
)
from broker.release import ReleaseDecision, Rule
from enlace.core.errors import ValidationError
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES
from schemas import headers as hdr
from schemas.agency_key import AgencyKey
from schemas.bulletin import BulletinEnvelope
from schemas.catalog import Catalog
from schemas.codec import AUDIT, HEADER_SIZE, decode_audit, encode, encode_audit
from schemas.envelope import seal
from schemas.models import ROUTED, ThreatBulletin, validate_audit
from schemas.vocab import Category, Caveat, Classification, ReleaseKind, Tlp
from tests.samples import sample_audit, sample_bulletin

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
PA = "pa-senafront"
PARTNERS = [a for a in Registry.load(DEFAULT_AGENCIES).ids if a != PA]
KIND_RULES = {
    ReleaseKind.FULL: (Rule.SCORE_FULL, Rule.OVERRIDE_ALLOW),
    ReleaseKind.TEARLINE: (Rule.SCORE_TEARLINE,),
    ReleaseKind.WITHHELD: (Rule.SCORE_BELOW, Rule.TLP_RED_NOT_NAMED, Rule.NOT_SEALED_FOR),
}


def admitted() -> Admitted:
    key = AgencyKey.generate(PA, valid_from=T0 - timedelta(days=1))
    bulletin = sample_bulletin(PA)
    sealed = seal(bulletin, key)
    return Admitted(bulletin, sealed.value, sealed.tearline_value,
                    hdr.SignedHeaders.parse(sealed.headers))  # fmt: skip


ADMITTED = admitted()

kinds = st.sampled_from(list(KIND_RULES))
recipients = st.lists(st.sampled_from(["CR", "US", "MX", *PARTNERS[:4]]), unique=True)


@st.composite
def bulletins(draw: st.DrawFn) -> ThreatBulletin | BulletinEnvelope:
    """Every fact the release decision reads, varied (and the envelope of a sealed one)."""
    levels = list(Classification)
    full = draw(st.sampled_from(levels))
    tlp = draw(st.sampled_from(list(Tlp)))
    to = draw(recipients.filter(bool) if tlp is Tlp.RED else recipients)
    until = draw(st.none() | st.integers(1, 10**11).map(lambda ms: T0 + timedelta(milliseconds=ms)))
    bulletin = sample_bulletin(
        PA,
        issued_at=T0,
        valid_until=until,
        category=draw(st.sampled_from(list(Category))),
        classification=full,
        tearline_classification=draw(st.sampled_from(levels[: full.rank + 1])),
        tlp=tlp,
        releasable_to=to,
        caveats=draw(st.lists(st.sampled_from(list(Caveat)), unique=True)),
    )
    return BulletinEnvelope.of(bulletin) if draw(st.booleans()) else bulletin


def facts_of(bulletin: ThreatBulletin | BulletinEnvelope) -> dict[str, Any]:
    return {
        "category": bulletin.category.value,
        "classification": bulletin.classification.value,
        "tearline_classification": bulletin.tearline_classification.value,
        "tlp": bulletin.tlp.value,
        "releasable_to": bulletin.releasable_to,
        "caveats": tuple(c.value for c in bulletin.caveats),
        "valid_until": bulletin.valid_until,
    }


@st.composite
def decision_lists(draw: st.DrawFn) -> list[ReleaseDecision]:
    partners = draw(st.lists(st.sampled_from(PARTNERS), min_size=1, unique=True))
    out = []
    for partner in partners:
        kind = draw(kinds)
        rule = draw(st.sampled_from(KIND_RULES[kind]))
        out.append(ReleaseDecision(ADMITTED.bulletin.bulletin_id, partner, kind, rule, "why",
                                   None, Tlp.AMBER, frozenset()))  # fmt: skip
    return out


@given(decision_lists(), st.integers(0, 2**40))
def test_a_routed_record_holds_every_decision_and_its_header_says_the_same(
    decisions: list[ReleaseDecision], offset: int
) -> None:
    out = routed_audit(ADMITTED, [(d, ()) for d in decisions], Source("t", 1, offset), T0)
    record = decode_audit(out.value)
    assert record.decision == ROUTED
    assert encode_audit(record) == out.value, "the compiled writer writes what fastavro does"
    assert out.key == ADMITTED.bulletin.bulletin_id.encode()
    each = record.per_partner()
    assert [(a.partner, a.decision, a.rule) for a in each] == [
        (d.partner, d.kind.value, d.rule.value) for d in decisions
    ]
    assert all(a.source_offset == offset and a.decided_at == T0 for a in each)
    assert all(a.bulletin_id == ADMITTED.bulletin.bulletin_id and a.origin == PA for a in each)
    summaries = release_summaries(out.headers)
    assert summaries is not None
    assert [(s.partner, s.decision, s.at) for s in summaries] == [
        (d.partner, d.kind.value, T0) for d in decisions
    ]
    assert record.facts is not None
    assert record.facts.model_dump() == facts_of(ADMITTED.bulletin)
    assert all(a.facts == record.facts for a in each), "each pair keeps its bulletin's facts"


@given(bulletins(), decision_lists())
def test_a_version_3_record_carries_the_facts_its_bulletin_was_decided_on(
    bulletin: ThreatBulletin | BulletinEnvelope, decisions: list[ReleaseDecision]
) -> None:
    admitted = dataclasses.replace(ADMITTED, bulletin=bulletin)
    pairs = [(dataclasses.replace(d, bulletin_id=bulletin.bulletin_id), ()) for d in decisions]
    out = routed_audit(admitted, pairs, Source("t", 0, 5), T0)
    assert out.value[2:HEADER_SIZE] == Catalog.default().get(AUDIT, 3).fingerprint
    record = decode_audit(out.value)
    assert encode_audit(record) == out.value, "the compiled writer writes what fastavro does"
    assert record.facts is not None
    assert record.facts.model_dump() == facts_of(bulletin)
    duplicate = decode_audit(duplicate_audit(admitted, Source("t", 0, 6), T0).value)
    assert duplicate.facts == record.facts


def test_version_2_records_decode_as_version_3_without_facts() -> None:
    v2 = Catalog.default().get(AUDIT, 2)
    decision = ReleaseDecision(ADMITTED.bulletin.bulletin_id, PARTNERS[0], ReleaseKind.FULL,
                               Rule.SCORE_FULL, "", None, Tlp.AMBER, frozenset())  # fmt: skip
    datum = decode_audit(routed_audit(ADMITTED, [(decision, ())], Source("t", 0, 1), T0).value)
    old = datum.to_avro()
    del old["facts"]
    read = decode_audit(encode(old, AUDIT, writer=v2.fingerprint))
    assert read.facts is None
    assert read == datum.model_copy(update={"facts": None})
    assert [(a.partner, a.decision, a.facts) for a in read.per_partner()] == [
        (PARTNERS[0], "FULL", None)
    ]


@given(bulletins())
def test_a_version_2_reader_reads_a_version_3_record(
    bulletin: ThreatBulletin | BulletinEnvelope,
) -> None:
    catalog = Catalog.default()
    admitted = dataclasses.replace(ADMITTED, bulletin=bulletin)
    decision = ReleaseDecision(bulletin.bulletin_id, PARTNERS[1], ReleaseKind.TEARLINE,
                               Rule.SCORE_TEARLINE, "", None, Tlp.AMBER, frozenset())  # fmt: skip
    out = routed_audit(admitted, [(decision, ())], Source("t", 2, 9), T0)
    as_v2 = schemaless_reader(
        io.BytesIO(out.value[HEADER_SIZE:]),
        catalog.get(AUDIT, 3).parsed,
        catalog.get(AUDIT, 2).parsed,
    )
    assert isinstance(as_v2, dict)
    assert "facts" not in as_v2
    as_v3 = decode_audit(out.value).to_avro()
    del as_v3["facts"]
    assert as_v2 == {**as_v3, "bulletin_id": as_v2["bulletin_id"]}
    assert str(as_v2["bulletin_id"]) == bulletin.bulletin_id
    assert [(d["partner"], d["decision"]) for d in as_v2["decisions"]] == [
        (PARTNERS[1], "TEARLINE")
    ]


def test_version_1_records_still_decode_as_one_decision() -> None:
    v1 = Catalog.default().get(AUDIT, 1)
    old = sample_audit()
    datum = old.to_avro()
    del datum["decisions"], datum["facts"]
    value = encode(datum, AUDIT, writer=v1.fingerprint)
    read = decode_audit(value)
    assert read == old
    assert read.per_partner() == (old,)


def test_a_version_1_reader_sees_a_routed_record_as_a_decision_it_does_not_know() -> None:
    catalog = Catalog.default()
    decision = ReleaseDecision(ADMITTED.bulletin.bulletin_id, PARTNERS[0], ReleaseKind.FULL,
                               Rule.SCORE_FULL, "", None, Tlp.AMBER, frozenset())  # fmt: skip
    out = routed_audit(ADMITTED, [(decision, ())], Source("t", 0, 1), T0)
    as_v1 = schemaless_reader(
        io.BytesIO(out.value[HEADER_SIZE:]),
        catalog.get(AUDIT, 3).parsed,
        catalog.get(AUDIT, 1).parsed,
    )
    assert isinstance(as_v1, dict)
    assert as_v1["decision"] == ROUTED
    assert "decisions" not in as_v1
    assert "facts" not in as_v1


def test_a_duplicate_stays_one_decision_with_the_version_1_header() -> None:
    out = duplicate_audit(ADMITTED, Source("t", 0, 2), T0)
    assert hdr.header(list(out.headers), AUDIT_SUMMARY) is not None
    record = decode_audit(out.value)
    assert record.decision == "DUPLICATE"
    assert record.per_partner() == (record,)


def test_decisions_belong_to_routed_records_only() -> None:
    decision = {"partner": PARTNERS[0], "decision": "FULL", "rule": "score_full"}
    with pytest.raises(ValidationError):
        validate_audit({**sample_audit().model_dump(), "decision": ROUTED, "rule": "per_partner"})
    with pytest.raises(ValidationError):
        validate_audit({**sample_audit().model_dump(), "decisions": [decision]})


@pytest.mark.parametrize(
    "header",
    [b"", b"a|b|c", b"pa|id|notms|cr=FULL", b"pa|id|1000|cr-FULL", b"pa|id|1000|cr=FULL|x"],
)
def test_a_malformed_decisions_header_falls_back_to_decoding(header: bytes) -> None:
    assert release_summaries([("enlace-audit-decisions", header)]) is None
