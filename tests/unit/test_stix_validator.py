"""Every sample bulletin's STIX bundle, full and tearline, passes the OASIS STIX 2.1 validator
(``stix2-validator``) at its strictest useful setting, and ``stix2.parse``.

The bundles are built as plain JSON (``consumers.stix_mapping``), so this is what holds them
to the standard. Options: ``strict`` (every SHOULD is an error), ``interop`` (the OASIS
interoperability profile: creators, ``region`` on locations...) and ``enforce_refs`` (every
reference resolves inside the bundle). Not ``strict_types`` (crypto-wallet indicators use
OpenCTI's custom ``cryptocurrency-wallet`` observable: STIX has none) nor
``strict_properties`` (it forbids the two ``x_opencti_`` properties OpenCTI needs).

What remains, on purpose, each matched by its message below (anything else fails the test):

- ``103`` "not a valid UUIDv4 ID": ids are UUIDv5 of the bulletin id (and of the agency or
  country for shared objects), so a redelivered bulletin yields the same objects and MISP or
  OpenCTI dedupe them. STIX 2.1 (2.9) allows any RFC 4122 UUID; v4 is only a SHOULD.
- ``401`` custom property not in an extension: ``x_opencti_reliability`` (report) and
  ``x_opencti_location_type`` (locations). OpenCTI reads these top-level properties before
  its own extension; without the type, it imports the bulletin's place as a Country.
- interop, marking definitions without ``modified``/``created_by_ref``: they are the official
  TLP 2.0 objects, which have neither (a marking definition is not versioned); changing them
  would give the official ids a second content.
- interop, country locations without ``created_by_ref``: a country is shared by every
  bundle that names it, with one fixed content, so it cannot take each bulletin's originator;
  an exchange-wide creator identity would add an object to every bundle for no reader we
  know of (OpenCTI does not need it).

Custom properties are exactly ``stix_mapping.CUSTOM_PROPERTIES``; ``stix2.parse`` accepts the
bundle with them allowed, and without them (``bulletin_bundle``) with none allowed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import stix2
from stix2validator import ValidationOptions, validate_parsed_json
from stix2validator.v21.enums import LANG_CODES, REGION_OV

from consumers.records import Release
from consumers.stix_mapping import CUSTOM_PROPERTIES, bulletin_bundle, bundle_json
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES
from schemas.countries import ISO_3166_ALPHA2
from schemas.models import ThreatBulletin
from schemas.projection import tearline
from schemas.stix_vocab import COUNTRY_REGION, STIX_LANG_CODES, TLP2_MARKING_IDS, stix_lang
from tests.samples import (
    EXAMPLES_DIR,
    example_bulletins,
    fixed_bulletin,
    routed_bulletin,
    sample_bulletin,
)

OPTIONS = ValidationOptions(version="2.1", strict=True, interop=True, enforce_refs=True)
_ID = r"[a-z-]+--[0-9a-f-]{36}"
_MARKING = "|".join(re.escape(i) for i in TLP2_MARKING_IDS.values())
# (why, pattern of "<object id>: <message>"): the documented remainder, see the docstring.
_CUSTOM = "x_opencti_(reliability|location_type)"
_NO_CREATOR = "('created_by_ref' is a required property|created_by_ref is not present)"
ACCEPTED = [
    ("uuid5 ids", rf"{_ID}: \{{103\}} Given ID value {_ID} is not a valid UUIDv4 ID\."),
    ("OpenCTI properties", rf"{_ID}: \{{401\}} Custom property '{_CUSTOM}' should be"),
    ("official TLP", rf"({_MARKING}): ('modified' is a required property|{_NO_CREATOR})"),
    ("shared countries", rf"(?P<id>location--[0-9a-f-]{{36}}): {_NO_CREATOR}"),
]
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
        ("latam-spanish", sample_bulletin(language="es-419")),
        ("haitian", sample_bulletin(language="ht")),
        ("recipients", sample_bulletin(releasable_to=["cr-msp", "CA"])),
    ]
    samples += [(f"example-{b.origin}-{n}", b) for n, b in enumerate(example_bulletins(NOW))]
    return samples


SAMPLES = _samples()


def _problems(bundle: dict[str, Any]) -> list[str]:
    """The validator's errors (``strict``: every warning is one) that are not accepted."""
    result = validate_parsed_json(bundle, OPTIONS)
    assert not result.warnings, "strict mode reports every problem as an error"
    assert result.is_valid or result.errors, "invalid with no error listed"
    countries = {
        o["id"] for o in bundle["objects"] if o["type"] == "location" and "latitude" not in o
    }
    left: list[str] = []
    for error in map(str, result.errors or []):
        match = next((m for _, p in ACCEPTED if (m := re.match(p, error))), None)
        if match is None or (match.groupdict().get("id") not in (None, *countries)):
            left.append(error)
    return left


