"""Every sample bulletin's STIX bundle, full and tearline, passes the OASIS STIX 2.1 validator
(``stix2-validator``) with no error, and ``stix2.parse`` with no custom property.

The bundles are built as plain JSON (``consumers.stix_mapping``), so this is what holds them
to the standard. Warnings that remain, on purpose (anything else fails the test):

- ``103`` "not a valid UUIDv4 ID": ids are UUIDv5 of the bulletin id (and of the agency or
  country for shared objects), so a redelivered bulletin yields the same objects and MISP or
  OpenCTI dedupe them. STIX 2.1 (2.9) allows any RFC 4122 UUID; v4 is only a SHOULD.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import stix2
from stix2validator import ValidationOptions, validate_parsed_json

from consumers.records import Release
from consumers.stix_mapping import bundle_json
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES
from producers.inputs import parse_input
from producers.prepare import prepare_items
from schemas.models import ThreatBulletin
from schemas.projection import tearline
from tests.samples import fixed_bulletin, routed_bulletin, sample_bulletin

ACCEPTED_WARNINGS = {"103"}
EXAMPLES = Path(__file__).resolve().parents[2] / "producers" / "examples"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
REGISTRY = Registry.load(DEFAULT_AGENCIES)
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
        ("OTHER", "anything"),
    )
]


def _examples() -> list[ThreatBulletin]:
    out: list[ThreatBulletin] = []
    for path in sorted(p for p in EXAMPLES.iterdir() if p.suffix in {".json", ".jsonl"}):
        agency = REGISTRY.get("-".join(path.name.split("-")[:2]))
        parsed = parse_input(path.read_bytes(), name=path.name)
        ready, _ = prepare_items(parsed.items, agency, NOW, digest=parsed.digest)
        out.extend(bulletin for _, bulletin in ready)
    return out


def _samples() -> list[tuple[str, ThreatBulletin]]:
    samples = [(f"sample-{a.id}", sample_bulletin(a.id)) for a in REGISTRY]
    samples += [
        ("fixed", fixed_bulletin()),
        ("routed", routed_bulletin("us-jiatfs")),
        ("cyber", sample_bulletin("cr-msp", category="CYBER", indicators=CYBER)),
        ("no-credibility", sample_bulletin(info_credibility="C6")),
        ("no-place", sample_bulletin(location=None, route=None)),
        ("clear", sample_bulletin(tlp="CLEAR")),
        ("red", sample_bulletin(tlp="RED", releasable_to=["cr-msp"])),
    ]
    samples += [(f"example-{b.origin}-{n}", b) for n, b in enumerate(_examples())]
    return samples


SAMPLES = _samples()


def _problems(bundle: dict[str, Any]) -> tuple[list[str], set[str]]:
    result = validate_parsed_json(bundle, ValidationOptions(version="2.1"))
    errors = [str(e) for e in result.errors or []]
    codes = {str(w).split("{", 1)[1].split("}", 1)[0] for w in result.warnings or []}
    assert result.is_valid or errors, "invalid with no error listed"
    return errors, codes


def test_the_samples_include_every_agency_and_the_examples() -> None:
    names = {name for name, _ in SAMPLES}
    assert {f"sample-{a.id}" for a in REGISTRY} <= names
    assert sum(name.startswith("example-") for name in names) >= len(list(EXAMPLES.glob("*.json")))


@pytest.mark.parametrize("release", list(Release))
@pytest.mark.parametrize(("name", "bulletin"), SAMPLES, ids=[name for name, _ in SAMPLES])
def test_bundle_passes_the_oasis_validator(
    name: str, bulletin: ThreatBulletin, release: Release
) -> None:
    copy = bulletin if release is Release.FULL else tearline(bulletin)
    bundle = bundle_json(copy, release, agency_names={a.id: a.name for a in REGISTRY})
    errors, warnings = _problems(bundle)
    assert errors == [], name
    assert warnings <= ACCEPTED_WARNINGS, (name, warnings)
    stix2.parse(bundle, allow_custom=False)


def test_the_validator_catches_a_broken_bundle() -> None:
    """The check above is not vacuous: the validator does look inside the bundle."""
    bundle = bundle_json(sample_bulletin(), Release.FULL)
    report = next(o for o in bundle["objects"] if o["type"] == "report")
    report["created"] = "yesterday"
    errors, _ = _problems(bundle)
    assert errors
