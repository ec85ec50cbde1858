"""A bulletin as a STIX 2.1 bundle, for MISP and OpenCTI (pure).

One bundle per bulletin: a ``report`` (title, summary and, for a full release, details) made
by the originator's ``identity``, with ``location`` objects (the place, and the route's
countries) and one ``indicator`` per cyber indicator with a STIX pattern. The bulletin's own
objects carry its TLP 2.0 marking, referenced by its official id and included as the official
marking-definition object (OASIS cti-stix-common-objects, TLP 2.0 extension).

Shared objects (the marking definitions, the agencies' identities, country locations) appear
in many bundles under one id, so each has one fixed content: fixed ``created``/``modified``,
marked TLP:CLEAR (an agency's name and a country are public), no creator. STIX 2.1 (3.2)
requires an object's id and ``modified`` to name one content; a country location that took
the bulletin's time and TLP would break that. They are built once and reused.

The bundle is built as plain JSON: the ``stix2`` objects validate every property on
construction and cost ~5 ms a bundle, the whole budget of a fast feed.
``tests/unit/test_stix_validator.py`` holds every sample bundle to the OASIS validator and
``stix2.parse`` (``bulletin_bundle`` here), so the hand-built form stays conformant.

Ids are UUIDv5 of the bulletin id, so writing the same bulletin twice yields the same
objects and importers dedupe. A full copy supersedes a tearline copy of the same bulletin:
same report id, ``modified`` one millisecond later.

Confidence: Admiralty information credibility mapped per STIX 2.1 Appendix B (1→90, 2→70,
3→50, 4→30, 5→10; 6 "cannot be judged" → no confidence). Source reliability and handling
markings (classification, caveats) travel as labels.

Not mapped: entities (people, vessels, phones...) and seizures have no faithful STIX 2.1
core object; they stay in the SQLite and JSONL sinks.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import stix2

from consumers.records import Release
from schemas.models import Indicator, ThreatBulletin
from schemas.vocab import IndicatorType, InfoCredibility, Tlp

# Fixed namespace for Enlace's deterministic STIX ids.
ENLACE_STIX_NAMESPACE = uuid.UUID("5f0c3a7e-2b1d-4c8e-9a6f-3d2e1b0c9a87")
IDENTITY_CREATED = datetime(2026, 1, 1, tzinfo=UTC)
# created = modified of every shared object (identities, country locations): fixed content.
SHARED_CREATED = "2026-01-01T00:00:00.000Z"

TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2_CREATED = "2022-10-01T00:00:00.000Z"
# Official STIX 2.1 marking-definition ids of TLP 2.0 (OASIS cti-stix-common-objects).
TLP2_MARKING_IDS: Mapping[Tlp, str] = {
    Tlp.CLEAR: "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    Tlp.GREEN: "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    Tlp.AMBER: "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    Tlp.AMBER_STRICT: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    Tlp.RED: "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
_TLP2_LEVEL: Mapping[Tlp, str] = {
    Tlp.CLEAR: "clear",
    Tlp.GREEN: "green",
    Tlp.AMBER: "amber",
    Tlp.AMBER_STRICT: "amber+strict",
    Tlp.RED: "red",
}
_TLP2_NAME: Mapping[Tlp, str] = {
    Tlp.CLEAR: "TLP:CLEAR",
    Tlp.GREEN: "TLP:GREEN",
    Tlp.AMBER: "TLP:AMBER",
    Tlp.AMBER_STRICT: "TLP:AMBER+STRICT",
    Tlp.RED: "TLP:RED",
}

# STIX 2.1 Appendix B, Admiralty credibility scale.
ADMIRALTY_CONFIDENCE: Mapping[InfoCredibility, int | None] = {
    InfoCredibility.C1: 90,
    InfoCredibility.C2: 70,
    InfoCredibility.C3: 50,
    InfoCredibility.C4: 30,
    InfoCredibility.C5: 10,
    InfoCredibility.C6: None,
}

# Object paths of the STIX patterns; CRYPTO_WALLET follows OpenCTI's custom observable.
PATTERN_PATHS: Mapping[IndicatorType, str] = {
    IndicatorType.IPV4: "ipv4-addr:value",
    IndicatorType.IPV6: "ipv6-addr:value",
    IndicatorType.DOMAIN: "domain-name:value",
    IndicatorType.URL: "url:value",
    IndicatorType.EMAIL: "email-addr:value",
    IndicatorType.FILE_SHA256: "file:hashes.'SHA-256'",
    IndicatorType.FILE_MD5: "file:hashes.MD5",
    IndicatorType.CRYPTO_WALLET: "cryptocurrency-wallet:value",
}


def stix_id(kind: str, *parts: str) -> str:
    return f"{kind}--{uuid.uuid5(ENLACE_STIX_NAMESPACE, '|'.join(parts))}"


def stix_time(value: datetime) -> str:
    """RFC 3339 UTC with milliseconds (bulletin times are timestamp-millis: exact)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@cache
