"""The seed scenario's vocabulary for synthetic bulletins: places, names, routes and texts.

The vocabulary is data (``producers/data/scenario.json``); this module types it. Fiction drawn
from public, open-source patterns of the region (Caribbean and Eastern Pacific cocaine routes,
maras, FARC dissidents, the Darién crossing...). Every person, vessel, phone, account, wallet
and domain in it is invented; IPs are RFC 5737 documentation ranges. Texts are
``str.format`` templates over the slots the generator fills (see ``synthetic``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCENARIO_FILE = Path(__file__).resolve().parent / "data" / "scenario.json"

# A place: country code, name, latitude, longitude.
Place = tuple[str, str, float, float]


@dataclass(frozen=True)
class Texts:
    """A bulletin's words in one language."""

    title: str
    summary: str
    details: str


@dataclass(frozen=True)
class Theme:
    """One kind of report: its category, where it happens and how it reads in en/es."""

    name: str
    category: str
    weight: int
    places: list[Place]
    source_types: tuple[str, ...]
    route_mode: str | None
    en: Texts
    es: Texts


def _pairs(rows: list[list[str]]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in rows]


def _theme(raw: dict[str, Any]) -> Theme:
    return Theme(
        name=raw["name"],
        category=raw["category"],
        weight=int(raw["weight"]),
        places=[(c, n, float(lat), float(lon)) for c, n, lat, lon in raw["places"]],
        source_types=tuple(raw["source_types"]),
        route_mode=raw["route_mode"],
        en=Texts(**raw["en"]),
        es=Texts(**raw["es"]),
    )


_DATA: dict[str, Any] = json.loads(SCENARIO_FILE.read_text(encoding="utf-8"))

COUNTRY_NAMES: dict[str, tuple[str, str]] = {
    code: (en, es) for code, (en, es) in _DATA["country_names"].items()
}
VESSELS: list[str] = list(_DATA["vessels"])
PERSONS: list[tuple[str, str]] = _pairs(_DATA["persons"])
ORGANIZATIONS: dict[str, list[str]] = {k: list(v) for k, v in _DATA["organizations"].items()}
COMMODITIES: dict[str, list[tuple[str, str]]] = {
    k: _pairs(v) for k, v in _DATA["commodities"].items()
}
MINISTRIES: list[tuple[str, str]] = _pairs(_DATA["ministries"])
STORM_NAMES: list[str] = list(_DATA["storm_names"])
MALWARE_DOMAINS: list[str] = list(_DATA["malware_domains"])
THEMES: list[Theme] = [_theme(t) for t in _DATA["themes"]]
