"""Bulletin -> MISP feed event -> ``parse_misp`` -> ``prepare_items`` -> the same bulletin.

The consumer's MISP mapping and the producer's MISP intake share ``schemas.misp_vocab``; this
holds them to each other. Compared (``COMPARED``): every field the mapping covers. Not
compared, because the MISP event does not carry them on purpose: ``bulletin_id`` (derived
from the event's uuid and timestamp), ``origin``/``origin_country`` (the publisher, not the
event's Orgc), ``issued_at`` (now, at publication), ``valid_until`` and ``references``
(not mapped; see ``consumers.misp_mapping``).

And a realistic MISP export (as MISP 2.4/2.5 writes it) with parts Enlace cannot take: each
is named in the warnings, and events missing what a bulletin requires are refused.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from consumers.misp_mapping import event_json
from consumers.records import Release
from producers.inputs import Problem
from producers.misp_intake import MispParsed, parse_misp
from producers.prepare import prepare_items
from schemas.models import ThreatBulletin
from schemas.projection import tearline
from tests.unit.test_misp_feed import IDS, NAMES, REGISTRY, SAMPLES
from tests.unit.test_models_hypothesis import bulletins

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
COMPARED = (
    "category",
    "severity",
    "classification",
    "tearline_classification",
    "tlp",
    "releasable_to",
    "caveats",
    "title",
    "summary",
    "details",
    "source_reliability",
    "info_credibility",
    "source_type",
    "location",
    "route",
    "entities",
    "seizure",
    "indicators",
    "language",
)


def _through_misp(copy: ThreatBulletin, release: Release) -> tuple[ThreatBulletin, MispParsed]:
    data = json.dumps(event_json(copy, release, agency_names=NAMES)).encode()
    parsed = parse_misp(data, name="event.json")
    assert isinstance(parsed, MispParsed)
    assert parsed.problems == ()
    ready, problems = prepare_items(parsed.items, REGISTRY.get(copy.origin), NOW)
    assert problems == []
    ((_, back),) = ready
    return back, parsed


def _fields(bulletin: ThreatBulletin) -> dict[str, Any]:
    return {name: getattr(bulletin, name) for name in COMPARED}


@pytest.mark.parametrize("release", list(Release))
@pytest.mark.parametrize(("name", "bulletin"), SAMPLES, ids=IDS)
def test_every_sample_survives_a_misp_round_trip(
    name: str, bulletin: ThreatBulletin, release: Release
) -> None:
    copy = bulletin if release is Release.FULL else tearline(bulletin)
    back, parsed = _through_misp(copy, release)
    assert _fields(back) == _fields(copy), name
    assert parsed.warnings == (), name
    assert back.origin == copy.origin


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bulletin=bulletins())
def test_any_bulletin_survives_a_misp_round_trip(bulletin: ThreatBulletin) -> None:
    back, _ = _through_misp(bulletin, Release.FULL)
    assert _fields(back) == _fields(bulletin)


def test_the_same_event_version_is_the_same_bulletin_and_an_edit_is_new() -> None:
    bulletin = SAMPLES[0][1]
    event = event_json(bulletin, Release.FULL, agency_names=NAMES)
    first = parse_misp(json.dumps(event).encode()).items[0].obj["bulletin_id"]
    again = parse_misp(json.dumps(event, indent=2).encode()).items[0].obj["bulletin_id"]
    event["Event"]["timestamp"] = str(int(event["Event"]["timestamp"]) + 60)
    edited = parse_misp(json.dumps(event).encode()).items[0].obj["bulletin_id"]
    assert first == again != edited


# -- a MISP export as MISP writes it ------------------------------------------------------

EXPORT: dict[str, Any] = {
    "Event": {
        "id": "1337",
        "orgc_id": "2",
        "org_id": "1",
        "date": "2026-05-30",
        "threat_level_id": "2",
        "info": "Phishing campaign against payroll portals",
        "published": True,
        "uuid": "5e1f6a3b-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        "attribute_count": "7",
        "analysis": "1",
        "timestamp": "1780000000",
        "distribution": "1",
        "proposal_email_lock": False,
        "locked": False,
        "publish_timestamp": "1780000100",
        "sharing_group_id": "0",
        "disable_correlation": False,
        "extends_uuid": "",
        "Org": {"id": "1", "name": "CR-MSP CSIRT", "uuid": "1b2c3d4e-0000-4000-8000-000000000001"},
        "Orgc": {"id": "2", "name": "CR-MSP CSIRT", "uuid": "1b2c3d4e-0000-4000-8000-000000000001"},
        "Attribute": [
            {
                "id": "1",
                "type": "ip-dst",
                "category": "Network activity",
                "to_ids": True,
                "uuid": "6a1f0b2c-0000-4000-8000-000000000010",
                "event_id": "1337",
                "distribution": "5",
                "timestamp": "1780000000",
                "comment": "C2",
                "value": "203.0.113.77",
                "deleted": False,
                "Tag": [{"id": "5", "name": "tlp:green", "colour": "#339900"}],
            },
            {"type": "domain", "category": "Network activity", "value": "planillas.example"},
            {"type": "comment", "category": "Other", "value": "Seen by three ministries."},
            {"type": "x509-fingerprint-sha1", "category": "Network activity", "value": "a" * 40},
            {
                "type": "malware-sample",
                "category": "Payload delivery",
                "value": "invoice.exe|" + "b" * 32,
                "data": "UEsDBAoAAAAAAA==",
            },
            {
                "type": "url",
                "category": "Network activity",
                "value": "https://x.example/secret",
                "Tag": [{"name": "tlp:red"}],
            },
            {"type": "sha256", "category": "Payload delivery", "value": "c" * 64, "deleted": True},
        ],
        "Object": [
            {
                "name": "file",
                "meta-category": "file",
                "template_uuid": "688c46fb-5edb-40a3-8273-1af7923e2215",
                "Attribute": [{"object_relation": "filename", "type": "filename", "value": "a"}],
            }
        ],
        "Galaxy": [{"name": "Threat Actor", "type": "threat-actor"}],
        "Tag": [
            {"id": "1", "name": "tlp:amber", "colour": "#ffc000", "exportable": True},
            {"id": "2", "name": 'enlace:category="cyber"'},
            {"id": "3", "name": 'enlace:classification="restricted"'},
            {"id": "4", "name": 'misp-galaxy:threat-actor="ShadowTaxa"'},
            {"id": "6", "name": 'admiralty-scale:source-reliability="b"'},
        ],
    }
}


def _rules(problems: tuple[Problem, ...]) -> dict[str, str]:
    return {p.field: p.rule for p in problems}


def test_a_misp_export_publishes_what_maps_and_names_what_does_not() -> None:
    parsed = parse_misp(json.dumps([EXPORT]).encode(), name="misp-export.json")
    assert isinstance(parsed, MispParsed)
    assert parsed.problems == ()
    warnings = _rules(parsed.warnings)
    assert warnings["Attribute[3] (type=x509-fingerprint-sha1)"].startswith("not mapped")
    assert warnings["Attribute[4] (type=malware-sample)"].startswith("not mapped")
    assert "stricter than the event" in warnings["Attribute[5] (type=url)"]
    assert "Object[0] (name=file)" in warnings
    assert "Galaxy[0] (Threat Actor)" in warnings
    assert """Tag 'misp-galaxy:threat-actor="ShadowTaxa"'""" in warnings
    for defaulted in ("info_credibility", "source_type", "language", "summary"):
        assert defaulted in warnings
    ready, problems = prepare_items(parsed.items, REGISTRY.get("cr-msp"), NOW)
    assert problems == []
    ((_, bulletin),) = ready
    assert bulletin.tlp.value == "AMBER"
    assert bulletin.severity.value == "MEDIUM"  # threat_level_id 2
    assert bulletin.source_reliability.value == "B"
    assert bulletin.info_credibility.value == "C6"
    assert bulletin.tearline_classification == bulletin.classification
    assert [(i.type.value, i.value) for i in bulletin.indicators] == [
        ("IPV4", "203.0.113.77"),
        ("DOMAIN", "planillas.example"),
    ]
    assert bulletin.details == "Seen by three ministries."
    assert bulletin.summary == bulletin.title


@pytest.mark.parametrize(
    ("drop", "field"),
    [
        ("tlp:amber", "tlp"),
        ('enlace:category="cyber"', "category"),
        ('enlace:classification="restricted"', "classification"),
    ],
)
def test_an_event_without_a_required_marking_is_refused(drop: str, field: str) -> None:
    event = json.loads(json.dumps(EXPORT))
    event["Event"]["Tag"] = [t for t in event["Event"]["Tag"] if t["name"] != drop]
    parsed = parse_misp(json.dumps(event).encode())
    assert parsed.items == ()
    assert field in _rules(parsed.problems)


def test_undefined_threat_level_without_severity_is_refused() -> None:
    event = json.loads(json.dumps(EXPORT))
    event["Event"]["threat_level_id"] = "4"
    parsed = parse_misp(json.dumps(event).encode())
    assert parsed.items == ()
    assert "severity" in _rules(parsed.problems)


def test_conflicting_enlace_tags_are_refused() -> None:
    event = json.loads(json.dumps(EXPORT))
    event["Event"]["Tag"].append({"name": 'enlace:category="gangs"'})
    parsed = parse_misp(json.dumps(event).encode())
    assert parsed.items == ()
    assert any("given twice" in p.rule for p in parsed.problems)


def test_api_answers_bare_events_and_syntax_errors() -> None:
    answer = {"response": [EXPORT, EXPORT["Event"]]}
    assert len(parse_misp(json.dumps(answer).encode()).items) == 2
    assert len(parse_misp(json.dumps(EXPORT["Event"]).encode()).items) == 1
    broken = parse_misp(b'{"Event": ')
    assert broken.items == ()
    assert broken.problems[0].field == "(json)"
    assert parse_misp(b"[1]").problems[0].field == "(event)"
