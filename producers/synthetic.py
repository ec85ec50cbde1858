"""A seeded generator of realistic synthetic bulletins from the seed scenario.

``BulletinGenerator(seed, registry).next(now)`` gives a valid :class:`ThreatBulletin`; the
same seed, registry and sequence of ``now`` values give the same bulletins (ids included),
so demos and benchmarks are reproducible. Variety: every category of the scenario, all
classifications, TLP levels and tearline levels, English and Spanish, locations, routes,
entities, seizures, indicators and references to the same origin's earlier bulletins.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from enlace.core.registry import Agency, Registry
from producers.scenario import (
    COMMODITIES,
    COUNTRY_NAMES,
    MALWARE_DOMAINS,
    MINISTRIES,
    ORGANIZATIONS,
    PERSONS,
    STORM_NAMES,
    THEMES,
    VESSELS,
    Place,
    Theme,
)
from schemas.models import ThreatBulletin, validate_bulletin

T = TypeVar("T")

SPANISH_SPEAKING = frozenset({"CO", "CR", "DO", "SV", "GT", "HN", "MX", "PA"})
# (from countries, to countries) per theme: where such flows come from and go to.
FLOWS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "go_fast": (("CO", "EC", "VE"), ("PA", "CR", "HN", "GT", "MX", "DO", "PR")),
    "port_seizure": (("CO", "EC", "PA"), ("US", "CA", "DO", "MX", "PA")),
    "narco_flight": (("VE", "CO"), ("HN", "GT", "BZ", "MX")),
    "arms": (("US",), ("MX", "GT", "HN", "SV", "HT", "JM")),
    "human_trafficking": (("HN", "GT", "SV", "NI"), ("MX", "US", "CR")),
    "darien_smuggling": (("CO",), ("PA", "CR", "MX", "US")),
    "laundering": (("CO", "MX", "DO"), ("PA", "US")),
    "farc_dissidents": (("CO",), ("PA",)),
}
ORG_OF_THEME = {
    "go_fast": "drug",
    "port_seizure": "drug",
    "narco_flight": "drug",
    "mara_cell": "gang",
    "farc_dissidents": "armed",
    "arms": "gang",
    "human_trafficking": "smuggling",
    "darien_smuggling": "smuggling",
    "ransomware": "cyber",
    "laundering": "laundering",
    "port_corruption": "drug",
}
SEIZURE_CHANCE = {"go_fast": 0.4, "port_seizure": 1.0, "narco_flight": 0.3, "arms": 0.5}
RECENT_PER_ORIGIN = 20


def _weighted(rng: random.Random, table: Sequence[tuple[T, int]]) -> T:
    values = [value for value, _ in table]
    return rng.choices(values, weights=[weight for _, weight in table])[0]


class BulletinGenerator:
    """Deterministic for a seed; not thread-safe (one generator per producer task)."""

    def __init__(
        self, seed: int, registry: Registry, *, agencies: Sequence[str] | None = None
    ) -> None:
        # Reproducible fiction, not secrets: a seeded PRNG is the point.
        self._rng = random.Random(seed)  # noqa: S311 - deterministic test data, not crypto
        self._agencies: list[Agency] = (
            [registry.get(agency) for agency in agencies] if agencies else list(registry)
        )
        if not self._agencies:
            raise ValueError("the generator needs at least one agency")
        self._all_ids = list(registry.ids)
        self._recent: dict[str, list[str]] = {}

    def next(self, now: datetime, *, origin: str | None = None) -> ThreatBulletin:
        bulletin = validate_bulletin(self.fields(now, origin=origin))
        recent = self._recent.setdefault(bulletin.origin, [])
        recent.append(bulletin.bulletin_id)
        del recent[:-RECENT_PER_ORIGIN]
        return bulletin

    def batch(self, count: int, now: datetime) -> list[ThreatBulletin]:
        return [self.next(now) for _ in range(count)]

    def fields(self, now: datetime, *, origin: str | None = None) -> dict[str, Any]:
        """The JSON-friendly fields of the next bulletin (advances the generator)."""
        rng = self._rng
        agency = (
            next(a for a in self._agencies if a.id == origin)
            if origin
            else rng.choice(self._agencies)
        )
        theme = rng.choices(THEMES, weights=[t.weight for t in THEMES])[0]
        place = self._place(theme, agency.country)
        spanish = agency.country in SPANISH_SPEAKING
        language = "es" if rng.random() < (0.8 if spanish else 0.15) else "en"
        slots = self._slots(theme, place)
        texts = theme.es if language == "es" else theme.en
        issued = now - timedelta(seconds=rng.uniform(0, 300))
        issued = issued.replace(microsecond=issued.microsecond // 1000 * 1000)
        classification = _weighted(
            rng,
            [("UNCLASSIFIED", 15), ("RESTRICTED", 35), ("CONFIDENTIAL", 35), ("SECRET", 15)]
            if theme.category != "NATURAL_DISASTER"
            else [("UNCLASSIFIED", 80), ("RESTRICTED", 20)],
        )
        tlp = _weighted(
            rng, [("CLEAR", 8), ("GREEN", 25), ("AMBER", 42), ("AMBER_STRICT", 15), ("RED", 10)]
        )
        fields: dict[str, Any] = {
            "bulletin_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "origin": agency.id,
            "origin_country": agency.country,
            "issued_at": issued.isoformat(),
            "valid_until": (
                (issued + timedelta(days=rng.choice([1, 3, 7, 14, 30]))).isoformat()
                if rng.random() < 0.8
                else None
            ),
            "category": theme.category,
            "severity": self._severity(theme),
            "classification": classification,
            "tlp": tlp,
            "releasable_to": self._recipients(agency.id, tlp),
            "caveats": self._caveats(),
            "tearline_classification": self._tearline(classification),
            "title": texts.title.format_map(slots)[:200],
            "summary": texts.summary.format_map(slots),
            "details": texts.details.format_map(slots) if rng.random() < 0.9 else None,
            "source_reliability": _weighted(
                rng, [("A", 5), ("B", 30), ("C", 35), ("D", 15), ("E", 5), ("F", 10)]
            ),
            "info_credibility": _weighted(
                rng, [("C1", 10), ("C2", 35), ("C3", 30), ("C4", 10), ("C5", 5), ("C6", 10)]
            ),
            "source_type": rng.choice(theme.source_types),
            "location": self._location(place),
            "route": self._route(theme, place),
            "entities": self._entities(theme, slots, place[0]),
            "seizure": self._seizure(theme, slots),
            "indicators": self._indicators(theme),
            "references": self._references(agency.id),
            "language": language,
        }
        return fields

    def _place(self, theme: Theme, country: str) -> Place:
        local = [p for p in theme.places if p[0] == country]
        if local and self._rng.random() < 0.7:
            return self._rng.choice(local)
        return self._rng.choice(theme.places)

    def _slots(self, theme: Theme, place: Place) -> dict[str, Any]:
        rng = self._rng
        sources, sinks = FLOWS.get(theme.name, ((place[0],), (place[0],)))
        origin_country = rng.choice(sources)
        destination = rng.choice([c for c in sinks if c != origin_country] or list(sinks))
        person, alias = rng.choice(PERSONS)
        ministry_en, ministry_es = rng.choice(MINISTRIES)
        qty_table = {
            "go_fast": [250, 450, 600, 900, 1200, 1800],
            "port_seizure": [180, 350, 720, 1500, 2400, 4100],
            "narco_flight": [300, 500, 800, 1200],
            "arms": [24, 60, 150, 300],
            "laundering": [85_000, 240_000, 610_000, 950_000],
            "port_corruption": [5_000, 12_000, 25_000],
        }
        return {
            "place": place[1],
            "country_en": COUNTRY_NAMES[place[0]][0],
            "country_es": COUNTRY_NAMES[place[0]][1],
            "from_country": origin_country,
            "to_country": destination,
            "from_en": COUNTRY_NAMES[origin_country][0],
            "from_es": COUNTRY_NAMES[origin_country][1],
            "to_en": COUNTRY_NAMES[destination][0],
            "to_es": COUNTRY_NAMES[destination][1],
            "vessel": rng.choice(VESSELS),
            "qty": float(rng.choice(qty_table.get(theme.name, [100]))),
            "unit": "kg",
            "hours": rng.choice([12, 24, 48, 72]),
            "length": rng.choice([10, 12, 14]),
            "engines": rng.choice(["two", "three", "four"]),
            "crew": rng.randint(3, 40),
            "count": rng.choice([300, 800, 1200, 2000]),
            "person": person,
            "alias": alias,
            "org": rng.choice(ORGANIZATIONS[ORG_OF_THEME.get(theme.name, "drug")]),
            "container": f"MSKU{rng.randint(1_000_000, 9_999_999)}",
            "packages": rng.randint(40, 400),
            "tail": f"N{rng.randint(100, 999)}{rng.choice('ABCDEFGHJK')}{rng.choice('LMNPRSTUVW')}",
            "plate": f"C {rng.randint(100, 999)}-{rng.randint(100, 999)}",
            "phone": f"+57 3{rng.randint(10, 99)} {rng.randint(100, 999)} "
            f"{rng.randint(1000, 9999)}",
            "ministry_en": ministry_en,
            "ministry_es": ministry_es,
            "storm": rng.choice(STORM_NAMES),
            "cat": rng.randint(1, 5),
            "wind": rng.choice([130, 165, 190, 220, 250]),
        }

    def _severity(self, theme: Theme) -> str:
        if theme.category == "NATURAL_DISASTER":
            return _weighted(self._rng, [("HIGH", 50), ("CRITICAL", 50)])
        return _weighted(self._rng, [("LOW", 15), ("MEDIUM", 40), ("HIGH", 35), ("CRITICAL", 10)])

    def _tearline(self, classification: str) -> str:
        levels = ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"]
        allowed = levels[: levels.index(classification) + 1]
        return self._rng.choices(allowed, weights=[4, 3, 2, 1][: len(allowed)])[0]

    def _recipients(self, origin: str, tlp: str) -> list[str]:
        rng = self._rng
        others = [a for a in self._all_ids if a != origin]
        if tlp == "RED":
            return sorted(rng.sample(others, k=min(len(others), rng.randint(1, 3)))) or [origin]
        if rng.random() < 0.7 or not others:
            return []
        picks = rng.sample(others, k=min(len(others), rng.randint(1, 4)))
        return sorted({p[:2].upper() if rng.random() < 0.4 else p for p in picks})

    def _caveats(self) -> list[str]:
        table = [
            ("LAW_ENFORCEMENT_ONLY", 0.4),
            ("ORCON", 0.2),
            ("NO_PUBLIC_RELEASE", 0.25),
            ("NOFORN", 0.05),
        ]
        return [name for name, chance in table if self._rng.random() < chance]

    def _location(self, place: Place) -> dict[str, Any]:
        rng = self._rng
        if rng.random() < 0.1:
            return {"lat": None, "lon": None, "country": place[0], "place": place[1]}
        return {
            "lat": round(max(-90.0, min(90.0, place[2] + rng.uniform(-0.05, 0.05))), 4),
            "lon": round(max(-180.0, min(180.0, place[3] + rng.uniform(-0.05, 0.05))), 4),
            "country": place[0],
            "place": place[1],
        }

    def _route(self, theme: Theme, place: Place) -> dict[str, Any] | None:
        if theme.route_mode is None:
            return None
        sources, sinks = FLOWS.get(theme.name, ((place[0],), (place[0],)))
        start = self._rng.choice(sources)
        end = self._rng.choice([c for c in sinks if c != start] or list(sinks))
        via = sorted({place[0]} - {start, end})
        return {"mode": theme.route_mode, "from_country": start, "to_country": end, "via": via}

    def _entities(self, theme: Theme, slots: dict[str, Any], country: str) -> list[dict[str, Any]]:
        rng = self._rng
        if theme.category == "NATURAL_DISASTER":
            return []
        entities: list[dict[str, Any]] = [
            {
                "kind": "ORGANIZATION",
                "name": slots["org"],
                "identifiers": [],
                "country": None,
                "role": "group",
            }
        ]
        if theme.category == "CYBER":
            return entities
        entities.append(
            {
                "kind": "PERSON",
                "name": slots["person"],
                "identifiers": [
                    {"scheme": "national_id", "value": f"{rng.randint(1_000_000, 99_999_999)}"}
                ],
                "country": slots["from_country"],
                "role": "leader",
            }
        )
        if theme.name == "go_fast":
            entities.append(
                {
                    "kind": "VESSEL",
                    "name": slots["vessel"],
                    "identifiers": [
                        {"scheme": "mmsi", "value": f"35{rng.randint(1_000_000, 9_999_999)}"}
                    ],
                    "country": country,
                    "role": "transport",
                }
            )
        if theme.name == "narco_flight":
            entities.append(
                {
                    "kind": "AIRCRAFT",
                    "name": slots["tail"],
                    "identifiers": [{"scheme": "tail_number", "value": slots["tail"]}],
                    "country": None,
                    "role": "transport",
                }
            )
        if theme.name == "arms":
            entities.append(
                {
                    "kind": "VEHICLE",
                    "name": "cargo truck",
                    "identifiers": [{"scheme": "plate", "value": slots["plate"]}],
                    "country": country,
                    "role": "transport",
                }
            )
        if theme.name in {"darien_smuggling", "mara_cell"}:
            entities.append(
                {
                    "kind": "PHONE",
                    "name": slots["phone"],
                    "identifiers": [],
                    "country": None,
                    "role": "payments",
                }
            )
        if theme.name == "laundering":
            entities.append(
                {
                    "kind": "ACCOUNT",
                    "name": f"PA{rng.randint(10, 99)} BANK {rng.randint(10**11, 10**12 - 1)}",
                    "identifiers": [],
                    "country": "PA",
                    "role": "receiving account",
                }
            )
        return entities

    def _seizure(self, theme: Theme, slots: dict[str, Any]) -> dict[str, Any] | None:
        chance = SEIZURE_CHANCE.get(theme.name, 0.0)
        if self._rng.random() >= chance:
            return None
        commodity, unit = self._rng.choice(COMMODITIES["arms" if theme.name == "arms" else "drug"])
        return {"commodity": commodity, "quantity": slots["qty"], "unit": unit}

    def _indicators(self, theme: Theme) -> list[dict[str, Any]]:
        rng = self._rng
        if theme.category == "CYBER":
            found: list[dict[str, Any]] = [
                {"type": "IPV4", "value": f"203.0.113.{rng.randint(1, 254)}"},
                {"type": "IPV4", "value": f"198.51.100.{rng.randint(1, 254)}"},
                {"type": "DOMAIN", "value": rng.choice(MALWARE_DOMAINS)},
                {"type": "FILE_SHA256", "value": f"{rng.getrandbits(256):064x}"},
                {"type": "EMAIL", "value": f"planillas{rng.randint(1, 99)}@example.org"},
            ]
            return found[: rng.randint(2, len(found))]
        if theme.category == "MONEY_LAUNDERING" and rng.random() < 0.5:
            return [{"type": "CRYPTO_WALLET", "value": f"T{rng.getrandbits(160):040x}"[:34]}]
        return []

    def _references(self, origin: str) -> list[dict[str, Any]]:
        recent = self._recent.get(origin)
        if not recent or self._rng.random() >= 0.15:
            return []
        relation = self._rng.choice(["RELATED", "UPDATES"])
        return [{"bulletin_id": self._rng.choice(recent), "relation": relation}]


def to_json_line(bulletin: ThreatBulletin) -> str:
    """One JSON Lines record (the JSON form ``ThreatBulletin.model_validate`` accepts)."""
    return bulletin.model_dump_json() + "\n"
