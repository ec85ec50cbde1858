"""A bulletin as a MISP event in MISP feed format (``{"Event": {...}}``), pure.

What MISP's feed importer and ``pymisp.MISPEvent.load`` read; the tag names and attribute
types are in ``schemas.misp_vocab`` (shared with the producer's MISP intake, so a bulletin
survives bulletin -> event -> bulletin).

Mapped:

- event ``uuid``: UUIDv5 of the bulletin id, so a redelivered bulletin (or its full copy after
  the tearline) is the same MISP event. Attribute and object uuids are UUIDv5 of the bulletin
  id, the part and its index and value: the same bulletin gives the same uuids every time.
- ``info`` = title; ``date`` = the UTC day of ``issued_at``; ``timestamp`` and
  ``publish_timestamp`` = ``issued_at`` in seconds, **plus one second for a full copy**: MISP
  updates an event it already pulled only when the feed's timestamp is newer, so the full copy
  that replaces a tearline must be newer. ``published`` true, ``analysis`` 2 (completed: a
  bulletin is a finished report).
- ``threat_level_id`` from severity (CRITICAL and HIGH 1, MEDIUM 2, LOW 3; the exact severity
  as ``enlace:severity``).
- ``Orgc``: the originator agency (its registry name, uuid = UUIDv5 of its id).
- ``distribution`` from TLP: CLEAR 3 (all communities), GREEN 1 (this community), AMBER,
  AMBER+STRICT, RED 0 (your organisation only). MISP applies its own feed settings on pull;
  this is what the event asks for. Attributes inherit (5).
- ``Tag``: the TLP (``tlp:*``), the Admiralty code (``admiralty-scale:*``), and
  ``enlace:`` tags for category, severity, classification, tearline classification, caveats,
  releasable_to, source type, language, route (mode, from, to, via in order) and which copy
  this is (``enlace:release``).
- ``Attribute``: summary and details as ``text`` (tagged ``enlace:part``); the seizure as one
  ``text`` ``"<commodity>: <quantity> <unit>"``; each entity as one attribute (a person
  ``full-name``, a phone ``phone-number``, others ``text``; tagged ``enlace:entity`` with its
  kind and ``enlace:entity-country``; role in ``comment``) followed by one attribute per
  identifier (``passport-number``, ``identity-card-number``, ``iban`` where MISP has the type,
  else ``text``; scheme in ``comment``; tagged ``enlace:identifier-of`` = the entity's 1-based
  index); each cyber indicator as its MISP type (``ip-dst``, ``domain``, ``url``,
  ``email-src``, ``sha256``, ``md5``, ``btc``/``xmr``; OTHER as ``other``), ``to_ids`` true
  but for OTHER. Enlace does not check an indicator's value against its type, and MISP drops
  an ``ip-dst``, ``md5`` or ``sha256`` attribute whose value is not one: such a value is a
  ``text`` attribute (not for IDS) tagged ``enlace:indicator`` with its type, as OTHER is.
- ``Object``: one ``geolocation`` object (latitude, longitude, country code, the place as
  ``city``): MISP draws it on a map. A tearline copy has only the country.

A TEARLINE release is mapped from the tearline copy the partner received, so it holds only
what the tearline holds (title, summary, markings, grading, coarse location and route
countries). Not mapped: ``valid_until`` (MISP events have no expiry; MISP's decaying models
take that role), ``references`` (a feed has no event-to-event link but ``extends_uuid``, which
means something else), ``issued_at`` to the millisecond (MISP keeps seconds).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from consumers.records import Release
from schemas import misp_vocab as mv
from schemas.models import Indicator, ThreatBulletin
from schemas.vocab import IndicatorType


def _tag(name: str, colour: str = mv.TAG_COLOUR) -> dict[str, Any]:
    return {"name": name, "colour": colour, "local": False, "relationship_type": ""}


def _event_tags(bulletin: ThreatBulletin, release: Release) -> list[dict[str, Any]]:
    b = bulletin
    names = [
        mv.reliability_tag(b.source_reliability.value),
        mv.credibility_tag(b.info_credibility.value[1:]),
        mv.enlace_tag(mv.CATEGORY, b.category.value.lower()),
        mv.enlace_tag(mv.SEVERITY, b.severity.value.lower()),
        mv.enlace_tag(mv.CLASSIFICATION, b.classification.value.lower()),
        mv.enlace_tag(mv.TEARLINE_CLASSIFICATION, b.tearline_classification.value.lower()),
        *(mv.enlace_tag(mv.CAVEAT, c.value.lower()) for c in b.caveats),
        *(mv.enlace_tag(mv.RELEASABLE_TO, r) for r in b.releasable_to),
        mv.enlace_tag(mv.SOURCE_TYPE, b.source_type.value.lower()),
        mv.enlace_tag(mv.LANGUAGE, b.language),
        mv.enlace_tag(mv.RELEASE, release.value),
    ]
    route = b.route
    if route is not None:
        names.append(mv.enlace_tag(mv.ROUTE_MODE, route.mode.value.lower()))
        if route.from_country is not None:
            names.append(mv.enlace_tag(mv.ROUTE_FROM, route.from_country))
        if route.to_country is not None:
            names.append(mv.enlace_tag(mv.ROUTE_TO, route.to_country))
        names.extend(mv.enlace_tag(mv.ROUTE_VIA, c) for c in route.via)
    return [_tag(mv.TLP_TAGS[b.tlp], mv.TLP_COLOURS[b.tlp]), *(_tag(n) for n in names)]


class _Attributes:
    """Builds the event's attributes with deterministic uuids and a shared timestamp."""

    def __init__(self, bulletin_id: str, timestamp: str) -> None:
        self.bulletin_id = bulletin_id
        self.timestamp = timestamp
        self.out: list[dict[str, Any]] = []

    def add(
        self,
        kind: tuple[str, str],
        value: str,
        *,
        to_ids: bool = False,
        comment: str = "",
        tags: Sequence[str] = (),
    ) -> None:
        misp_type, category = kind
        attr: dict[str, Any] = {
            "uuid": mv.misp_uuid("attribute", self.bulletin_id, str(len(self.out)), value),
            "type": misp_type,
            "category": category,
            "value": value,
            "to_ids": to_ids,
            "comment": comment,
            "timestamp": self.timestamp,
            "distribution": str(mv.INHERIT_DISTRIBUTION),
            "disable_correlation": False,
            "deleted": False,
        }
        if tags:
            attr["Tag"] = [_tag(t) for t in tags]
        self.out.append(attr)


