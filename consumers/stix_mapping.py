"""A bulletin as a STIX 2.1 bundle, for MISP and OpenCTI (pure).

One bundle per bulletin: a ``report`` (title, summary and, for a full release, details) made
by the originator's ``identity``, with ``location`` objects (the place, and the route's
countries) and one ``indicator`` per cyber indicator with a STIX pattern. The bulletin's own
objects carry its TLP 2.0 marking, referenced by its official id and included as the official
marking-definition object (OASIS cti-stix-common-objects, TLP 2.0 extension).

Shared objects (the marking definitions, the agencies' identities, country locations) appear
in many bundles under one id, so each has one fixed content: fixed ``created``/``modified``,
marked TLP:CLEAR (an agency's name and a country are public), no creator but the agency's
own (an identity creates itself). STIX 2.1 (3.2) requires an object's id and ``modified`` to
name one content; a country location that took the bulletin's time, TLP or originator would
break that. They are built once and reused.

The bundle is built as plain JSON: the ``stix2`` objects validate every property on
construction and cost ~5 ms a bundle, the whole budget of a fast feed.
``tests/unit/test_stix_validator.py`` holds every sample bundle to the OASIS validator
(strict, interop, references resolved; what it still reports, and why, is listed there) and
``stix2.parse``, so the hand-built form stays conformant.

Ids are UUIDv5 of the bulletin id, so writing the same bulletin twice yields the same
objects and importers dedupe. A full copy supersedes a tearline copy of the same bulletin:
same report id, ``modified`` one millisecond later.

Confidence: Admiralty information credibility mapped per STIX 2.1 Appendix B (1→90, 2→70,
3→50, 4→30, 5→10; 6 "cannot be judged" → no confidence). Source reliability goes to the
report's ``x_opencti_reliability`` in OpenCTI's vocabulary ("B - Usually reliable"): it is the
reliability of this bulletin's source, not of the agency, so not on the shared identity.

What STIX has no property for travels as ``prefix:value`` labels (``schemas.stix_vocab``):
category, severity, classification and tearline classification, Admiralty code, source type,
release, caveats, recipients, the location's country and the route (mode, from, to, via) --
enough for ``producers.stix_intake`` to rebuild the bulletin. ``lang`` must be on the OASIS
validator's list: a tag it lacks maps to its primary language (``es-419`` → ``es``), or to no
``lang`` when that is missing too, and the exact tag then travels as a ``language:`` label.

Locations: every one has its UN M49 ``region`` (OpenCTI and the validator's interop profile
expect one) and OpenCTI's ``x_opencti_location_type`` (OpenCTI types a location by its
properties, ``country`` first: the bulletin's place would otherwise become a Country named
after the place). Those two ``x_opencti_`` properties are the only custom ones
(:data:`CUSTOM_PROPERTIES`); :func:`bulletin_bundle` leaves them out.

Not mapped: entities (people, vessels, phones...) and seizures have no faithful STIX 2.1
core object; they stay in the SQLite and JSONL sinks. References and ``valid_until`` of a
bulletin without indicators have no place either (``valid_until`` is the indicators').
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
from schemas.stix_vocab import (
    ADMIRALTY_CONFIDENCE,
    ENLACE_SOURCE,
    ENLACE_STIX_NAMESPACE,
    LABEL_ADMIRALTY,
    LABEL_CATEGORY,
    LABEL_CAVEAT,
    LABEL_CLASSIFICATION,
    LABEL_LANGUAGE,
    LABEL_LOCATION,
    LABEL_RELEASABLE_TO,
    LABEL_RELEASE,
    LABEL_ROUTE_FROM,
    LABEL_ROUTE_MODE,
    LABEL_ROUTE_TO,
    LABEL_ROUTE_VIA,
    LABEL_SEVERITY,
    LABEL_SOURCE_TYPE,
    LABEL_TEARLINE,
    OPENCTI_LOCATION_TYPE,
    OPENCTI_RELIABILITY,
    OPENCTI_RELIABILITY_PROPERTY,
    PATTERN_PATHS,
    TLP2_CREATED,
    TLP2_EXTENSION,
    TLP2_LEVEL,
    TLP2_MARKING_IDS,
    label,
    region_of,
    stix_lang,
)
from schemas.vocab import Tlp

__all__ = [
    "ADMIRALTY_CONFIDENCE",
    "CUSTOM_PROPERTIES",
    "ENLACE_STIX_NAMESPACE",
    "PATTERN_PATHS",
    "TLP2_MARKING_IDS",
    "bulletin_bundle",
    "bundle_json",
    "stix_id",
    "stix_pattern",
    "stix_time",
    "tlp_marking",
    "tlp_marking_json",
]

# created = modified of every shared object (identities, country locations): fixed content.
SHARED_CREATED = "2026-01-01T00:00:00.000Z"
# Every custom property a bundle may carry (the validator test holds bundles to this list).
CUSTOM_PROPERTIES = frozenset({OPENCTI_LOCATION_TYPE, OPENCTI_RELIABILITY_PROPERTY})
_TLP2_NAME: Mapping[Tlp, str] = {tlp: f"TLP:{level.upper()}" for tlp, level in TLP2_LEVEL.items()}


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
            TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": TLP2_LEVEL[tlp]}
        },
    }


def tlp_marking(tlp: Tlp) -> stix2.MarkingDefinition:
    """The official TLP 2.0 marking-definition object for ``tlp``, as a ``stix2`` object."""
    return stix2.parse(dict(tlp_marking_json(tlp)))


_PUBLIC = (TLP2_MARKING_IDS[Tlp.CLEAR],)


@cache
def identity_json(agency: str, country: str, name: str) -> Mapping[str, Any]:
    """An agency's identity (shared: fixed content for a given name).

    Its own creator (``created_by_ref`` to itself): the validator's interop profile wants
    every creator to be an identity that names its creator, and an agency describes itself.
    The external reference names the agency id, so an intake can tell whose report it is.
    """
    own_id = stix_id("identity", "agency", agency)
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": own_id,
        "created_by_ref": own_id,
        "created": SHARED_CREATED,
        "modified": SHARED_CREATED,
        "name": name,
        "description": f"Enlace agency {agency} ({country})",
        "identity_class": "organization",
        "sectors": ["government-national"],
        "external_references": [{"source_name": ENLACE_SOURCE, "external_id": agency}],
        "object_marking_refs": list(_PUBLIC),
    }


def _region(country: str) -> dict[str, str]:
    region = region_of(country)
    return {} if region is None else {"region": region}


@cache
def country_json(country: str) -> Mapping[str, Any]:
    """A country as a location (shared by every bundle that names it), with its UN M49
    region. No creator: one content per id, whoever's bulletin names the country."""
    return {
        "type": "location",
        "spec_version": "2.1",
        "id": stix_id("location", "country", country),
        "created": SHARED_CREATED,
        "modified": SHARED_CREATED,
        "name": country,
        "country": country,
        **_region(country),
        OPENCTI_LOCATION_TYPE: "Country",
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
    """The bulletin fields STIX has no property for, as ``prefix:value`` labels (the
    prefixes are ``schemas.stix_vocab``'s, read back by the producers' STIX intake)."""
    labels = [
        label(LABEL_CATEGORY, bulletin.category.value.lower()),
        label(LABEL_SEVERITY, bulletin.severity.value.lower()),
        label(LABEL_CLASSIFICATION, bulletin.classification.value.lower()),
        label(LABEL_TEARLINE, bulletin.tearline_classification.value.lower()),
        label(
            LABEL_ADMIRALTY,
            f"{bulletin.source_reliability.value}{bulletin.info_credibility.value[1:]}",
        ),
        label(LABEL_SOURCE_TYPE, bulletin.source_type.value.lower()),
        label(LABEL_RELEASE, release.value),
    ]
    labels.extend(label(LABEL_CAVEAT, c.value.lower()) for c in bulletin.caveats)
    labels.extend(label(LABEL_RELEASABLE_TO, r) for r in bulletin.releasable_to)
    if stix_lang(bulletin.language) != bulletin.language:
        labels.append(label(LABEL_LANGUAGE, bulletin.language))
    if bulletin.location is not None:
        labels.append(label(LABEL_LOCATION, bulletin.location.country))
    route = bulletin.route
    if route is not None:
        labels.append(label(LABEL_ROUTE_MODE, route.mode.value.lower()))
        if route.from_country is not None:
            labels.append(label(LABEL_ROUTE_FROM, route.from_country))
        if route.to_country is not None:
            labels.append(label(LABEL_ROUTE_TO, route.to_country))
        labels.extend(label(LABEL_ROUTE_VIA, c) for c in route.via)
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
        **_region(loc.country),
        OPENCTI_LOCATION_TYPE: "Position",
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
    code = stix_lang(bulletin.language)
    lang = {} if code is None else {"lang": code}
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
        **lang,
        "external_references": [
            {"source_name": ENLACE_SOURCE, "external_id": bulletin.bulletin_id}
        ],
        OPENCTI_RELIABILITY_PROPERTY: OPENCTI_RELIABILITY[bulletin.source_reliability],
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
    """:func:`bundle_json` without its OpenCTI properties (:data:`CUSTOM_PROPERTIES`), parsed
    by ``stix2`` with no custom property allowed: the STIX core, for tests and tools that
    want objects. Slow; never the sink's hot path."""
    bundle = bundle_json(bulletin, release, agency_names=agency_names)
    objects = [
        {k: v for k, v in obj.items() if k not in CUSTOM_PROPERTIES} for obj in bundle["objects"]
    ]
    return stix2.parse({**bundle, "objects": objects}, allow_custom=False)
