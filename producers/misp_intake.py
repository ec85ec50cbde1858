"""Publishing from MISP: MISP event JSON -> bulletin input dicts (``enlace produce --format
misp``), pure.

Input: a MISP export (``{"Event": {...}}``), a list of them, the bare event, or an API search
answer (``{"response": [...]}``). Each event becomes one item whose ``obj`` is the JSON that
``enlace produce`` accepts; ``producers.prepare`` fills ``issued_at`` (now: the exchange admits
a bulletin only within minutes of its issue, so the event's own date cannot be it), the origin
(the publisher: Orgc is not mapped, an agency signs only its own words) and validates.

The reading is the inverse of the consumer's MISP feed sink (``consumers.misp_mapping``; tag
names and types in ``schemas.misp_vocab``), so an event Enlace wrote publishes back to the same
bulletin content, and extended to what any MISP holds:

- ``info`` -> title; ``tlp:*`` -> tlp; ``admiralty-scale:*`` -> source reliability and
  information credibility; ``enlace:*`` tags -> category, severity, classification, tearline
  classification, caveats, releasable_to, source type, language, route;
  ``threat_level_id`` (1 HIGH, 2 MEDIUM, 3 LOW) when there is no ``enlace:severity``.
- ``text`` attributes tagged ``enlace:part`` -> summary, details, seizure; other ``text`` and
  ``comment`` attributes -> details (above the tearline, so never released in a tearline).
- entities (tagged ``enlace:entity``, or any ``full-name``/``phone-number``) and their
  identifiers (``enlace:identifier-of``); indicators (``ip-src``/``ip-dst``, ``domain``,
  ``hostname``, ``url``/``uri``, ``email``/``email-src``/``email-dst``, ``sha256``, ``md5``,
  ``btc``/``xmr``/``dash``); the first ``geolocation`` object -> location.
- bulletin id: UUIDv5 of the event's uuid and timestamp: the same event version published
  twice is the same bulletin (the router drops the copy); an edited event is a new one.

Refusals (the event is not published; a :class:`Problem` in ``problems``): no ``info``; no
TLP tag; no ``enlace:category`` or ``enlace:classification`` tag (MISP has neither field and
guessing a classification would mis-release); no severity (``threat_level_id`` 4 "undefined"
and no ``enlace:severity``); an ``enlace:`` tag given twice with different values; anything
the bulletin model refuses (e.g. more than 500 indicators), named by ``prepare``.

Warnings (the event is published without the part; a :class:`Problem` in ``warnings`` of the
returned :class:`MispParsed`, which ``ParsedInput`` has no room for: ``produce`` treats every
problem as a refusal, so a caller shows ``getattr(parsed, "warnings", ())`` apart): every
attribute, object, galaxy, event report and tag that has no Enlace counterpart (named, e.g.
``Attribute[3] (type=x509-fingerprint-sha1)``); an attribute whose own TLP tag is stricter than
the event's (left out: publishing it at the event's TLP would loosen its marking); no
Admiralty tags (F and 6: "cannot be judged"); no source type (OTHER); no language (``und``);
no tearline classification (= the classification: nothing is released lower than asked);
no summary (the title); several TLP tags (the strictest).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from producers.inputs import Item, ParsedInput, Problem, parse_input
from schemas import misp_vocab as mv
from schemas.vocab import IndicatorType, Tlp

# Fixed namespace of bulletin ids derived from MISP events (uuid5 of uuid and timestamp).
MISP_INTAKE_NAMESPACE = uuid.UUID("a6b2c1d0-3e4f-5a6b-8c7d-9e0f1a2b3c4d")

_SINGLE = {
    mv.CATEGORY: "category",
    mv.SEVERITY: "severity",
    mv.CLASSIFICATION: "classification",
    mv.TEARLINE_CLASSIFICATION: "tearline_classification",
    mv.SOURCE_TYPE: "source_type",
    mv.LANGUAGE: "language",
}
_ENUMS = {"category", "severity", "classification", "tearline_classification", "source_type"}
_ROUTE = {mv.ROUTE_MODE: "mode", mv.ROUTE_FROM: "from_country", mv.ROUTE_TO: "to_country"}
_TLP_ORDER = list(Tlp)
_IDENTIFIER_SCHEME = {kind: scheme for scheme, (kind, _) in mv.IDENTIFIER_TYPES.items()}
_NARRATIVE = {"text", "comment"}


@dataclass(frozen=True)
class MispParsed(ParsedInput):
    """:class:`ParsedInput` plus what was left out of events that still publish."""

    warnings: tuple[Problem, ...] = ()


class _Event:
    """One event being read: the bulletin dict, its refusals and its warnings."""

    def __init__(self, event: Mapping[str, Any], line: int) -> None:
        self.event = event
        self.line = line
        self.obj: dict[str, Any] = {}
        self.refusals: list[Problem] = []
        self.warnings: list[Problem] = []
        self.tlps: list[Tlp] = []

    def refuse(self, field: str, rule: str) -> None:
        self.refusals.append(Problem(self.line, field, rule))

    def warn(self, field: str, rule: str) -> None:
        self.warnings.append(Problem(self.line, field, rule))

    def set_once(self, field: str, value: Any, where: str) -> None:
        if field in self.obj and self.obj[field] != value:
            self.refuse(where, f"{field} given twice ({self.obj[field]!r} and {value!r})")
        self.obj[field] = value


def _tag_names(holder: Mapping[str, Any]) -> list[str]:
    tags = holder.get("Tag") or []
    return [str(t["name"]) for t in tags if isinstance(t, Mapping) and "name" in t]


def _event_tag(ev: _Event, name: str, route: dict[str, Any]) -> None:
    where = f"Tag {name!r}"
    tlp = mv.TLP_OF_TAG.get(name.strip().lower())
    if tlp is not None:
        ev.tlps.append(tlp)
        return
    parsed = mv.parse_machine_tag(name)
    namespace, predicate, value = parsed if parsed is not None else ("", "", "")
    if namespace == mv.ADMIRALTY_NS and predicate == mv.RELIABILITY and value.lower() in "abcdef":
        ev.set_once("source_reliability", value.upper(), where)
    elif namespace == mv.ADMIRALTY_NS and predicate == mv.CREDIBILITY and value in "123456":
        ev.set_once("info_credibility", f"C{value}", where)
    elif namespace != mv.ENLACE_NS or not value:
        ev.warn(where, "not mapped: a tag with no Enlace counterpart; left out")
    elif predicate in _SINGLE:
        field = _SINGLE[predicate]
        ev.set_once(field, value.upper() if field in _ENUMS else value, where)
    elif predicate == mv.CAVEAT:
        ev.obj.setdefault("caveats", []).append(value.upper())
    elif predicate == mv.RELEASABLE_TO:
        ev.obj.setdefault("releasable_to", []).append(value)
    elif predicate in _ROUTE:
        field = _ROUTE[predicate]
        if field in route and route[field] != value:
            ev.refuse(where, f"route {field} given twice")
        route[field] = value.upper() if field == "mode" else value
    elif predicate == mv.ROUTE_VIA:
        route.setdefault("via", []).append(value)
    elif predicate != mv.RELEASE:  # which copy a feed held: not the publisher's to say
        ev.warn(where, "not mapped: an enlace tag this version does not know; left out")


def _attr_tags(
    ev: _Event, attr: Mapping[str, Any], where: str, event_tlp: Tlp | None
) -> dict[str, str] | None:
    """The attribute's ``enlace:`` tags by predicate; None when it must be left out."""
    found: dict[str, str] = {}
    for name in _tag_names(attr):
        tlp = mv.TLP_OF_TAG.get(name.strip().lower())
        if tlp is not None:
            if event_tlp is not None and _TLP_ORDER.index(tlp) > _TLP_ORDER.index(event_tlp):
                ev.warn(where, f"not mapped: marked {name}, stricter than the event; left out")
                return None
            continue
        parsed = mv.parse_machine_tag(name)
        if parsed is not None and parsed[0] == mv.ENLACE_NS:
            found[parsed[1]] = parsed[2]
        else:
            ev.warn(f"{where} Tag {name!r}", "not mapped: an attribute tag; left out")
    return found