def _attributes(bulletin: ThreatBulletin, timestamp: str) -> list[dict[str, Any]]:
    b = bulletin
    attrs = _Attributes(b.bulletin_id, timestamp)
    text = ("text", "Other")
    attrs.add(text, b.summary, tags=[mv.enlace_tag(mv.PART, mv.PART_SUMMARY)])
    if b.details is not None:
        attrs.add(text, b.details, tags=[mv.enlace_tag(mv.PART, mv.PART_DETAILS)])
    if b.seizure is not None:
        s = b.seizure
        value = f"{s.commodity}: {s.quantity!r} {s.unit}"
        attrs.add(text, value, tags=[mv.enlace_tag(mv.PART, mv.PART_SEIZURE)])
    _entities(attrs, b)
    _indicators(attrs, b)
    return attrs.out


def _entities(attrs: _Attributes, b: ThreatBulletin) -> None:
    for n, entity in enumerate(b.entities, start=1):
        tags = [mv.enlace_tag(mv.ENTITY, entity.kind.value.lower())]
        if entity.country is not None:
            tags.append(mv.enlace_tag(mv.ENTITY_COUNTRY, entity.country))
        kind = mv.ENTITY_TYPES[entity.kind]
        attrs.add(kind, entity.name, comment=entity.role or "", tags=tags)
        for ident in entity.identifiers:
            ident_kind = mv.IDENTIFIER_TYPES.get(ident.scheme, ("text", kind[1]))
            of = [mv.enlace_tag(mv.IDENTIFIER_OF, str(n))]
            attrs.add(ident_kind, ident.value, comment=ident.scheme, tags=of)


def _indicators(attrs: _Attributes, b: ThreatBulletin) -> None:
    for indicator in b.indicators:
        misp_type, category, to_ids = _indicator_kind(indicator)
        tags: list[str] = []
        if misp_type in {"text", "other"}:  # the MISP type does not say which indicator
            tags.append(mv.enlace_tag(mv.INDICATOR, indicator.type.value.lower()))
        attrs.add((misp_type, category), indicator.value, to_ids=to_ids, tags=tags)


_HEX = re.compile(r"^[0-9a-fA-F]+$")
_IP_VERSION = {IndicatorType.IPV4: 4, IndicatorType.IPV6: 6}
_HEX_LENGTH = {IndicatorType.FILE_MD5: 32, IndicatorType.FILE_SHA256: 64}


