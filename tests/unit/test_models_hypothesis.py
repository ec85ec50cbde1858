"""Property tests: any valid bulletin survives model → bytes → model, deterministically,
and its tearline does too."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES
from schemas.codec import decode_bulletin, encode_bulletin
from schemas.countries import ISO_3166_ALPHA2
from schemas.models import ThreatBulletin, validate_bulletin
from schemas.projection import tearline
from schemas.vocab import (
    Category,
    Caveat,
    Classification,
    EntityKind,
    IndicatorType,
    InfoCredibility,
    ReferenceKind,
    RouteMode,
    Severity,
    SourceReliability,
    SourceType,
    Tlp,
)
from tests.samples import bulletin_fields

AGENCIES = Registry.load(DEFAULT_AGENCIES).ids  # the seed registry's 11 agencies
COUNTRIES = sorted(ISO_3166_ALPHA2)
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"


def text(max_size: int) -> st.SearchStrategy[str]:
    chars = st.characters(exclude_categories=("Cc", "Cs"), exclude_characters=_BIDI)
    return st.text(chars, min_size=1, max_size=max_size).filter(lambda s: s.strip() != "")


uuids = st.uuids().map(str)
countries = st.sampled_from(COUNTRIES)


@st.composite
def bulletins(draw: st.DrawFn) -> ThreatBulletin:
    origin = draw(st.sampled_from(AGENCIES))
    issued = draw(
        st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))  # noqa: DTZ001 - hypothesis bounds are naive by API
    )
    ranks = sorted(
        draw(st.lists(st.sampled_from(list(Classification)), min_size=2, max_size=2)),
        key=lambda c: c.rank,
    )
    tlp = draw(st.sampled_from(list(Tlp)))
    recipients = draw(
        st.lists(
            st.sampled_from(AGENCIES) | countries,
            unique=True,
            min_size=1 if tlp is Tlp.RED else 0,
            max_size=5,
        )
    )
    has_coords = draw(st.booleans())
    fields: dict[str, Any] = {
        "bulletin_id": str(draw(st.uuids())),
        "origin": origin,
        "origin_country": origin[:2].upper(),
        "issued_at": issued,
        "valid_until": draw(
            st.none() | st.integers(1, 10**10).map(lambda ms: issued + timedelta(milliseconds=ms))
        ),
        "category": draw(st.sampled_from(list(Category))),
        "severity": draw(st.sampled_from(list(Severity))),
        "classification": ranks[1],
        "tlp": tlp,
        "releasable_to": recipients,
        "caveats": draw(st.lists(st.sampled_from(list(Caveat)), unique=True, max_size=3)),
        "tearline_classification": ranks[0],
        "title": draw(text(200)),
        "summary": draw(text(300)),
        "details": draw(st.none() | text(500)),
        "source_reliability": draw(st.sampled_from(list(SourceReliability))),
        "info_credibility": draw(st.sampled_from(list(InfoCredibility))),
        "source_type": draw(st.sampled_from(list(SourceType))),
        "location": draw(
            st.none()
            | st.fixed_dictionaries(
                {
                    "lat": st.floats(-90, 90) if has_coords else st.none(),
                    "lon": st.floats(-180, 180) if has_coords else st.none(),
                    "country": countries,
                    "place": st.none() | text(50),
                }
            )
        ),
        "route": draw(
            st.none()
            | st.fixed_dictionaries(
                {
                    "mode": st.sampled_from(list(RouteMode)),
                    "from_country": st.none() | countries,
                    "to_country": st.none() | countries,
                    "via": st.lists(countries, max_size=4),
                }
            )
        ),
        "entities": draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "kind": st.sampled_from(list(EntityKind)),
                        "name": text(60),
                        "identifiers": st.lists(
                            st.fixed_dictionaries(
                                {
                                    "scheme": st.sampled_from(["imo", "passport", "msisdn"]),
                                    "value": text(40),
                                }
                            ),
                            max_size=2,
                        ),
                        "country": st.none() | countries,
                        "role": st.none() | text(30),
                    }
                ),
                max_size=3,
            )
        ),
        "seizure": draw(
            st.none()
            | st.fixed_dictionaries(
                {"commodity": text(30), "quantity": st.floats(0, 1e12), "unit": text(10)}
            )
        ),
        "indicators": draw(
            st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(list(IndicatorType)), "value": text(100)}
                ),
                max_size=3,
            )
        ),
        "references": draw(
            st.lists(
                st.fixed_dictionaries(
                    {"bulletin_id": uuids, "relation": st.sampled_from(list(ReferenceKind))}
                ),
                max_size=2,
            )
        ),
        "language": draw(st.sampled_from(["es", "en", "es-PA", "fr-CA", "pt"])),
    }
    return validate_bulletin(fields)


@settings(max_examples=150, deadline=None)
@given(bulletins())
def test_round_trip(bulletin: ThreatBulletin) -> None:
    data = encode_bulletin(bulletin)
    decoded = decode_bulletin(data)
    assert decoded == bulletin
    assert encode_bulletin(decoded) == data


@settings(max_examples=100, deadline=None)
@given(bulletins())
def test_tearline_round_trip_and_determinism(bulletin: ThreatBulletin) -> None:
    cut = tearline(bulletin)
    data = encode_bulletin(cut)
    assert decode_bulletin(data) == cut
    assert encode_bulletin(tearline(decode_bulletin(encode_bulletin(bulletin)))) == data
    assert cut.classification is bulletin.tearline_classification
    assert len(data) <= len(encode_bulletin(bulletin))


def test_uuid_spelling_is_canonical() -> None:
    value = uuid.uuid4()
    upper = validate_bulletin({**bulletin_fields(), "bulletin_id": str(value).upper()})
    assert upper.bulletin_id == str(value)