class _Body:
    """Summary, details, seizure, entities, indicators gathered from attributes."""

    def __init__(self) -> None:
        self.parts: dict[str, str] = {}
        self.narrative: list[str] = []
        self.entities: list[dict[str, Any]] = []
        self.indicators: list[dict[str, str]] = []


def _attribute(ev: _Event, body: _Body, n: int, attr: Mapping[str, Any], tlp: Tlp | None) -> None:
    kind, value = str(attr.get("type", "")), str(attr.get("value", ""))
    where = f"Attribute[{n}] (type={kind})"
    tags = _attr_tags(ev, attr, where, tlp)
    if tags is None:
        return
    comment = str(attr.get("comment") or "")
    if mv.PART in tags and kind == "text":
        body.parts[tags[mv.PART]] = value
    elif mv.IDENTIFIER_OF in tags:
        index = int(tags[mv.IDENTIFIER_OF]) if tags[mv.IDENTIFIER_OF].isdigit() else 0
        if not 1 <= index <= len(body.entities):
            ev.warn(where, f"not mapped: identifier of entity {index}, which is not listed")
            return
        scheme = comment or _IDENTIFIER_SCHEME.get(kind, "other")
        body.entities[index - 1]["identifiers"].append({"scheme": scheme, "value": value})
    elif mv.ENTITY in tags or kind in mv.ENTITY_OF_TYPE:
        entity_kind = tags[mv.ENTITY].upper() if mv.ENTITY in tags else mv.ENTITY_OF_TYPE[kind]
        entity: dict[str, Any] = {"kind": entity_kind, "name": value, "identifiers": []}
        if mv.ENTITY_COUNTRY in tags:
            entity["country"] = tags[mv.ENTITY_COUNTRY]
        if comment:
            entity["role"] = comment
        body.entities.append(entity)
    elif kind in mv.INDICATOR_OF_TYPE or (kind in {"other", "text"} and mv.INDICATOR in tags):
        body.indicators.append({"type": _indicator_type(kind, value, tags), "value": value})
    elif kind in _NARRATIVE:
        body.narrative.append(value)
    else:
        ev.warn(where, f"not mapped: MISP type {kind!r} has no Enlace counterpart; left out")