def test_the_samples_include_every_agency_and_the_examples() -> None:
    names = {name for name, _ in SAMPLES}
    assert {f"sample-{a.id}" for a in REGISTRY} <= names
    assert sum(name.startswith("example-") for name in names) >= len(
        list(EXAMPLES_DIR.glob("*.json"))
    )


@pytest.mark.parametrize("release", list(Release))
@pytest.mark.parametrize(("name", "bulletin"), SAMPLES, ids=[name for name, _ in SAMPLES])
def test_bundle_passes_the_oasis_validator(
    name: str, bulletin: ThreatBulletin, release: Release
) -> None:
    copy = bulletin if release is Release.FULL else tearline(bulletin)
    names = {a.id: a.name for a in REGISTRY}
    bundle = bundle_json(copy, release, agency_names=names)
    assert _problems(bundle) == [], name
    for obj in bundle["objects"]:
        custom = {k for k in obj if k.startswith("x_")}
        assert custom <= CUSTOM_PROPERTIES, (name, obj["id"], custom)
        if obj["type"] == "location":
            assert obj["region"] == COUNTRY_REGION[obj["country"]]
    stix2.parse(bundle, allow_custom=True)
    bulletin_bundle(copy, release, agency_names=names)  # the core alone: no custom property


def test_the_validator_catches_a_broken_bundle() -> None:
    """The check above is not vacuous: the validator does look inside the bundle."""
    bundle = bundle_json(sample_bulletin(), Release.FULL)
    report = next(o for o in bundle["objects"] if o["type"] == "report")
    report["created"] = "yesterday"
    assert _problems(bundle)


def test_the_accepted_errors_are_only_where_documented() -> None:
    """A creator missing on the bulletin's own objects is not excused by the shared rule."""
    bundle = bundle_json(sample_bulletin(), Release.FULL)
    report = next(o for o in bundle["objects"] if o["type"] == "report")
    del report["created_by_ref"]
    assert any("created_by_ref" in e for e in _problems(bundle))


def test_lang_is_always_on_the_validators_list() -> None:
    assert set(LANG_CODES) == STIX_LANG_CODES  # the copy in schemas.stix_vocab is current
    assert stix_lang("es-419") == "es"
    assert stix_lang("ES-pa") == "es-PA"
    assert stix_lang("fr-HT") == "fr"
    assert stix_lang("ht") is None
    bundle = bundle_json(sample_bulletin(language="es-419"), Release.FULL)
    report = next(o for o in bundle["objects"] if o["type"] == "report")
    assert report["lang"] == "es"
    assert "language:es-419" in report["labels"]  # the exact tag, for the way back


def test_every_country_has_a_stix_region() -> None:
    assert set(COUNTRY_REGION) == ISO_3166_ALPHA2
    assert set(COUNTRY_REGION.values()) <= set(REGION_OV)
    assert [COUNTRY_REGION[c] for c in ("PA", "DO", "CO", "US", "ES")] == [
        "central-america",
        "caribbean",
        "south-america",
        "northern-america",
        "europe",
    ]
