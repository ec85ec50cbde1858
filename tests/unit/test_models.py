"""Model rules Avro cannot express; errors name the field and the rule."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from enlace.core.errors import ValidationError
from schemas.countries import ISO_3166_ALPHA2
from schemas.models import ThreatBulletin, validate_bulletin, validate_event
from schemas.vocab import Classification, Tlp
from tests.samples import FIXED_TIME, bulletin_fields, fixed_bulletin, sample_event


def problems(**overrides: Any) -> list[tuple[str, str]]:
    fields = bulletin_fields()
    fields.update(overrides)
    with pytest.raises(ValidationError) as caught:
        validate_bulletin(fields)
    return caught.value.problems


def fields_of(**overrides: Any) -> list[str]:
    return [path for path, _ in problems(**overrides)]


def test_sample_is_valid_and_frozen() -> None:
    bulletin = fixed_bulletin()
    assert isinstance(bulletin, ThreatBulletin)
    with pytest.raises(Exception, match="frozen"):
        bulletin.title = "x"  # type: ignore[misc]


def test_iso_country_list() -> None:
    assert len(ISO_3166_ALPHA2) == 249
    assert {"PA", "CR", "US", "CA", "BZ"} <= ISO_3166_ALPHA2
    assert "XK" not in ISO_3166_ALPHA2


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"bulletin_id": "not-a-uuid"}, "bulletin_id", "not a UUID"),
        ({"origin": "PA-SENAFRONT"}, "origin", "lowercase"),
        ({"origin_country": "pa"}, "origin_country", "uppercase"),
        ({"origin_country": "XX"}, "origin_country", "ISO 3166"),
        ({"origin_country": "CR"}, "origin_country", "origin agency's country"),
        ({"location": {"lat": 91.0, "lon": 0.0, "country": "PA"}}, "location.lat", "90"),
        ({"location": {"lat": 1.0, "lon": -181.0, "country": "PA"}}, "location.lon", "-180"),
        ({"location": {"lat": 1.0, "country": "PA"}}, "location", "together"),
        ({"valid_until": FIXED_TIME, "issued_at": FIXED_TIME}, "valid_until", "after issued_at"),
        ({"tearline_classification": "SECRET"}, "tearline_classification", "above"),
        ({"tlp": "RED", "releasable_to": []}, "releasable_to", "TLP:RED"),
        ({"releasable_to": ["CR", "CR"]}, "releasable_to", "twice"),
        ({"releasable_to": ["cr"]}, "releasable_to.0", ""),
        ({"title": "x" * 201}, "title", "1-200"),
        ({"title": "   "}, "title", "blank"),
        ({"title": "abc\u202edef"}, "title", "bidirectional"),
        ({"summary": "s" * 2001}, "summary", "1-2000"),
        ({"details": "d" * 20001}, "details", "1-20000"),
        ({"entities": [{"kind": "PERSON", "name": "n"}] * 101}, "entities", "at most 100"),
        ({"indicators": [{"type": "URL", "value": "v"}] * 501}, "indicators", "at most 500"),
        ({"issued_at": datetime(2026, 1, 1)}, "issued_at", "timezone-aware"),  # noqa: DTZ001 - the rule under test
        ({"language": "spanish!"}, "language", "BCP 47"),
        ({"caveats": ["ORCON", "ORCON"]}, "caveats", "twice"),
    ],
)
def test_rules_name_field_and_rule(overrides: dict[str, Any], field: str, rule: str) -> None:
    found = problems(**overrides)
    assert any(path == field and rule in message for path, message in found), found


def test_mixed_script_agency_id_is_refused() -> None:
    # U+0430 CYRILLIC SMALL LETTER A looks like the Latin letter.
    assert fields_of(origin="p\u0430-senafront") == ["origin"]
    assert "confusable" in problems(releasable_to=["cr-ms\u0440"])[0][1]


def test_text_is_nfc_normalized() -> None:
    decomposed = "Informaci\u006f\u0301n"
    bulletin = validate_bulletin({**bulletin_fields(), "title": decomposed})
    assert bulletin.title == "Información"


def test_times_are_utc_millis() -> None:
    from zoneinfo import ZoneInfo

    issued = datetime(2026, 5, 1, 8, 0, 0, 123456, tzinfo=ZoneInfo("America/Panama"))
    bulletin = validate_bulletin(
        {**bulletin_fields(), "issued_at": issued, "valid_until": issued + timedelta(days=1)}
    )
    assert bulletin.issued_at.utcoffset() == timedelta(0)
    assert bulletin.issued_at.microsecond == 123000
    assert bulletin.issued_at == issued.replace(microsecond=123000)


def test_json_friendly_input() -> None:
    bulletin = validate_bulletin(
        {**bulletin_fields(), "issued_at": "2026-03-14T15:09:26Z", "valid_until": None}
    )
    assert bulletin.tlp is Tlp.AMBER
    assert bulletin.classification is Classification.CONFIDENTIAL


def test_tlp_red_with_recipients_is_valid() -> None:
    bulletin = validate_bulletin({**bulletin_fields(), "tlp": "RED", "releasable_to": ["cr-msp"]})
    assert bulletin.releasable_to == ("cr-msp",)


def test_trust_event_rules() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_event({**sample_event().model_dump(), "subject": "cr-msp"})
    assert caught.value.problems[0][0] == "subject"
    with pytest.raises(ValidationError) as caught:
        validate_event({**sample_event().model_dump(), "bulletin_id": None})
    assert caught.value.problems[0][0] == "bulletin_id"
    incident = sample_event(
        "INCIDENT_LEAK", reporter="pa-senafront", subject="cr-msp", bulletin_id=None
    )
    assert incident.bulletin_id is None