def _indicator_type(kind: str, value: str, tags: Mapping[str, str]) -> str:
    """The Enlace type: the ``enlace:indicator`` tag's, else the MISP type's (IPv6 for an
    ``ip-*`` value with a colon)."""
    if mv.INDICATOR in tags:
        return tags[mv.INDICATOR].upper()  # validated with the bulletin
    indicator = mv.INDICATOR_OF_TYPE[kind]
    if indicator is IndicatorType.IPV4 and ":" in value:
        indicator = IndicatorType.IPV6
    return indicator.value


def _seizure(ev: _Event, text: str) -> dict[str, Any] | None:
    """``"<commodity>: <quantity> <unit>"`` as the sink writes it."""
    commodity, _, rest = text.rpartition(": ")
    quantity, _, unit = rest.partition(" ")
    try:
        return {"commodity": commodity, "quantity": float(quantity), "unit": unit}
    except ValueError:
        ev.warn("seizure", f"not mapped: {text!r} is not '<commodity>: <quantity> <unit>'")
        return None


def _geolocation(ev: _Event, n: int, obj: Mapping[str, Any]) -> None:
    if "location" in ev.obj:
        ev.warn(f"Object[{n}] (name=geolocation)", "not mapped: a second location; left out")
        return
    rel: dict[str, str] = {}
    for k, attr in enumerate(obj.get("Attribute") or []):
        relation = str(attr.get("object_relation", ""))
        if relation in {"countrycode", "country", "latitude", "longitude", "city", "text"}:
            rel.setdefault(relation, str(attr.get("value", "")))
        else:
            where = f"Object[{n}].Attribute[{k}] (object_relation={relation})"
            ev.warn(where, "not mapped: left out")
    country = rel.get("countrycode") or rel.get("country", "")
    if len(country) != 2:
        ev.warn(f"Object[{n}] (name=geolocation)", "not mapped: no 2-letter country code")
        return
    location: dict[str, Any] = {"country": country.upper()}
    if "latitude" in rel and "longitude" in rel:
        try:
            location |= {"lat": float(rel["latitude"]), "lon": float(rel["longitude"])}
        except ValueError:
            ev.warn(f"Object[{n}] (name=geolocation)", "not mapped: coordinates are not numbers")
    place = rel.get("city") or rel.get("text")
    if place:
        location["place"] = place
    ev.obj["location"] = location


def _defaults(ev: _Event) -> None:
    obj = ev.obj
    if ev.tlps:
        obj["tlp"] = max(ev.tlps, key=_TLP_ORDER.index).value
        if len(set(ev.tlps)) > 1:
            ev.warn("tlp", f"several TLP tags; the strictest ({obj['tlp']}) is used")
    else:
        ev.refuse("tlp", "no TLP tag (tlp:clear|green|amber|amber+strict|red)")
    for field, example in (("category", "cyber"), ("classification", "restricted")):
        if field not in obj:
            tag = mv.enlace_tag(field, example)
            ev.refuse(field, f"MISP has no {field}: tag the event, e.g. {tag}")
    if "severity" not in obj:
        level = str(ev.event.get("threat_level_id", "4"))
        severity = mv.SEVERITY_OF_THREAT_LEVEL.get(int(level) if level.isdigit() else 4)
        if severity is None:
            ev.refuse("severity", "threat_level_id is undefined and no enlace:severity tag")
        else:
            obj["severity"] = severity.value
    for field, default, why in (
        ("tearline_classification", obj.get("classification"), "the classification"),
        ("source_reliability", "F", "F, cannot be judged"),
        ("info_credibility", "C6", "6, cannot be judged"),
        ("source_type", "OTHER", "OTHER"),
        ("language", "und", "'und', undetermined"),
    ):
        if field not in obj and default is not None:
            obj[field] = default
            ev.warn(field, f"no tag for it; {why}")


