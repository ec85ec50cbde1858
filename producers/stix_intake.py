"""Publishing from STIX 2.1 (OpenCTI): a bundle's reports -> bulletin input dicts (``enlace
produce --format stix``), pure.

One item per ``report``, whose ``obj`` is the JSON ``enlace produce`` accepts;
``producers.prepare`` then fills the origin's country (and ``issued_at``, see below) and
validates. The reading is the inverse of ``consumers.stix_mapping`` (labels, marking ids and
patterns in ``schemas.stix_vocab``), so a bundle Enlace wrote publishes back to the same
bulletin, and extended to what OpenCTI exports:

- ``name`` -> title; ``description`` -> summary (its first paragraph) and details (the rest);
  TLP from the report's markings (TLP 2.0 ids, the TLP 1.0 ids OpenCTI exports, or a
  marking object whose extension, definition or name says ``TLP:...``);
- ``prefix:value`` labels -> category, severity, classification, tearline classification,
  Admiralty code, source type, caveats, recipients, language, location country and route;
- else ``x_opencti_reliability`` (report, then its creator) -> source reliability,
  ``confidence`` -> credibility (Appendix B ranges), ``lang`` -> language;
- the creator: an identity naming an Enlace agency (``enlace`` external reference) becomes
  ``origin``, so ``prepare`` refuses another agency's report (a publisher signs only its own
  agency's words); any other creator is not mapped;
- locations: the one with coordinates -> location (its ``name`` the place); without one, the
  first with a country; indicators whose pattern is ``[path = 'value']`` on a known path ->
  indicators, their latest ``valid_until`` -> valid_until.
- ids: a report with Enlace's external reference *is* that bulletin: its id and ``issued_at``
  (``published``) are kept, so re-publishing a stored bundle is idempotent (the router drops
  a copy; to publish an edit, remove the reference: it is then a new bulletin). Any other
  report gets UUIDv5 of its id and ``modified`` (an unchanged re-export is the same bulletin,
  an edit a new one) and is issued now: the exchange admits a bulletin only within minutes
  of its issue, so the report's own date cannot be it.

Refusals (the report is not published; a :class:`Problem` in ``problems``): no ``name``; no
TLP marking; no category, classification or severity label (STIX has no such property and
guessing a classification would mis-release); a single-valued label given twice with
different values, or a label value outside the vocabulary; anything the model refuses.

Warnings (published without the part; ``ParsedInput.warnings``), the same rules as the MISP
intake: every object no report uses (``objects[7] (type=malware)``: malware, attack patterns,
relationships, notes... have no bulletin counterpart), report properties and labels with no
field, indicators whose pattern is not one value on a known path, references to objects not
in the bundle; no Admiralty (F and 6: "cannot be judged"); no source type (OTHER); no
language (``und``); no tearline classification (= the classification: nothing is released
lower than asked); no description (summary = title); several TLPs (the strictest).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from typing import Any

from producers.inputs import Item, ParsedInput, Problem, load_document
from schemas import stix_vocab as sv
from schemas.vocab import SourceReliability, Tlp

# Fixed namespace of bulletin ids derived from foreign reports (uuid5 of id and modified).
STIX_INTAKE_NAMESPACE = uuid.UUID("0b7e4c2a-9d31-5f68-a4c0-6e2d8b1f3a95")

_SINGLE = {
    sv.LABEL_CATEGORY: "category",
    sv.LABEL_SEVERITY: "severity",
    sv.LABEL_CLASSIFICATION: "classification",
    sv.LABEL_TEARLINE: "tearline_classification",
    sv.LABEL_SOURCE_TYPE: "source_type",
    sv.LABEL_ADMIRALTY: "admiralty",
    sv.LABEL_LANGUAGE: "language",
    sv.LABEL_LOCATION: "location",
    sv.LABEL_ROUTE_MODE: "mode",
    sv.LABEL_ROUTE_FROM: "from_country",
    sv.LABEL_ROUTE_TO: "to_country",
    sv.LABEL_RELEASE: "release",
}
_MULTI = {
    sv.LABEL_CAVEAT: "caveats",
    sv.LABEL_RELEASABLE_TO: "releasable_to",
    sv.LABEL_ROUTE_VIA: "via",
}
_COPIED = (
    *("category", "severity", "classification", "tearline_classification", "source_type"),
    *("caveats", "releasable_to"),
)
_UPPER = {
    *("category", "severity", "classification", "tearline_classification", "source_type"),
    *("mode", "caveats", "location", "from_country", "to_country", "via", "admiralty"),
}
# Properties read, or bookkeeping with no bulletin meaning (no warning for these).
_BOOKKEEPING = "type spec_version id created modified created_by_ref object_marking_refs"
_REPORT_KNOWN = frozenset(
    f"{_BOOKKEEPING} name description report_types published object_refs labels lang "
    f"confidence external_references {sv.OPENCTI_RELIABILITY_PROPERTY}".split()
)
# What the consumers' mapping writes on an indicator besides its pattern.
_INDICATOR_KNOWN = frozenset(
    f"{_BOOKKEEPING} name description indicator_types pattern pattern_type valid_from "
    "valid_until labels confidence".split()
)
_TLP_ORDER = list(Tlp)  # CLEAR < GREEN < AMBER < AMBER_STRICT < RED


def _where(index: int, obj: Mapping[str, Any]) -> str:
    return f"objects[{index}] (type={obj.get('type')})"


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    """``obj[key]`` if it is a list, else none: a malformed property is skipped, not fatal."""
    value = obj.get(key)
    return value if isinstance(value, list) else []


def _line_of(text: str, obj_id: str) -> int | None:
    match = re.search(r'"id"\s*:\s*"' + re.escape(obj_id) + '"', text)
    return None if match is None else text.count("\n", 0, match.start()) + 1


class _Report:
    """One report being read: the bulletin dict, its refusals, its warnings, what it used."""

    def __init__(
        self, report: Mapping[str, Any], index: int, line: int | None, bundle: _Bundle
    ) -> None:
        self.report, self.index, self.line, self.bundle = report, index, line, bundle
        self.obj: dict[str, Any] = {}
        self.refusals: list[Problem] = []
        self.warnings: list[Problem] = []
        self.used: set[str] = set()

    def refuse(self, field: str, rule: str) -> None:
        self.refusals.append(Problem(self.line, field, rule, self.obj.get("bulletin_id")))

    def warn(self, field: str, rule: str, obj: Mapping[str, Any] | None = None) -> None:
        """A warning on the report's line, or on ``obj``'s (an object it refers to)."""
        line = self.line if obj is None else _line_of(self.bundle.text, str(obj.get("id")))
        self.warnings.append(Problem(line, field, rule, self.obj.get("bulletin_id")))

    def here(self, prop: str = "") -> str:
        return _where(self.index, self.report) + (f".{prop}" if prop else "")


class _Bundle:
    def __init__(self, objects: list[Any], text: str) -> None:
        self.text = text
        self.objects = [o for o in objects if isinstance(o, Mapping)]
        self.by_id: dict[str, Mapping[str, Any]] = {}
        self.index: dict[str, int] = {}
        for n, obj in enumerate(objects):
            if isinstance(obj, Mapping) and isinstance(obj.get("id"), str):
                self.by_id.setdefault(obj["id"], obj)
                self.index.setdefault(obj["id"], n)


def _labels(r: _Report) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for text in _list(r.report, "labels"):
        parsed = sv.split_label(text) if isinstance(text, str) else None
        if parsed is not None and parsed[0] in _MULTI:
            found.setdefault(_MULTI[parsed[0]], []).append(parsed[1])
            continue
        if parsed is None or parsed[0] not in _SINGLE:
            r.warn(r.here("labels"), f"not mapped: label {text!r} names no bulletin field")
            continue
        key, value = _SINGLE[parsed[0]], parsed[1]
        if found.setdefault(key, value) != value:
            r.refuse(key, f"labels give {parsed[0]} twice: {found[key]!r} and {value!r}")
    return found


def _norm(key: str, value: str) -> str:
    if key == "releasable_to":
        return value.upper() if len(value) == 2 else value.lower()
    return value.upper() if key in _UPPER else value


def _ids(r: _Report) -> None:
    refs = _list(r.report, "external_references")
    ours = [e for e in refs if isinstance(e, Mapping) and e.get("source_name") == sv.ENLACE_SOURCE]
    for n, ref in enumerate(refs):
        if not (isinstance(ref, Mapping) and ref.get("source_name") == sv.ENLACE_SOURCE):
            r.warn(r.here(f"external_references[{n}]"), "not mapped: a bulletin has no links")
    if ours and isinstance(ours[0].get("external_id"), str):
        r.obj["bulletin_id"] = ours[0]["external_id"]
        r.obj["issued_at"] = r.report.get("published") or r.report.get("created")
        return
    seed = f"{r.report.get('id')}|{r.report.get('modified') or r.report.get('created')}"
    r.obj["bulletin_id"] = str(uuid.uuid5(STIX_INTAKE_NAMESPACE, seed))


def _text(r: _Report) -> None:
    name = r.report.get("name")
    if not isinstance(name, str) or not name.strip():
        r.refuse("title", "the report has no name")
        return
    r.obj["title"] = name
    description = r.report.get("description")
    if not isinstance(description, str) or not description.strip():
        r.warn("summary", "the report has no description: the summary is its name")
        r.obj["summary"] = name
        return
    summary, _, details = description.partition("\n\n")
    r.obj["summary"] = summary
    if details.strip():
        r.obj["details"] = details


def _tlp(r: _Report) -> None:
    found: list[Tlp] = []
    for ref in _list(r.report, "object_marking_refs"):
        tlp = sv.tlp_of_marking(ref, r.bundle.by_id.get(ref)) if isinstance(ref, str) else None
        if tlp is None:
            r.warn(r.here("object_marking_refs"), f"not mapped: {ref!r} is not a TLP marking")
            continue
        r.used.add(ref)
        found.append(tlp)
    if not found:
        r.refuse("tlp", "the report has no TLP marking")
        return
    strictest = max(found, key=_TLP_ORDER.index)
    if len(set(found)) > 1:
        r.warn("tlp", f"the report has several TLP markings: the strictest, {strictest.value}")
    r.obj["tlp"] = strictest.value


def _grading(r: _Report, found: Mapping[str, Any]) -> None:
    admiralty = found.get("admiralty")
    if admiralty is not None:
        letter, digit = admiralty[:1], admiralty[1:]
        if letter not in SourceReliability.__members__ or digit not in "123456" or len(digit) != 1:
            r.refuse("source_reliability", f"admiralty:{admiralty} is not an Admiralty code")
            return
        r.obj["source_reliability"], r.obj["info_credibility"] = letter, f"C{digit}"
        return
    creator = r.bundle.by_id.get(str(r.report.get("created_by_ref")), {})
    reliability = r.report.get(sv.OPENCTI_RELIABILITY_PROPERTY) or creator.get(
        sv.OPENCTI_RELIABILITY_PROPERTY
    )
    letter = reliability.strip()[:1].upper() if isinstance(reliability, str) else ""
    if letter not in SourceReliability.__members__:
        r.warn("source_reliability", "no Admiralty label or x_opencti_reliability: F")
        letter = "F"
    r.obj["source_reliability"] = letter
    confidence = r.report.get("confidence")
    credibility = sv.credibility_of(confidence if isinstance(confidence, int) else None)
    if confidence is None:
        r.warn("info_credibility", "no Admiralty label or confidence: 6, cannot be judged")
    r.obj["info_credibility"] = credibility.value


def _fields(r: _Report, found: Mapping[str, Any]) -> None:
    for key in ("category", "severity", "classification"):
        if key not in found:
            r.refuse(key, f"the report has no '{key}:<value>' label (STIX has no {key})")
    for key in _COPIED:
        if key in found:
            r.obj[key] = found[key]
    if "tearline_classification" not in r.obj and "classification" in r.obj:
        r.warn("tearline_classification", "no label: the classification (released no lower)")
        r.obj["tearline_classification"] = r.obj["classification"]
    if "source_type" not in r.obj:
        r.warn("source_type", "no 'source-type:<value>' label: OTHER")
        r.obj["source_type"] = "OTHER"
    lang = r.report.get("lang")
    language = found.get("language") or (lang if isinstance(lang, str) else None)
    if language is None:
        r.warn("language", "no lang or 'language:<tag>' label: 'und', undetermined")
    r.obj["language"] = language or "und"


def _place(r: _Report, locations: list[Mapping[str, Any]], found: Mapping[str, Any]) -> None:
    """The bulletin's location: the label's country, the place with coordinates (full
    copies), else the first location naming a country."""
    place = next((o for o in locations if "latitude" in o and "longitude" in o), None)
    country = found.get("location")
    if country is None:
        with_country = [o for o in locations if isinstance(o.get("country"), str)]
        source = place or (with_country[0] if with_country else None)
        country = None if source is None else source.get("country")
    if country is None:
        return
    location: dict[str, Any] = {"country": country.upper()}
    if place is not None and str(place.get("country", "")).upper() == location["country"]:
        location["lat"], location["lon"] = place["latitude"], place["longitude"]
        name = place.get("name")
        if isinstance(name, str) and name != place.get("country"):
            location["place"] = name
    r.obj["location"] = location


def _route(r: _Report, found: Mapping[str, Any]) -> None:
    if "mode" not in found:
        return
    route: dict[str, Any] = {"mode": found["mode"].upper(), "via": found.get("via", [])}
    for key in ("from_country", "to_country"):
        if key in found:
            route[key] = found[key].upper()
    r.obj["route"] = route


def _locations(
    r: _Report, locations: list[tuple[int, Mapping[str, Any]]], found: Mapping[str, Any]
) -> None:
    _place(r, [o for _, o in locations], found)
    _route(r, found)
    route = r.obj.get("route", {})
    named = {
        r.obj.get("location", {}).get("country"),
        route.get("from_country"),
        route.get("to_country"),
        *route.get("via", []),
    }
    for index, obj in locations:
        country = str(obj.get("country", "")).upper()
        if country and country in named:
            r.used.add(obj["id"])
        else:
            why = "a bulletin has one location and a route (route-* labels name its countries)"
            r.warn(_where(index, obj), f"not mapped: {why}", obj)


def _indicators(r: _Report, indicators: list[tuple[int, Mapping[str, Any]]]) -> None:
    out: list[dict[str, str]] = []
    until: set[str] = set()
    for index, obj in indicators:
        pattern = obj.get("pattern")
        parsed = sv.parse_pattern(pattern) if isinstance(pattern, str) else None
        if obj.get("pattern_type", "stix") != "stix" or parsed is None:
            r.warn(
                _where(index, obj),
                f"not mapped: pattern {pattern!r} is not one value on a known path",
                obj,
            )
            continue
        r.used.add(obj["id"])
        out.append({"type": parsed[0].value, "value": parsed[1]})
        if isinstance(obj.get("valid_until"), str):
            until.add(obj["valid_until"])
        dropped = sorted(k for k in obj if k not in _INDICATOR_KNOWN)
        if dropped:
            r.warn(_where(index, obj), f"not mapped: {', '.join(dropped)}", obj)
    if out:
        r.obj["indicators"] = out
    if until:
        r.obj["valid_until"] = max(until)
        if len(until) > 1:
            r.warn("valid_until", "indicators end at different times: the latest")


def _creator(r: _Report) -> None:
    ref = r.report.get("created_by_ref")
    creator = r.bundle.by_id.get(ref) if isinstance(ref, str) else None
    if creator is None:
        return
    r.used.add(creator["id"])
    for ext in _list(creator, "external_references"):
        if isinstance(ext, Mapping) and ext.get("source_name") == sv.ENLACE_SOURCE:
            r.obj["origin"] = ext.get("external_id")


def _read_report(r: _Report) -> None:
    _ids(r)
    for prop in sorted(k for k in r.report if k not in _REPORT_KNOWN):
        r.warn(r.here(prop), "not mapped: no bulletin field")
    found = {
        k: [_norm(k, x) for x in v] if isinstance(v, list) else _norm(k, v)
        for k, v in _labels(r).items()
    }
    _text(r)
    _tlp(r)
    _fields(r, found)
    _grading(r, found)
    _creator(r)
    locations: list[tuple[int, Mapping[str, Any]]] = []
    indicators: list[tuple[int, Mapping[str, Any]]] = []
    for ref in _list(r.report, "object_refs"):
        obj = r.bundle.by_id.get(ref) if isinstance(ref, str) else None
        if obj is None:
            r.warn(r.here("object_refs"), f"not mapped: {ref!r} is not in the bundle")
        elif obj.get("type") == "location":
            locations.append((r.bundle.index[ref], obj))
        elif obj.get("type") == "indicator":
            indicators.append((r.bundle.index[ref], obj))
    _locations(r, locations, found)
    _indicators(r, indicators)


def parse_stix(data: bytes, *, name: str = "") -> ParsedInput:
    """Bulletin input items of the reports of the STIX 2.1 bundle in ``data`` (see the module
    docstring for what is refused and what is only a warning). ``name`` is unused: a bundle
    is one JSON document whatever the file is called."""
    del name
    digest = hashlib.sha256(data).hexdigest()
    loaded = load_document(data)
    if isinstance(loaded, Problem):
        return ParsedInput((), (loaded,), digest)
    text, doc = loaded
    if not (isinstance(doc, Mapping) and doc.get("type") == "bundle"):
        problem = Problem(None, "(stix)", 'is not a STIX 2.1 bundle (no "type": "bundle")')
        return ParsedInput((), (problem,), digest)
    objects = doc.get("objects")
    bundle = _Bundle(objects if isinstance(objects, list) else [], text)
    items: list[Item] = []
    problems: list[Problem] = []
    warnings: list[Problem] = []
    used: set[str] = set()
    reports = [(n, o) for n, o in enumerate(bundle.objects) if o.get("type") == "report"]
    if not reports:
        problems.append(Problem(None, "(stix)", "the bundle has no report: nothing to publish"))
    for position, (index, report) in enumerate(reports, start=1):
        r = _Report(
            report,
            bundle.index.get(str(report.get("id")), index),
            _line_of(text, str(report.get("id"))),
            bundle,
        )
        _read_report(r)
        warnings.extend(r.warnings)
        used |= r.used | {str(report.get("id"))}
        if r.refusals:
            problems.extend(r.refusals)
        else:
            items.append(Item(position, r.line or 1, r.obj))
    for obj in bundle.objects:  # a marking is used when it marks anything
        used.update(m for m in _list(obj, "object_marking_refs") if isinstance(m, str))
    for n, obj in enumerate(objects if isinstance(objects, list) else []):
        if not isinstance(obj, Mapping):
            warnings.append(Problem(None, f"objects[{n}]", "not mapped: not a STIX object"))
        elif obj.get("id") not in used:
            line = _line_of(text, str(obj.get("id")))
            warnings.append(Problem(line, _where(n, obj), _unused(obj)))
    return ParsedInput(tuple(items), tuple(problems), digest, tuple(warnings))


def _unused(obj: Mapping[str, Any]) -> str:
    kind = obj.get("type")
    if kind == "marking-definition":
        return "not mapped: nothing is marked with it"
    if kind == "relationship":
        return "not mapped: a bulletin has no relationships"
    return f"not mapped: a bulletin has no {kind} (or no report refers to it)"
