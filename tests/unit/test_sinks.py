"""Sink URIs, the STIX 2.1 mapping, and the file sinks on a temp directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stix2
from hypothesis import given
from hypothesis import strategies as st

from consumers.records import Delivered, FeedRecord, Quarantined, Release
from consumers.sinks import JsonlSink, StixSink, parse_sink_uri, parse_sink_uris
from consumers.sinks.webhook import backoff_delays, idempotency_key
from consumers.stix_mapping import (
    TLP2_MARKING_IDS,
    bulletin_bundle,
    bundle_json,
    stix_pattern,
)
from enlace.core.errors import ConfigError
from schemas.envelope import seal
from schemas.models import Indicator, ThreatBulletin
from schemas.projection import tearline
from schemas.signing import AgencyKey
from schemas.vocab import IndicatorType, Tlp
from tests.feed_records import feed_message
from tests.samples import sample_bulletin

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
KEY = AgencyKey.generate("pa-senafront", valid_from=datetime(2026, 1, 1, tzinfo=UTC))

CYBER_INDICATORS = [
    {"type": "IPV4", "value": "203.0.113.7"},
    {"type": "IPV6", "value": "2001:db8::1"},
    {"type": "DOMAIN", "value": "evil.example"},
    {"type": "URL", "value": "http://evil.example/it's"},
    {"type": "EMAIL", "value": "boss@evil.example"},
    {"type": "FILE_SHA256", "value": "a" * 64},
    {"type": "FILE_MD5", "value": "b" * 32},
    {"type": "CRYPTO_WALLET", "value": "bc1qexample"},
    {"type": "OTHER", "value": "something"},
]


def _bulletin(**over: object) -> ThreatBulletin:
    return sample_bulletin("pa-senafront", issued_at=NOW - timedelta(minutes=3), **over)


def _delivered(bulletin: ThreatBulletin, release: Release = Release.FULL) -> Delivered:
    msg = feed_message(seal(bulletin, KEY), release)
    record = FeedRecord("enlace.feed.cr-msp", 1, 5, msg.key, msg.value, tuple(msg.headers))
    shown = bulletin if release is Release.FULL else tearline(bulletin)
    return Delivered(record, shown, release, KEY.key_id, dict(msg.headers)["enlace-sig"], NOW)


# -- URIs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "kind", "target"),
    [
        ("sqlite:/var/lib/enlace/inbox.db", "sqlite", "/var/lib/enlace/inbox.db"),
        ("jsonl:feed.jsonl", "jsonl", "feed.jsonl"),
        ("stix:out/stix", "stix", "out/stix"),
        ("webhook:https://siem.example/hook?x=1", "webhook", "https://siem.example/hook?x=1"),
        (" sqlite:C:/x.db ", "sqlite", "C:/x.db"),
    ],
)
def test_parse_sink_uri(uri: str, kind: str, target: str) -> None:
    spec = parse_sink_uri(uri)
    assert (spec.kind, spec.target) == (kind, target)
    assert parse_sink_uri(spec.uri) == spec


@pytest.mark.parametrize(
    "uri",
    ["", "sqlite", "sqlite:", "kafka:topic", "/var/x.db", "webhook:ftp://x", "webhook:siem"],
)
def test_bad_sink_uris(uri: str) -> None:
    with pytest.raises(ConfigError):
        parse_sink_uri(uri)


def test_same_sink_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="twice"):
        parse_sink_uris(["jsonl:a.jsonl", "sqlite:a.db", "jsonl:a.jsonl"])
    assert len(parse_sink_uris(["jsonl:a.jsonl", "jsonl:b.jsonl"])) == 2


# -- STIX mapping -------------------------------------------------------------------------


def _objects(bundle: stix2.Bundle, kind: str) -> list[Any]:
    return [o for o in bundle.objects if o.type == kind]


def test_full_bundle_parses_and_carries_everything() -> None:
    bulletin = _bulletin(category="CYBER", indicators=CYBER_INDICATORS, info_credibility="C2")
    bundle = bulletin_bundle(bulletin, Release.FULL, agency_names={"pa-senafront": "SENAFRONT"})
    parsed = stix2.parse(bundle.serialize(), allow_custom=False)
    markings = {m.id: m for m in _objects(parsed, "marking-definition")}
    marking = markings[TLP2_MARKING_IDS[Tlp.AMBER]]
    assert marking.name == "TLP:AMBER"
    assert set(markings) == {marking.id, TLP2_MARKING_IDS[Tlp.CLEAR]}  # CLEAR: shared objects
    (identity,) = _objects(parsed, "identity")
    assert identity.name == "SENAFRONT"
    (report,) = _objects(parsed, "report")
    assert report.name == bulletin.title
    assert bulletin.details is not None
    assert bulletin.details in report.description
    assert report.confidence == 70  # Admiralty credibility 2 → 70 (STIX 2.1 Appendix B)
    assert report.created_by_ref == identity.id
    assert "admiralty:B2" in report.labels
    indicators = _objects(parsed, "indicator")
    assert len(indicators) == 8  # OTHER has no STIX pattern
    assert set(report.object_refs) >= {o.id for o in indicators}
    # The bulletin's own objects carry its TLP; the shared ones (its originator, countries)
    # are public and fixed, so one id never names two contents across bundles.
    shared = {identity.id} | {o.id for o in _objects(parsed, "location") if "latitude" not in o}
    for obj in parsed.objects:
        if obj.type != "marking-definition":
            want = TLP2_MARKING_IDS[Tlp.CLEAR] if obj.id in shared else marking.id
            assert obj.object_marking_refs == [want], obj.id
    locations = _objects(parsed, "location")
    assert any(getattr(loc, "latitude", None) is not None for loc in locations)
    assert {loc.country for loc in locations} >= {"PA", "CO", "MX", "CR"}


@pytest.mark.parametrize("tlp", list(Tlp))
def test_every_tlp_uses_its_official_marking(tlp: Tlp) -> None:
    over: dict[str, object] = {"tlp": tlp.value}
    if tlp is Tlp.RED:
        over["releasable_to"] = ["cr-msp"]
    bundle = bulletin_bundle(_bulletin(**over), Release.FULL)
    (report,) = _objects(bundle, "report")
    assert report.object_marking_refs == [TLP2_MARKING_IDS[tlp]]
    (marking,) = [
        m for m in _objects(bundle, "marking-definition") if m.id == TLP2_MARKING_IDS[tlp]
    ]
    ext = marking.extensions["extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"]
    assert ext["tlp_2_0"] == tlp.value.lower().replace("_", "+")


def test_tearline_bundle_has_no_details_indicators_or_coordinates() -> None:
    bulletin = _bulletin(indicators=CYBER_INDICATORS)
    bundle = bulletin_bundle(tearline(bulletin), Release.TEARLINE)
    stix2.parse(bundle.serialize())
    (report,) = _objects(bundle, "report")
    assert bulletin.details is not None
    assert bulletin.details not in report.description
    assert _objects(bundle, "indicator") == []
    assert all(getattr(loc, "latitude", None) is None for loc in _objects(bundle, "location"))


def test_ids_are_deterministic_and_full_supersedes_tearline() -> None:
    bulletin = _bulletin()
    full_a = bulletin_bundle(bulletin, Release.FULL)
    full_b = bulletin_bundle(bulletin, Release.FULL)
    assert full_a.serialize() == full_b.serialize()
    (report_full,) = _objects(full_a, "report")
    (report_tear,) = _objects(bulletin_bundle(tearline(bulletin), Release.TEARLINE), "report")
    assert report_full.id == report_tear.id
    assert report_full.modified > report_tear.modified


def test_shared_objects_have_one_content_in_every_bundle() -> None:
    """STIX 2.1: one id and ``modified`` name one content. An identity or country location
    must not take each bulletin's time or TLP."""
    seen: dict[str, dict[str, Any]] = {}
    for over in ({"tlp": "GREEN"}, {"tlp": "AMBER"}, {"tlp": "CLEAR"}):
        bulletin = _bulletin(**over)
        for release, copy in ((Release.FULL, bulletin), (Release.TEARLINE, tearline(bulletin))):
            for obj in bundle_json(copy, release)["objects"]:
                if obj["type"] in {"identity", "marking-definition"} or (
                    obj["type"] == "location" and "latitude" not in obj
                ):
                    assert seen.setdefault(obj["id"], obj) == obj