def tlp_marking_json(tlp: Tlp) -> Mapping[str, Any]:
    """The official TLP 2.0 marking-definition object for ``tlp`` (shared, built once)."""
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP2_MARKING_IDS[tlp],
        "created": TLP2_CREATED,
        "name": _TLP2_NAME[tlp],
        "extensions": {
            TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": _TLP2_LEVEL[tlp]}
        },
    }


def tlp_marking(tlp: Tlp) -> stix2.MarkingDefinition:
    """The official TLP 2.0 marking-definition object for ``tlp``, as a ``stix2`` object."""
    return stix2.parse(dict(tlp_marking_json(tlp)))


_PUBLIC = (TLP2_MARKING_IDS[Tlp.CLEAR],)


@cache
def identity_json(agency: str, country: str, name: str) -> Mapping[str, Any]:
    """An agency's identity (shared: fixed content for a given name)."""
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": stix_id("identity", "agency", agency),
        "created": SHARED_CREATED,
        "modified": SHARED_CREATED,
        "name": name,
        "description": f"Enlace agency {agency} ({country})",
        "identity_class": "organization",
        "sectors": ["government-national"],
        "object_marking_refs": list(_PUBLIC),
    }


@cache
def country_json(country: str) -> Mapping[str, Any]:
    """A country as a location (shared by every bundle that names it)."""
    return {
        "type": "location",
        "spec_version": "2.1",
        "id": stix_id("location", "country", country),
        "created": SHARED_CREATED,
        "modified": SHARED_CREATED,
        "name": country,
        "country": country,
        "object_marking_refs": list(_PUBLIC),
    }


def stix_pattern(indicator: Indicator) -> str | None:
    """A STIX pattern for ``indicator``; None for types STIX cannot express."""
    path = PATTERN_PATHS.get(indicator.type)
    if path is None:
        return None
    literal = indicator.value.replace("\\", "\\\\").replace("'", "\\'")
    return f"[{path} = '{literal}']"


def _labels(bulletin: ThreatBulletin, release: Release) -> list[str]:
    labels = [
        f"category:{bulletin.category.value.lower()}",
        f"severity:{bulletin.severity.value.lower()}",
        f"classification:{bulletin.classification.value.lower()}",
        f"admiralty:{bulletin.source_reliability.value}{bulletin.info_credibility.value[1:]}",
        f"source-type:{bulletin.source_type.value.lower()}",
        f"release:{release.value}",
    ]
    labels.extend(f"caveat:{c.value.lower()}" for c in bulletin.caveats)
    return labels


def _countries(bulletin: ThreatBulletin) -> list[str]:
    loc, route = bulletin.location, bulletin.route
    countries: list[str] = [] if loc is None else [loc.country]
    if route is not None:
        countries.extend(c for c in (route.from_country, route.to_country) if c is not None)
        countries.extend(route.via)
    return list(dict.fromkeys(countries))  # first mention first, once each


