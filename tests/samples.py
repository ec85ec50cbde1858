"""Valid sample records for tests, the demo and documentation.

``sample_bulletin`` gives a rich bulletin (every optional part filled, so the tearline differs
from the full copy) with a fresh id and ``issued_at`` now; ``fixed_bulletin`` gives the same
bulletin with a fixed id and times, for golden bytes. Overrides take model values or the
JSON-friendly forms ``ThreatBulletin.model_validate`` accepts.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES
from producers.inputs import parse_input
from producers.prepare import prepare_items
from schemas.models import (
    AuditRecord,
    ThreatBulletin,
    TrustEvent,
    validate_audit,
    validate_bulletin,
    validate_event,
)
from schemas.vocab import Category, Classification, TrustEventKind

FIXED_BULLETIN_ID = "6f1c7d2e-8b3a-4c5d-9e0f-1a2b3c4d5e6f"
FIXED_REFERENCE_ID = "0b9d8c7a-6f5e-4d3c-8b2a-190817263544"
FIXED_TIME = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)

# A plausible place per seed country, so every agency's sample looks like its own report.
_PLACES: dict[str, tuple[float, float, str]] = {
    "BZ": (17.2510, -88.7590, "Belmopan"),
    "CA": (45.4215, -75.6972, "Ottawa"),
    "CO": (3.8801, -77.0312, "Buenaventura"),
    "CR": (10.0163, -83.0336, "Puerto Limón"),
    "DO": (18.4861, -69.9312, "Santo Domingo"),
    "SV": (13.4920, -89.3810, "Puerto de La Libertad"),
    "US": (24.5551, -81.7800, "Key West"),
    "GT": (14.0167, -90.7833, "Puerto San José"),
    "HN": (15.7835, -86.7822, "La Ceiba"),
    "MX": (14.9036, -92.2630, "Tapachula"),
    "PA": (8.4167, -77.9500, "Darién, Yaviza"),
}


def _now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def bulletin_fields(origin: str = "pa-senafront") -> dict[str, Any]:
    """The default field values of ``sample_bulletin`` as a JSON-friendly dict."""
    country = origin[:2].upper()
    lat, lon, place = _PLACES.get(country, (None, None, None))
    issued = _now_ms()
    return {
        "bulletin_id": str(uuid.uuid4()),
        "origin": origin,
        "origin_country": country,
        "issued_at": issued,
        "valid_until": issued + timedelta(days=7),
        "category": "DRUG_TRAFFICKING",
        "severity": "HIGH",
        "classification": "CONFIDENTIAL",
        "tlp": "AMBER",
        "releasable_to": [],
        "caveats": ["LAW_ENFORCEMENT_ONLY"],
        "tearline_classification": "RESTRICTED",
        "title": "Go-fast boat expected on the Pacific coast",
        "summary": "A go-fast boat with suspected cocaine is expected to move north along the "
        "Pacific coast within 72 hours.",
        "details": "Liaison reporting indicates a 12 m go-fast boat with twin outboards, "
        "departing at night and refuelling at sea.",
        "source_reliability": "B",
        "info_credibility": "C2",
        "source_type": "LIAISON",
        "location": {"lat": lat, "lon": lon, "country": country, "place": place},
        "route": {"mode": "SEA", "from_country": "CO", "to_country": "MX", "via": ["PA", "CR"]},
        "entities": [
            {
                "kind": "VESSEL",
                "name": "Sirena del Mar",
                "identifiers": [{"scheme": "mmsi", "value": "354123000"}],
                "country": "PA",
                "role": "transport",
            },
            {"kind": "PHONE", "name": "+507 6000 0000", "identifiers": [], "role": "contact"},
        ],
        "seizure": {"commodity": "cocaine", "quantity": 450.0, "unit": "kg"},
        "indicators": [{"type": "CRYPTO_WALLET", "value": "bc1qexampleexampleexample0000"}],
        "references": [{"bulletin_id": FIXED_REFERENCE_ID, "relation": "RELATED"}],
        "language": "es",
    }


def sample_bulletin(origin: str = "pa-senafront", **overrides: Any) -> ThreatBulletin:
    """A valid bulletin from ``origin`` (any well-formed agency id) with ``overrides`` applied."""
    fields = bulletin_fields(origin)
    fields.update(overrides)
    return validate_bulletin(fields)


def routed_bulletin(origin: str, **overrides: Any) -> ThreatBulletin:
    """A CONFIDENTIAL drug-trafficking bulletin with an UNCLASSIFIED tearline, releasable to
    everyone: what the routing tests' agreements release FULL to some partners, TEARLINE to
    others."""
    fields: dict[str, Any] = {
        "category": Category.DRUG_TRAFFICKING,
        "classification": Classification.CONFIDENTIAL,
        "tearline_classification": Classification.UNCLASSIFIED,
        "releasable_to": (),
        **overrides,
    }
    return sample_bulletin(origin, **fields)


def fixed_bulletin(origin: str = "pa-senafront", **overrides: Any) -> ThreatBulletin:
    """``sample_bulletin`` with a fixed id and times: the same bytes on every run."""
    fixed: dict[str, Any] = {
        "bulletin_id": FIXED_BULLETIN_ID,
        "issued_at": FIXED_TIME,
        "valid_until": FIXED_TIME + timedelta(days=7),
    }
    fixed.update(overrides)
    return sample_bulletin(origin, **fixed)


def sample_event(
    kind: TrustEventKind | str = TrustEventKind.RECEIPT,
    reporter: str = "cr-msp",
    subject: str = "pa-senafront",
    **overrides: Any,
) -> TrustEvent:
    """A valid trust event (a receipt from cr-msp about a pa-senafront bulletin by default)."""
    fields: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "kind": kind,
        "reporter": reporter,
        "subject": subject,
        "bulletin_id": str(uuid.uuid4()),
        "occurred_at": _now_ms(),
        "note": None,
    }
    fields.update(overrides)
    return validate_event(fields)


def sample_audit(**overrides: Any) -> AuditRecord:
    """A valid audit record (a FULL release from pa-senafront to cr-msp by default)."""
    fields: dict[str, Any] = {
        "bulletin_id": str(uuid.uuid4()),
        "origin": "pa-senafront",
        "partner": "cr-msp",
        "decision": "FULL",
        "rule": "score_full",
        "score": 0.82,
        "factors": [
            {"name": "prior", "value": 0.7, "note": "standard agreement"},
            {"name": "receipts", "value": 12.0, "note": "on-time receipts, decayed"},
        ],
        "decided_at": _now_ms(),
        "source_topic": "enlace.outbound.pa-senafront",
        "source_partition": 0,
        "source_offset": 42,
    }
    fields.update(overrides)
    return validate_audit(fields)


EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "producers" / "examples"


def example_bulletins(now: datetime) -> list[ThreatBulletin]:
    """Every bulletin of ``producers/examples/`` as its agency would publish it at ``now``
    (each file is named after its agency)."""
    registry = Registry.load(DEFAULT_AGENCIES)
    out: list[ThreatBulletin] = []
    for path in sorted(p for p in EXAMPLES_DIR.iterdir() if p.suffix in {".json", ".jsonl"}):
        agency = registry.get("-".join(path.name.split("-")[:2]))
        parsed = parse_input(path.read_bytes(), name=path.name)
        ready, _ = prepare_items(parsed.items, agency, now, digest=parsed.digest)
        out.extend(bulletin for _, bulletin in ready)
    return out