def test_unjudgeable_credibility_has_no_confidence() -> None:
    (report,) = _objects(bulletin_bundle(_bulletin(info_credibility="C6"), Release.FULL), "report")
    assert "confidence" not in report


@given(st.text(min_size=1, max_size=60).filter(lambda t: t.strip() and t.isprintable()))
def test_patterns_escape_any_value(value: str) -> None:
    pattern = stix_pattern(Indicator(type=IndicatorType.DOMAIN, value=value))
    assert pattern is not None
    stix2.Indicator(pattern=pattern, pattern_type="stix", valid_from=NOW)


# -- file sinks ---------------------------------------------------------------------------


async def test_jsonl_sink_appends_and_separates_quarantine(tmp_path: Path) -> None:
    sink = JsonlSink(str(tmp_path / "out" / "feed.jsonl"))
    item = _delivered(_bulletin())
    bad = Quarantined(FeedRecord("t", 0, 9, None, b"junk", ()), "bad_magic", "no", NOW)
    async with sink:
        await sink.put([item, bad])
        await sink.put([item])
    lines = (tmp_path / "out" / "feed.jsonl").read_text().splitlines()
    assert [json.loads(line)["bulletin_id"] for line in lines] == [item.bulletin_id] * 2
    assert json.loads(lines[0])["verification"] == {"verified": True, "key_id": KEY.key_id}
    (q,) = (tmp_path / "out" / "feed.quarantine.jsonl").read_text().splitlines()
    assert json.loads(q)["reason"] == "bad_magic"
    assert sink.held("enlace.feed.cr-msp", 1) == 6
    assert sink.held("t", 0) == 10


async def test_stix_sink_never_downgrades(tmp_path: Path) -> None:
    sink = StixSink(str(tmp_path / "stix"))
    bulletin = _bulletin()
    async with sink:
        await sink.put([_delivered(bulletin, Release.TEARLINE)])
        path = sink.bundle_path(bulletin.bulletin_id)
        assert "release:tearline" in path.read_text()
        await sink.put([_delivered(bulletin, Release.FULL)])
        assert "release:full" in path.read_text()
        await sink.put([_delivered(bulletin, Release.TEARLINE)])
        assert "release:full" in path.read_text()
    assert [p.name for p in (tmp_path / "stix").glob("*.json")] == [path.name]


# -- webhook helpers ----------------------------------------------------------------------


def test_backoff_grows_and_caps() -> None:
    delay = backoff_delays(0.2, 5.0)
    assert 0.16 <= delay(1) <= 0.24
    assert 0.32 <= delay(2) <= 0.48
    assert all(delay(n) <= 6.0 for n in range(1, 200))


def test_idempotency_keys() -> None:
    item = _delivered(_bulletin())
    assert idempotency_key(item) == f"{item.bulletin_id}:full"
    bad = Quarantined(FeedRecord("t", 2, 9, None, b"", ()), "bad_magic", "no", NOW)
    assert idempotency_key(bad) == "quarantine:t:2:9"