def _indicator_kind(indicator: Indicator) -> tuple[str, str, bool]:
    """(MISP type, category, to_ids). Enlace does not check a value against its type; MISP
    drops an ``ip-dst``, ``md5`` or ``sha256`` whose value does not parse as one, so such a
    value is kept as ``text`` (not for IDS) tagged with its Enlace type instead."""
    value = indicator.value
    if indicator.type is IndicatorType.CRYPTO_WALLET:
        return mv.wallet_type(value)
    kind = mv.INDICATOR_TYPES[indicator.type]
    if indicator.type in _IP_VERSION:
        try:
            fits = ipaddress.ip_network(value, strict=False).version == _IP_VERSION[indicator.type]
        except ValueError:
            fits = False
    elif indicator.type in _HEX_LENGTH:
        fits = len(value) == _HEX_LENGTH[indicator.type] and bool(_HEX.fullmatch(value))
    else:
        fits = True
    return kind if fits else ("text", "Other", False)


def _geolocation(bulletin: ThreatBulletin, timestamp: str) -> dict[str, Any] | None:
    loc = bulletin.location
    if loc is None:
        return None
    values: list[tuple[str, str, str]] = [("countrycode", "text", loc.country)]
    if loc.lat is not None and loc.lon is not None:
        values += [("latitude", "float", repr(loc.lat)), ("longitude", "float", repr(loc.lon))]
    if loc.place is not None:
        values.append(("city", "text", loc.place))
    name, template_uuid, template_version = mv.GEOLOCATION_TEMPLATE
    return {
        "uuid": mv.misp_uuid("object", bulletin.bulletin_id, "location"),
        "name": name,
        "meta-category": "misc",
        "description": "Where the bulletin's events take place",
        "template_uuid": template_uuid,
        "template_version": template_version,
        "timestamp": timestamp,
        "distribution": str(mv.INHERIT_DISTRIBUTION),
        "comment": "",
        "deleted": False,
        "Attribute": [
            {
                "uuid": mv.misp_uuid("attribute", bulletin.bulletin_id, "location", relation),
                "object_relation": relation,
                "type": misp_type,
                "category": "Other",
                "value": value,
                "to_ids": False,
                "comment": "",
                "timestamp": timestamp,
                "distribution": str(mv.INHERIT_DISTRIBUTION),
                "disable_correlation": misp_type == "float",
                "deleted": False,
            }
            for relation, misp_type, value in values
        ],
    }


def event_timestamp(bulletin: ThreatBulletin, release: Release) -> int:
    """Seconds; a full copy is one second newer than the tearline so MISP takes the update."""
    return int(bulletin.issued_at.timestamp()) + (1 if release is Release.FULL else 0)


def event_json(
    bulletin: ThreatBulletin,
    release: Release,
    *,
    agency_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The MISP feed event of one received bulletin (see the module docstring)."""
    b = bulletin
    timestamp = str(event_timestamp(b, release))
    event: dict[str, Any] = {
        "uuid": mv.event_uuid(b.bulletin_id),
        "info": b.title,
        "date": b.issued_at.astimezone(UTC).date().isoformat(),
        "timestamp": timestamp,
        "publish_timestamp": timestamp,
        "published": True,
        "analysis": str(mv.ANALYSIS_COMPLETED),
        "threat_level_id": str(mv.THREAT_LEVEL[b.severity]),
        "distribution": str(mv.DISTRIBUTION[b.tlp]),
        "extends_uuid": "",
        "Orgc": {
            "name": (agency_names or {}).get(b.origin, b.origin),
            "uuid": mv.org_uuid(b.origin),
        },
        "Tag": _event_tags(b, release),
        "Attribute": _attributes(b, timestamp),
    }
    geo = _geolocation(b, timestamp)
    if geo is not None:
        event["Object"] = [geo]
    return {"Event": event}


def manifest_entry(event: Mapping[str, Any]) -> dict[str, Any]:
    """The ``manifest.json`` entry of a feed event, as ``pymisp.MISPEvent.manifest`` makes it."""
    body = event["Event"]
    return {
        "Orgc": dict(body["Orgc"]),
        "Tag": [dict(t) for t in body["Tag"]],
        "info": body["info"],
        "date": body["date"],
        "analysis": int(body["analysis"]),
        "threat_level_id": int(body["threat_level_id"]),
        "timestamp": int(body["timestamp"]),
    }


def attribute_values(event: Mapping[str, Any]) -> list[str]:
    """Every attribute value of a feed event, objects' included, in order (for hashes.csv:
    MISP's feed generator hashes each value, and each part of a ``a|b`` composite value)."""
    body = event["Event"]
    attrs = [*body.get("Attribute", ())]
    for obj in body.get("Object", ()):
        attrs.extend(obj.get("Attribute", ()))
    values: list[str] = []
    for attr in attrs:
        value = str(attr["value"])
        composite = "|" in attr["type"] or attr["type"] == "malware-sample"
        values.extend(value.split("|") if composite else [value])
    return values