def _objects(ev: _Event, event: Mapping[str, Any]) -> None:
    for n, obj in enumerate(event.get("Object") or []):
        if not isinstance(obj, Mapping) or obj.get("deleted"):
            continue
        if obj.get("name") == "geolocation":
            _geolocation(ev, n, obj)
        else:
            ev.warn(f"Object[{n}] (name={obj.get('name')})", "not mapped: left out")
    for key in ("Galaxy", "EventReport"):
        for n, extra in enumerate(event.get(key) or []):
            label = extra.get("name", "") if isinstance(extra, Mapping) else ""
            ev.warn(f"{key}[{n}] ({label})", "not mapped: left out")


def _read_event(event: Mapping[str, Any], line: int) -> _Event:
    ev = _Event(event, line)
    info = event.get("info")
    if not isinstance(info, str) or not info.strip():
        ev.refuse("info", "the event has no info (the bulletin's title)")
    else:
        ev.obj["title"] = info
    route: dict[str, Any] = {}
    for name in _tag_names(event):
        _event_tag(ev, name, route)
    _defaults(ev)
    if route:
        ev.obj["route"] = {"mode": "UNKNOWN", "via": [], **route}
    tlp = Tlp(ev.obj["tlp"]) if "tlp" in ev.obj else None
    body = _Body()
    for n, attr in enumerate(event.get("Attribute") or []):
        if isinstance(attr, Mapping) and not attr.get("deleted"):
            _attribute(ev, body, n, attr, tlp)
    _objects(ev, event)
    _body(ev, body)
    if not ev.refusals and event.get("uuid"):
        seed = f"{event['uuid']}/{event.get('timestamp', '')}"
        ev.obj["bulletin_id"] = str(uuid.uuid5(MISP_INTAKE_NAMESPACE, seed))
    return ev


def _body(ev: _Event, body: _Body) -> None:
    obj = ev.obj
    if mv.PART_SUMMARY in body.parts:
        obj["summary"] = body.parts[mv.PART_SUMMARY]
    elif "title" in obj:
        obj["summary"] = obj["title"]
        ev.warn("summary", 'no enlace:part="summary" text attribute; the title is used')
    details = [body.parts[mv.PART_DETAILS]] if mv.PART_DETAILS in body.parts else []
    details += body.narrative
    if details:
        obj["details"] = "\n\n".join(details)
    if mv.PART_SEIZURE in body.parts:
        seizure = _seizure(ev, body.parts[mv.PART_SEIZURE])
        if seizure is not None:
            obj["seizure"] = seizure
    if body.entities:
        obj["entities"] = body.entities
    if body.indicators:
        obj["indicators"] = body.indicators


def _events(obj: Any) -> Sequence[Any]:
    """The events in one JSON value: an export, an API answer, or a bare event."""
    if isinstance(obj, Mapping) and isinstance(obj.get("response"), list):
        return [e for x in obj["response"] for e in _events(x)]
    if isinstance(obj, Mapping) and isinstance(obj.get("Event"), Mapping):
        return [obj["Event"]]
    return [obj]


def parse_misp(data: bytes, *, name: str = "") -> ParsedInput:
    """Bulletin input items of the MISP events in ``data`` (a :class:`MispParsed`: see the
    module docstring for what is refused and what is only a warning)."""
    parsed = parse_input(data, fmt="json", name=name)
    items: list[Item] = []
    problems = list(parsed.problems)
    warnings: list[Problem] = []
    for item in parsed.items:
        for event in _events(item.obj):
            if not isinstance(event, Mapping):
                problems.append(Problem(item.line, "(event)", "is not a MISP event object"))
                continue
            ev = _read_event(event, item.line)
            warnings.extend(ev.warnings)
            if ev.refusals:
                problems.extend(ev.refusals)
            else:
                items.append(Item(len(items) + 1, item.line, ev.obj))
    return MispParsed(tuple(items), tuple(problems), parsed.digest, tuple(warnings))
