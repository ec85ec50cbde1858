"""A bulletin as a STIX 2.1 bundle, for MISP and OpenCTI (pure; built with ``stix2``).

One bundle per bulletin: a ``report`` (title, summary and, for a full release, details) made
by the originator's ``identity``, with ``location`` objects (the place, and the route's
countries) and one ``indicator`` per cyber indicator with a STIX pattern. Every object carries
the bulletin's TLP 2.0 marking, referenced by its official id and included as the official
marking-definition object (OASIS cti-stix-common-objects, TLP 2.0 extension).

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
from typing import Any

import stix2

from consumers.records import Release
from schemas.models import Indicator, ThreatBulletin
from schemas.vocab import IndicatorType, InfoCredibility, Tlp

# Fixed namespace for Enlace's deterministic STIX ids.
ENLACE_STIX_NAMESPACE = uuid.UUID("5f0c3a7e-2b1d-4c8e-9a6f-3d2e1b0c9a87")
IDENTITY_CREATED = datetime(2026, 1, 1, tzinfo=UTC)

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


def tlp_marking(tlp: Tlp) -> stix2.MarkingDefinition:
    """The official TLP 2.0 marking-definition object for ``tlp``."""
    return stix2.parse(
        {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": TLP2_MARKING_IDS[tlp],
            "created": TLP2_CREATED,
            "name": _TLP2_NAME[tlp],
            "extensions": {
                TLP2_EXTENSION: {
                    "extension_type": "property-extension",
                    "tlp_2_0": _TLP2_LEVEL[tlp],
                }
            },
        }
    )


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


def _locations(bulletin: ThreatBulletin, common: dict[str, Any]) -> list[Any]:
    found: dict[str, Any] = {}
    loc = bulletin.location
    if loc is not None and loc.lat is not None and loc.lon is not None:
        ident = stix_id("location", bulletin.bulletin_id, "location")
        found[ident] = stix2.Location(
            id=ident,
            latitude=loc.lat,
            longitude=loc.lon,
            country=loc.country,
            name=loc.place or loc.country,
            **common,
        )
    countries: list[str] = [] if loc is None else [loc.country]
    if bulletin.route is not None:
        route = bulletin.route
        countries.extend(c for c in (route.from_country, route.to_country) if c is not None)
        countries.extend(route.via)
    for country in countries:
        ident = stix_id("location", "country", country)
        found.setdefault(ident, stix2.Location(id=ident, country=country, name=country, **common))
    return list(found.values())


def bulletin_bundle(
    bulletin: ThreatBulletin,
    release: Release,
    *,
    agency_names: Mapping[str, str] | None = None,
) -> stix2.Bundle:
    """The STIX 2.1 bundle of one received bulletin (see the module docstring)."""
    marking = tlp_marking(bulletin.tlp)
    identity_id = stix_id("identity", "agency", bulletin.origin)
    created = bulletin.issued_at
    # A full copy supersedes the tearline one: later ``modified``, same id.
    modified = created + (timedelta(milliseconds=1) if release is Release.FULL else timedelta(0))
    confidence = ADMIRALTY_CONFIDENCE[bulletin.info_credibility]
    marked: dict[str, Any] = {"object_marking_refs": [marking.id]}
    common: dict[str, Any] = {
        **marked,
        "created_by_ref": identity_id,
        "created": created,
        "modified": modified,
    }
    if confidence is not None:
        common["confidence"] = confidence

    identity = stix2.Identity(
        id=identity_id,
        name=(agency_names or {}).get(bulletin.origin, bulletin.origin),
        identity_class="organization",
        sectors=["government-national"],
        description=f"Enlace agency {bulletin.origin} ({bulletin.origin_country})",
        created=IDENTITY_CREATED,
        modified=IDENTITY_CREATED,
        **marked,
    )
    place_common = {k: v for k, v in common.items() if k != "confidence"}
    locations = _locations(bulletin, place_common)
    indicators = []
    for n, indicator in enumerate(bulletin.indicators):
        pattern = stix_pattern(indicator)
        if pattern is None:
            continue
        indicators.append(
            stix2.Indicator(
                id=stix_id("indicator", bulletin.bulletin_id, str(n), indicator.value),
                name=f"{indicator.type.value}: {indicator.value[:100]}",
                indicator_types=["malicious-activity"],
                pattern=pattern,
                pattern_type="stix",
                valid_from=created,
                valid_until=bulletin.valid_until,
                labels=[f"category:{bulletin.category.value.lower()}"],
                **common,
            )
        )
    description = bulletin.summary
    if bulletin.details:
        description = f"{description}\n\n{bulletin.details}"
    report = stix2.Report(
        id=stix_id("report", bulletin.bulletin_id),
        name=bulletin.title,
        description=description,
        report_types=["threat-report"],
        published=created,
        object_refs=[identity.id] + [o.id for o in locations] + [o.id for o in indicators],
        labels=_labels(bulletin, release),
        lang=bulletin.language,
        external_references=[
            {"source_name": "enlace", "external_id": bulletin.bulletin_id},
        ],
        **common,
    )
    return stix2.Bundle(
        marking,
        identity,
        report,
        *locations,
        *indicators,
        id=stix_id("bundle", bulletin.bulletin_id, release.value),
    )
