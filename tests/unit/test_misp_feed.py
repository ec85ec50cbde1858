"""The ``misp:DIR`` sink writes a MISP feed that pymisp (MISP's own library) loads.

Every sample bulletin, full and tearline, goes through the sink into a directory; each
``<uuid>.json`` loads with ``pymisp.MISPEvent.load_file`` with the expected attributes and
tags, ``manifest.json`` is what pymisp's ``MISPEvent.manifest`` makes of each event, and
``hashes.csv`` is what pymisp's feed generator (``attributes_hashes('md5')``) makes.
"""

from __future__ import annotations

import csv
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymisp
import pytest
from hypothesis import HealthCheck, given, settings

from consumers.misp_mapping import event_json
from consumers.records import Delivered, FeedRecord, Quarantined, Release
from consumers.sinks import MispFeedSink, build_sink, parse_sink_uri
from consumers.sinks import files as sink_files
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES
from schemas import misp_vocab as mv
from schemas.models import ThreatBulletin
from schemas.projection import tearline
from tests.samples import example_bulletins, fixed_bulletin, routed_bulletin, sample_bulletin
from tests.unit.test_models_hypothesis import bulletins

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
REGISTRY = Registry.load(DEFAULT_AGENCIES)
NAMES = {a.id: a.name for a in REGISTRY}
CYBER = [
    {"type": kind, "value": value}
    for kind, value in (
        ("IPV4", "192.0.2.10"),
        ("IPV6", "2001:db8::1"),
        ("DOMAIN", "evil.example"),
        ("URL", "https://evil.example/a?b='c'"),
        ("EMAIL", "ops@evil.example"),
        ("FILE_SHA256", "a" * 64),
        ("FILE_MD5", "b" * 32),
        ("CRYPTO_WALLET", "bc1qexampleexampleexample0000"),
        ("CRYPTO_WALLET", "4" + "A" * 94),
        ("OTHER", "anything"),
    )
]
DESCRIBE = pymisp.AbstractMISP().describe_types
KNOWN_TYPES = set(DESCRIBE["types"])


def samples() -> list[tuple[str, ThreatBulletin]]:
    """The bulletins the STIX tests use: every agency's sample, edge cases, the examples."""
    out = [(f"sample-{a.id}", sample_bulletin(a.id)) for a in REGISTRY]
    out += [
        ("fixed", fixed_bulletin()),
        ("routed", routed_bulletin("us-jiatfs")),
        ("cyber", sample_bulletin("cr-msp", category="CYBER", indicators=CYBER)),
        ("no-credibility", sample_bulletin(info_credibility="C6")),
        ("no-place", sample_bulletin(location=None, route=None)),
        ("clear", sample_bulletin(tlp="CLEAR")),
        ("red", sample_bulletin(tlp="RED", releasable_to=["cr-msp", "CR"])),
        ("low", sample_bulletin(severity="LOW", caveats=[])),
    ]
    out += [(f"example-{b.origin}-{n}", b) for n, b in enumerate(example_bulletins(NOW))]
    return out


SAMPLES = samples()
IDS = [name for name, _ in SAMPLES]


def delivered(bulletin: ThreatBulletin, release: Release, offset: int = 0) -> Delivered:
    shown = bulletin if release is Release.FULL else tearline(bulletin)
    record = FeedRecord("enlace.feed.cr-msp", 0, offset, b"k", b"v", ())
    return Delivered(record, shown, release, "key-1", b"sig", NOW)


def _load(path: Path) -> pymisp.MISPEvent:
    event = pymisp.MISPEvent()
    event.load_file(path)
    return event