def _place(bulletin: ThreatBulletin, common: Mapping[str, Any]) -> dict[str, Any] | None:
    """The bulletin's own location (exact coordinates: full copies only), or None."""
    loc = bulletin.location
    if loc is None or loc.lat is None or loc.lon is None:
        return None
    return {
        "type": "location",
        "spec_version": "2.1",
        "id": stix_id("location", bulletin.bulletin_id, "location"),
        **common,
        "name": loc.place or loc.country,
        "latitude": loc.lat,
        "longitude": loc.lon,
        "country": loc.country,
    }


def _indicators(
    bulletin: ThreatBulletin, common: Mapping[str, Any], valid_from: str
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    valid_until = bulletin.valid_until
    for n, indicator in enumerate(bulletin.indicators):
        pattern = stix_pattern(indicator)
        if pattern is None:
            continue
        obj: dict[str, Any] = {
            "type": "indicator",
            "spec_version": "2.1",
            "id": stix_id("indicator", bulletin.bulletin_id, str(n), indicator.value),
            **common,
            "name": f"{indicator.type.value}: {indicator.value[:100]}",
            "description": f"Reported in Enlace bulletin {bulletin.bulletin_id}: {bulletin.title}",
            "indicator_types": ["malicious-activity"],
            "pattern": pattern,
            "pattern_type": "stix",
            "valid_from": valid_from,
            "labels": [f"category:{bulletin.category.value.lower()}"],
        }
        # STIX requires valid_until after valid_from; the model's rule, kept here too.
        if valid_until is not None and valid_until > bulletin.issued_at:
            obj["valid_until"] = stix_time(valid_until)
        out.append(obj)
    return out


def bundle_json(
    bulletin: ThreatBulletin,
    release: Release,
    *,
    agency_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The STIX 2.1 bundle of one received bulletin, as JSON (see the module docstring)."""
    marking = tlp_marking_json(bulletin.tlp)
    name = (agency_names or {}).get(bulletin.origin, bulletin.origin)
    identity = identity_json(bulletin.origin, bulletin.origin_country, name)
    created = stix_time(bulletin.issued_at)
    # A full copy supersedes the tearline one: later ``modified``, same id.
    modified = stix_time(
        bulletin.issued_at
        + (timedelta(milliseconds=1) if release is Release.FULL else timedelta(0))
    )
    own: dict[str, Any] = {
        "created_by_ref": identity["id"],
        "created": created,
        "modified": modified,
        "object_marking_refs": [marking["id"]],
    }
    confidence = ADMIRALTY_CONFIDENCE[bulletin.info_credibility]
    scored = own if confidence is None else {**own, "confidence": confidence}
    place = _place(bulletin, own)
    countries = [country_json(c) for c in _countries(bulletin)]
    locations = ([place] if place is not None else []) + countries
    indicators = _indicators(bulletin, scored, created)
    description = bulletin.summary
    if bulletin.details:
        description = f"{description}\n\n{bulletin.details}"
    report = {
        "type": "report",
        "spec_version": "2.1",
        "id": stix_id("report", bulletin.bulletin_id),
        **scored,
        "name": bulletin.title,
        "description": description,
        "report_types": ["threat-report"],
        "published": created,
        "object_refs": [
            identity["id"],
            *(o["id"] for o in locations),
            *(o["id"] for o in indicators),
        ],
        "labels": _labels(bulletin, release),
        "lang": bulletin.language,
        "external_references": [{"source_name": "enlace", "external_id": bulletin.bulletin_id}],
    }
    shared_markings = (
        [marking] if bulletin.tlp is Tlp.CLEAR else [marking, tlp_marking_json(Tlp.CLEAR)]
    )
    return {
        "type": "bundle",
        "id": stix_id("bundle", bulletin.bulletin_id, release.value),
        "objects": [*shared_markings, identity, report, *locations, *indicators],
    }


def bulletin_bundle(
    bulletin: ThreatBulletin,
    release: Release,
    *,
    agency_names: Mapping[str, str] | None = None,
) -> stix2.Bundle:
    """:func:`bundle_json` parsed by ``stix2`` (strict: no custom properties). Slow; for
    tests and tools that want objects, never the sink's hot path."""
    return stix2.parse(
        bundle_json(bulletin, release, agency_names=agency_names), allow_custom=False
    )
