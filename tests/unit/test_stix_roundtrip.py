"""STIX both ways: every sample bulletin, full and tearline, written by the consumers' mapping
and read back by the producers' intake, is the same bulletin; an OpenCTI-style bundle with
objects a bulletin has no room for still publishes, naming what it left out.

Covered (equal after the round trip): id, origin and its country, issued_at, category,
severity, classification, tearline classification, TLP, recipients, caveats, title, summary,
details, source reliability, information credibility, source type, language, location
(country; coordinates and place in full copies), route, the indicators STIX can express
and, when there are such indicators, valid_until (STIX keeps it on indicators only).

Dropped by the mapping (no faithful STIX core object): entities, seizure, references,
``OTHER`` indicators, and valid_until of a bulletin without mapped indicators.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.records import Release
from consumers.stix_mapping import bundle_json, stix_pattern
from enlace.core.registry import Agency
from producers.inputs import ParsedInput
from producers.prepare import prepare_items
from producers.stix_intake import parse_stix
from schemas.models import Indicator, ThreatBulletin
from schemas.projection import tearline
from schemas.stix_vocab import TLP2_MARKING_IDS, parse_pattern
from schemas.vocab import IndicatorType, Tlp
from tests.unit.test_stix_validator import REGISTRY, SAMPLES

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
NAMES = {a.id: a.name for a in REGISTRY}


def _agency(agency_id: str) -> Agency:
    known = {a.id: a for a in REGISTRY}
    return known.get(agency_id) or Agency(
        id=agency_id, name=agency_id, country=agency_id[:2].upper()
    )


def _expected(bulletin: ThreatBulletin) -> ThreatBulletin:
    """``bulletin`` without what the mapping drops (see the module docstring)."""
    indicators = tuple(i for i in bulletin.indicators if stix_pattern(i) is not None)
    return bulletin.model_copy(
        update={
            "entities": (),
            "seizure": None,
            "references": (),
            "indicators": indicators,
            "valid_until": bulletin.valid_until if indicators else None,
        }
    )


def _publish(parsed: ParsedInput, origin: str) -> list[ThreatBulletin]:
    assert parsed.problems == (), [p.describe() for p in parsed.problems]
    ready, problems = prepare_items(parsed.items, _agency(origin), NOW, digest=parsed.digest)
    assert problems == [], [p.describe() for p in problems]
    return [bulletin for _, bulletin in ready]


@pytest.mark.parametrize("release", list(Release))
@pytest.mark.parametrize(("name", "bulletin"), SAMPLES, ids=[name for name, _ in SAMPLES])
def test_a_bulletin_comes_back_from_its_bundle(
    name: str, bulletin: ThreatBulletin, release: Release
) -> None:
    copy = bulletin if release is Release.FULL else tearline(bulletin)
    data = json.dumps(bundle_json(copy, release, agency_names=NAMES)).encode()
    parsed = parse_stix(data)
    assert parsed.warnings == (), [w.describe() for w in parsed.warnings]
    assert _publish(parsed, copy.origin) == [_expected(copy)], name


def test_another_agencys_bundle_is_refused_as_its_words() -> None:
    bulletin = SAMPLES[0][1]
    parsed = parse_stix(json.dumps(bundle_json(bulletin, Release.FULL)).encode())
    assert len(parsed.items) == 1
    ready, problems = prepare_items(parsed.items, _agency("zz-other"), NOW)
    assert ready == []
    assert [p.field for p in problems] == ["origin"]


@pytest.mark.parametrize(
    "value", ["192.0.2.1", "it's", "back\\slash", "a'b\\'c", "https://x.example/?q='1'"]
)
def test_patterns_read_back(value: str) -> None:
    for kind in (IndicatorType.DOMAIN, IndicatorType.FILE_SHA256, IndicatorType.CRYPTO_WALLET):
        pattern = stix_pattern(Indicator(type=kind, value=value))
        assert pattern is not None
        assert parse_pattern(pattern) == (kind, value)
    assert parse_pattern("[ipv4-addr:value = '1.2.3.4' OR ipv4-addr:value = '5.6.7.8']") is None
    assert parse_pattern("[file:hashes.'SHA-1' = 'aa']") is None


# -- an OpenCTI export ----------------------------------------------------------------------

TLP1_AMBER = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
ORG = "identity--7b82b010-b1c0-4dae-981f-7756374a17df"
REPORT = "report--a7f4ed4b-84e4-4a7e-9a8e-1c2b3d4e5f60"
LOCATION = "location--5acd8b26-51c2-4608-86ed-e9edd43ad971"
INDICATOR = "indicator--51640662-9c78-4402-932f-1d4531624723"
MALWARE = "malware--c7a5ed74-d5d7-4d8b-a4f7-0d7a3e7a1a01"
ATTACK = "attack-pattern--4e6620ac-c30c-4f6d-918e-fa20cae7c1ce"
REL = "relationship--9d2c3a01-2f8e-4b5c-8d1a-6e7f8a9b0c1d"


def _opencti(**report: Any) -> dict[str, Any]:
    common = {
        "spec_version": "2.1",
        "created": "2026-04-30T10:00:00.000Z",
        "modified": "2026-04-30T11:00:00.000Z",
    }
    return {
        "type": "bundle",
        "id": "bundle--0f6e1a52-7f1d-4c4e-8f6b-1a2b3c4d5e6f",
        "objects": [
            {
                "type": "marking-definition",
                "spec_version": "2.1",
                "id": TLP1_AMBER,
                "created": "2017-01-20T00:00:00.000Z",
                "definition_type": "tlp",
                "name": "TLP:AMBER",
                "definition": {"tlp": "amber"},
            },
            {
                "type": "identity",
                "id": ORG,
                **common,
                "name": "CSIRT Costa Rica",
                "identity_class": "organization",
                "x_opencti_reliability": "B - Usually reliable",
            },
            {
                "type": "report",
                "id": REPORT,
                **common,
                "name": "Ransomware wave against ministries",
                "description": "An affiliate hits ministries.\n\nInitial access by phishing.",
                "report_types": ["threat-report"],
                "published": "2026-04-30T10:00:00.000Z",
                "confidence": 75,
                "created_by_ref": ORG,
                "object_marking_refs": [TLP1_AMBER],
                "labels": [
                    "category:cyber",
                    "severity:high",
                    "classification:restricted",
                    "ransomware",
                ],
                "object_refs": [LOCATION, INDICATOR, MALWARE, ATTACK, REL],
                "external_references": [{"source_name": "cert", "url": "https://cert.example/a"}],
                "x_opencti_score": 80,
                **report,
            },
            {
                "type": "location",
                "id": LOCATION,
                **common,
                "name": "Costa Rica",
                "country": "CR",
                "x_opencti_location_type": "Country",
            },
            {
                "type": "indicator",
                "id": INDICATOR,
                **common,
                "name": "C2",
                "pattern": "[ipv4-addr:value = '203.0.113.9']",
                "pattern_type": "stix",
                "valid_from": "2026-04-30T10:00:00.000Z",
                "x_opencti_score": 90,
            },
            {"type": "malware", "id": MALWARE, **common, "name": "LockBit", "is_family": True},
            {"type": "attack-pattern", "id": ATTACK, **common, "name": "Phishing"},
            {
                "type": "relationship",
                "id": REL,
                **common,
                "relationship_type": "indicates",
                "source_ref": INDICATOR,
                "target_ref": MALWARE,
            },
        ],
    }


def test_an_opencti_report_publishes_and_names_what_it_leaves_out() -> None:
    parsed = parse_stix(json.dumps(_opencti(), indent=2).encode())
    (bulletin,) = _publish(parsed, "cr-msp")
    assert bulletin.origin == "cr-msp"  # the creator is not an Enlace agency: the publisher's
    assert bulletin.tlp is Tlp.AMBER  # from TLP 1.0's official id
    assert (bulletin.category.value, bulletin.severity.value) == ("CYBER", "HIGH")
    assert bulletin.source_reliability.value == "B"  # the creator's x_opencti_reliability
    assert bulletin.info_credibility.value == "C2"  # confidence 75 (Appendix B: 60-79)
    assert (bulletin.summary, bulletin.details) == (
        "An affiliate hits ministries.",
        "Initial access by phishing.",
    )
    assert bulletin.location is not None
    assert bulletin.location.country == "CR"
    assert [(i.type.value, i.value) for i in bulletin.indicators] == [("IPV4", "203.0.113.9")]
    assert bulletin.issued_at == NOW  # issued when published, not when OpenCTI wrote it
    said = {(w.field, w.rule.split(":")[0]) for w in parsed.warnings}
    for kind, index in (("malware", 5), ("attack-pattern", 6), ("relationship", 7)):
        assert (f"objects[{index}] (type={kind})", "not mapped") in said
    fields = {w.field for w in parsed.warnings}
    assert {"objects[2] (type=report).x_opencti_score", "objects[2] (type=report).labels"} <= fields
    assert "objects[2] (type=report).external_references[0]" in fields
    assert "objects[4] (type=indicator)" in fields  # its x_opencti_score
    assert {"tearline_classification", "source_type", "language"} <= fields  # defaulted
    assert all(w.line is not None and w.line > 1 for w in parsed.warnings if "objects[" in w.field)


def test_the_same_export_is_the_same_bulletin_and_an_edit_a_new_one() -> None:
    first = parse_stix(json.dumps(_opencti()).encode()).items[0].obj["bulletin_id"]
    again = parse_stix(json.dumps(_opencti(), indent=1).encode()).items[0].obj["bulletin_id"]
    edited = (
        parse_stix(json.dumps(_opencti(modified="2026-04-30T12:00:00.000Z")).encode())
        .items[0]
        .obj["bulletin_id"]
    )
    assert first == again != edited


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"labels": ["severity:high", "classification:restricted"]}, "category"),
        ({"labels": ["category:cyber", "severity:high"]}, "classification"),
        ({"object_marking_refs": []}, "tlp"),
        ({"name": ""}, "title"),
        (
            {
                "labels": [
                    "category:cyber",
                    "category:gangs",
                    "severity:high",
                    "classification:restricted",
                ]
            },
            "category",
        ),
    ],
)
def test_a_report_without_what_stix_cannot_say_is_refused(
    change: dict[str, Any], field: str
) -> None:
    text = json.dumps(_opencti(**change), indent=2)
    parsed = parse_stix(text.encode())
    assert parsed.items == ()
    assert [p.field for p in parsed.problems] == [field]
    report_line = text[: text.index(f'"id": "{REPORT}"')].count("\n") + 1
    assert parsed.problems[0].line == report_line


def test_a_bad_label_value_is_refused_by_the_model() -> None:
    labels = ["category:piracy", "severity:high", "classification:restricted"]
    parsed = parse_stix(json.dumps(_opencti(labels=labels)).encode())
    ready, problems = prepare_items(parsed.items, _agency("cr-msp"), NOW)
    assert ready == []
    assert [p.field for p in problems] == ["category"]


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b'{"type": "report"}', "is not a STIX 2.1 bundle"),
        (b'{"type": "bundle", "id": "bundle--x", "objects": []}', "the bundle has no report"),
        (b'{"type": "bundle",', "Expecting"),
        (b"\xff", "input is not valid UTF-8"),
    ],
)
def test_what_is_not_a_bundle_is_refused(data: bytes, rule: str) -> None:
    parsed = parse_stix(data)
    assert parsed.items == ()
    assert rule in parsed.problems[0].rule


def test_several_tlps_take_the_strictest() -> None:
    refs = [TLP1_AMBER, TLP2_MARKING_IDS[Tlp.RED], TLP2_MARKING_IDS[Tlp.GREEN]]
    parsed = parse_stix(json.dumps(_opencti(object_marking_refs=refs)).encode())
    assert parsed.items[0].obj["tlp"] == "RED"
    assert "tlp" in {w.field for w in parsed.warnings}


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_PROPS = st.sampled_from(
    [
        "labels",
        "object_refs",
        "object_marking_refs",
        "external_references",
        "description",
        "name",
        "confidence",
        "created_by_ref",
        "lang",
        "x_opencti_reliability",
        "published",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_PROPS, _JSON, max_size=4), st.lists(_JSON, max_size=3))
def test_any_malformed_report_is_problems_never_a_crash(
    report: dict[str, Any], extra: list[Any]
) -> None:
    bundle = _opencti(**report)
    bundle["objects"].extend(extra)
    parsed = parse_stix(json.dumps(bundle).encode())
    ready, problems = prepare_items(parsed.items, _agency("cr-msp"), NOW)
    # One report: it publishes, or something says why not.
    assert (len(ready), bool(parsed.problems or problems)) in {(1, False), (0, True)}


def test_a_warning_on_an_object_points_at_its_line() -> None:
    text = json.dumps(_opencti(), indent=2)
    parsed = parse_stix(text.encode())
    (warning,) = [w for w in parsed.warnings if w.field == "objects[4] (type=indicator)"]
    assert warning.line == text[: text.index(f'"id": "{INDICATOR}"')].count("\n") + 1