def _manifest(directory: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((directory / "manifest.json").read_bytes())
    return manifest


def _tags(event: pymisp.MISPEvent) -> set[str]:
    return {tag.name for tag in event.tags}


def _hashes(directory: Path) -> set[tuple[str, str]]:
    with (directory / "hashes.csv").open(newline="") as handle:
        return {(row[0], row[1]) for row in csv.reader(handle)}


def _expected_values(copy: ThreatBulletin) -> set[str]:
    values = {copy.summary, *(i.value for i in copy.indicators), *(e.name for e in copy.entities)}
    values |= {ident.value for e in copy.entities for ident in e.identifiers}
    if copy.details:
        values.add(copy.details)
    return values


def check_feed(directory: Path, expected: dict[str, tuple[ThreatBulletin, Release]]) -> None:
    """Every event file loads in pymisp and matches its bulletin; manifest and hashes agree."""
    manifest = json.loads((directory / "manifest.json").read_bytes())
    assert set(manifest) == set(expected)
    files = {p.stem for p in directory.glob("*.json") if p.name != "manifest.json"}
    assert files == set(expected)
    want_hashes: set[tuple[str, str]] = set()
    for uuid, (bulletin, release) in expected.items():
        copy = bulletin if release is Release.FULL else tearline(bulletin)
        event = _load(directory / f"{uuid}.json")
        assert event.uuid == uuid == mv.event_uuid(bulletin.bulletin_id)
        assert event.info == bulletin.title
        assert event.Orgc.name == NAMES[bulletin.origin]
        assert event.Orgc.uuid == mv.org_uuid(bulletin.origin)
        assert event.distribution == mv.DISTRIBUTION[bulletin.tlp]
        assert event.threat_level_id == mv.THREAT_LEVEL[bulletin.severity]
        tags = _tags(event)
        assert mv.TLP_TAGS[bulletin.tlp] in tags
        assert mv.reliability_tag(bulletin.source_reliability.value) in tags
        assert mv.credibility_tag(bulletin.info_credibility.value[1:]) in tags
        assert mv.enlace_tag(mv.RELEASE, release.value) in tags
        assert mv.enlace_tag(mv.CATEGORY, bulletin.category.value.lower()) in tags
        values = {a.value for a in event.attributes}
        assert values >= _expected_values(copy)
        if release is Release.TEARLINE:
            assert bulletin.details is None or bulletin.details not in values
            assert not ({i.value for i in bulletin.indicators} & values)
            assert not ({e.name for e in bulletin.entities} & values)
        for attr in [*event.attributes, *(a for o in event.objects for a in o.attributes)]:
            assert attr.type in KNOWN_TYPES
            assert attr.type in DESCRIBE["category_type_mappings"][attr.category]
        geo = [o for o in event.objects if o.name == "geolocation"]
        if copy.location is not None:
            (obj,) = geo
            rel = {a.object_relation: a.value for a in obj.attributes}
            assert rel["countrycode"] == copy.location.country
            assert ("latitude" in rel) == (copy.location.lat is not None)
        else:
            assert geo == []
        # manifest.json: what pymisp itself makes of the event.
        assert manifest[uuid] == event.manifest[uuid]
        want_hashes |= {(h, uuid) for h in event.attributes_hashes("md5")}
    assert _hashes(directory) == want_hashes


def test_misp_sink_uri_builds_the_sink(tmp_path: Path) -> None:
    spec = parse_sink_uri(f"misp:{tmp_path}/feed")
    sink = build_sink(spec, agency_names=NAMES)
    assert isinstance(sink, MispFeedSink)
    assert sink.name == f"misp:{tmp_path}/feed"


@pytest.mark.parametrize("release", list(Release))
async def test_every_sample_writes_a_feed_pymisp_loads(tmp_path: Path, release: Release) -> None:
    sink = MispFeedSink(str(tmp_path / "feed"), agency_names=NAMES)
    async with sink:
        await sink.put([delivered(b, release, n) for n, (_, b) in enumerate(SAMPLES)])
    check_feed(tmp_path / "feed", {mv.event_uuid(b.bulletin_id): (b, release) for _, b in SAMPLES})


async def test_full_after_tearline_upgrades_and_never_back(tmp_path: Path) -> None:
    bulletin = sample_bulletin()
    uuid = mv.event_uuid(bulletin.bulletin_id)
    directory = tmp_path / "feed"
    async with MispFeedSink(str(directory), agency_names=NAMES) as sink:
        await sink.put([delivered(bulletin, Release.TEARLINE)])
        check_feed(directory, {uuid: (bulletin, Release.TEARLINE)})
        tearline_ts = _manifest(directory)[uuid]["timestamp"]
        await sink.put([delivered(bulletin, Release.FULL, 1)])
        check_feed(directory, {uuid: (bulletin, Release.FULL)})
        full = (directory / f"{uuid}.json").read_bytes()
        # MISP takes an update only from a newer timestamp.
        assert _manifest(directory)[uuid]["timestamp"] > tearline_ts
        await sink.put([delivered(bulletin, Release.TEARLINE, 2)])
        assert (directory / f"{uuid}.json").read_bytes() == full
    # A new sink on the same directory knows it holds the full copy (from the manifest).
    async with MispFeedSink(str(directory), agency_names=NAMES) as sink:
        await sink.put([delivered(bulletin, Release.TEARLINE, 3)])
    assert (directory / f"{uuid}.json").read_bytes() == full
    check_feed(directory, {uuid: (bulletin, Release.FULL)})


async def test_tearline_and_full_in_one_batch_keep_the_full(tmp_path: Path) -> None:
    bulletin = sample_bulletin()
    directory = tmp_path / "feed"
    async with MispFeedSink(str(directory), agency_names=NAMES) as sink:
        await sink.put([delivered(bulletin, Release.FULL), delivered(bulletin, Release.TEARLINE)])
    check_feed(directory, {mv.event_uuid(bulletin.bulletin_id): (bulletin, Release.FULL)})


async def test_redelivery_is_idempotent(tmp_path: Path) -> None:
    batch = [delivered(b, Release.FULL, n) for n, (_, b) in enumerate(SAMPLES[:5])]
    directory = tmp_path / "feed"
    async with MispFeedSink(str(directory), agency_names=NAMES) as sink:
        await sink.put(batch)
        before = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
        await sink.put(batch)
    async with MispFeedSink(str(directory), agency_names=NAMES) as sink:
        await sink.put(batch)
    after = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    assert after == before
    assert sink.held("enlace.feed.cr-msp", 0) == 5


async def test_events_the_manifest_missed_are_recovered_at_start(tmp_path: Path) -> None:
    """A crash between a batch's event files and its manifest: the next start reads them."""
    directory = tmp_path / "feed"
    first, second = sample_bulletin(), sample_bulletin()
    async with MispFeedSink(str(directory), agency_names=NAMES) as sink:
        await sink.put([delivered(first, Release.FULL)])
    orphan = event_json(second, Release.FULL, agency_names=NAMES)
    (directory / f"{orphan['Event']['uuid']}.json").write_text(json.dumps(orphan))
    sink = MispFeedSink(str(directory), agency_names=NAMES)
    async with sink:
        await sink.put([delivered(first, Release.TEARLINE, 1)])  # a no-op write
        await sink.put([delivered(sample_bulletin(), Release.FULL, 2)])
        assert mv.event_uuid(second.bulletin_id) in sink.manifest
    manifest = json.loads((directory / "manifest.json").read_bytes())
    assert mv.event_uuid(second.bulletin_id) in manifest
    assert {uuid for _, uuid in _hashes(directory)} == set(manifest)


async def test_quarantine_goes_to_its_own_directory(tmp_path: Path) -> None:
    directory = tmp_path / "feed"
    bad = Quarantined(FeedRecord("enlace.feed.cr-msp", 2, 9, None, b"junk", ()), "bad", "x", NOW)
    async with MispFeedSink(str(directory)) as sink:
        await sink.put([bad])
    (q,) = (directory / "quarantine").iterdir()
    assert q.name == "enlace.feed.cr-msp-2-9.json"
    assert json.loads(q.read_text())["reason"] == "bad"
    assert not (directory / "manifest.json").exists()  # nothing for MISP yet
    assert sink.held("enlace.feed.cr-msp", 2) == 10


async def test_a_batch_of_500_writes_the_manifest_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest and hashes are rewritten per batch, not per bulletin. The time is
    printed (``-s``), never asserted."""
    written: list[str] = []
    real = sink_files.atomic_writes

    def counting(files: Any, pool: Any) -> None:
        written.extend(p.name for p in files)
        real(files, pool)

    monkeypatch.setattr(sink_files, "atomic_writes", counting)
    batch = [delivered(sample_bulletin(), Release.FULL, n) for n in range(500)]
    directory = tmp_path / "feed"
    async with MispFeedSink(str(directory), agency_names=NAMES) as sink:
        started = time.perf_counter()
        await sink.put(batch)
        elapsed = time.perf_counter() - started
    print(f"500 bulletins through the MISP sink: {elapsed * 1000:.0f} ms")
    assert written.count("manifest.json") == written.count("hashes.csv") == 1
    assert len(json.loads((directory / "manifest.json").read_bytes())) == 500
    assert len(list(directory.glob("*.json"))) == 501


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bulletin=bulletins())
def test_every_attribute_has_a_type_and_category_misp_knows(bulletin: ThreatBulletin) -> None:
    """The invariant MISP's importer enforces: each attribute's type exists and is allowed in
    its category (describeTypes.json shipped with pymisp); pymisp loads the event."""
    for release in Release:
        copy = bulletin if release is Release.FULL else tearline(bulletin)
        event: dict[str, Any] = event_json(copy, release, agency_names=NAMES)
        body = event["Event"]
        attrs = [*body["Attribute"], *(a for o in body.get("Object", ()) for a in o["Attribute"])]
        for attr in attrs:
            assert attr["type"] in KNOWN_TYPES
            assert attr["type"] in DESCRIBE["category_type_mappings"][attr["category"]]
        loaded = pymisp.MISPEvent()
        loaded.load(json.dumps(event))
        assert len(loaded.attributes) == len(body["Attribute"])


def test_indicators_take_their_misp_types_and_odd_values_stay_text() -> None:
    odd = [
        {"type": "IPV4", "value": "not-an-ip"},
        {"type": "IPV6", "value": "192.0.2.1"},
        {"type": "FILE_MD5", "value": "xyz"},
    ]
    bulletin = sample_bulletin("cr-msp", category="CYBER", indicators=CYBER + odd)
    attrs = event_json(bulletin, Release.FULL)["Event"]["Attribute"]
    by_value = {a["value"]: a for a in attrs}
    types = [by_value[i["value"]]["type"] for i in CYBER]
    assert types == [
        "ip-dst", "ip-dst", "domain", "url", "email-src", "sha256", "md5", "btc", "xmr", "other"
    ]  # fmt: skip
    for indicator in odd:
        attr = by_value[indicator["value"]]
        assert (attr["type"], attr["to_ids"]) == ("text", False)
        tag = mv.enlace_tag(mv.INDICATOR, indicator["type"].lower())
        assert [t["name"] for t in attr["Tag"]] == [tag]
