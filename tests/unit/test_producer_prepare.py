"""prepare(): defaults, origin refusal, validation problems, derived ids (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enlace.core.errors import ValidationError
from enlace.core.registry import Agency
from producers.inputs import Item
from producers.prepare import derive_id, prepare, prepare_items
from tests.samples import bulletin_fields, sample_bulletin

PANAMA = Agency(id="pa-senafront", name="Servicio Nacional de Fronteras", country="PA")
NOW = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)


def bare(**overrides: Any) -> dict[str, Any]:
    """A bulletin as an agency's system would send it: no id, time, origin or country."""
    fields = bulletin_fields("pa-senafront")
    for name in ("bulletin_id", "issued_at", "valid_until", "origin", "origin_country"):
        del fields[name]
    fields.update(overrides)
    return fields


def test_fills_id_time_origin_and_country() -> None:
    bulletin = prepare(bare(), PANAMA, NOW)
    assert uuid.UUID(bulletin.bulletin_id).version == 4
    assert bulletin.issued_at == NOW
    assert bulletin.origin == "pa-senafront"
    assert bulletin.origin_country == "PA"


def test_keeps_given_id_and_time() -> None:
    given_id = str(uuid.uuid4())
    issued = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    bulletin = prepare(bare(bulletin_id=given_id, issued_at=issued.isoformat()), PANAMA, NOW)
    assert bulletin.bulletin_id == given_id
    assert bulletin.issued_at == issued


def test_null_id_and_time_are_treated_as_absent() -> None:
    default_id = str(uuid.uuid4())
    bulletin = prepare(bare(bulletin_id=None, issued_at=None), PANAMA, NOW, bulletin_id=default_id)
    assert bulletin.issued_at == NOW
    assert bulletin.bulletin_id == default_id


def test_default_id_argument_is_used() -> None:
    derived = derive_id("pa-senafront", "ab" * 32, 3)
    assert prepare(bare(), PANAMA, NOW, bulletin_id=derived).bulletin_id == derived


def test_refuses_other_origin_in_mapping() -> None:
    with pytest.raises(ValidationError) as info:
        prepare(bare(origin="cr-msp"), PANAMA, NOW)
    assert info.value.problems[0][0] == "origin"
    assert "pa-senafront" in info.value.problems[0][1]


def test_refuses_other_origin_in_model() -> None:
    with pytest.raises(ValidationError, match="publisher's agency"):
        prepare(sample_bulletin("cr-msp"), PANAMA, NOW)


def test_model_of_own_agency_passes_through() -> None:
    bulletin = sample_bulletin("pa-senafront")
    assert prepare(bulletin, PANAMA, NOW) is bulletin


def test_problems_name_field_and_rule() -> None:
    with pytest.raises(ValidationError) as info:
        prepare(bare(location={"lat": 95.0, "lon": 0.0, "country": "PA"}), PANAMA, NOW)
    fields = [field for field, _ in info.value.problems]
    assert fields == ["location.lat"]
    assert "90" in info.value.problems[0][1]


def test_not_an_object() -> None:
    with pytest.raises(ValidationError, match="JSON object"):
        prepare(["not", "a", "bulletin"], PANAMA, NOW)


def test_wrong_country_for_origin_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        prepare(bare(origin_country="CR"), PANAMA, NOW)
    assert info.value.problems[0][0] == "origin_country"


@given(st.text(min_size=1, max_size=64), st.integers(min_value=1, max_value=10**6))
def test_derived_ids_are_stable_uuids(digest: str, position: int) -> None:
    first = derive_id("pa-senafront", digest, position)
    assert first == derive_id("pa-senafront", digest, position)
    assert str(uuid.UUID(first)) == first
    assert first != derive_id("pa-senafront", digest, position + 1)
    assert first != derive_id("cr-msp", digest, position)


def test_prepare_items_reports_line_and_keeps_going() -> None:
    items = [
        Item(1, 1, bare()),
        Item(2, 2, bare(title="")),
        Item(3, 3, bare(origin="cr-msp")),
        Item(4, 4, bare()),
    ]
    ready, problems = prepare_items(items, PANAMA, NOW, digest="d" * 64)
    assert [item.line for item, _ in ready] == [1, 4]
    assert [(p.line, p.field) for p in problems] == [(2, "title"), (3, "origin")]
    assert ready[0][1].bulletin_id == derive_id("pa-senafront", "d" * 64, 1)


def test_prepare_items_refuses_duplicate_ids() -> None:
    given_id = str(uuid.uuid4())
    items = [Item(1, 1, bare(bulletin_id=given_id)), Item(2, 5, bare(bulletin_id=given_id))]
    ready, problems = prepare_items(items, PANAMA, NOW)
    assert len(ready) == 1
    assert problems[0].line == 5
    assert "first on line 1" in problems[0].rule


def test_prepare_items_without_digest_gives_random_ids() -> None:
    items = [Item(1, 1, bare())]
    first, _ = prepare_items(items, PANAMA, NOW)
    second, _ = prepare_items(items, PANAMA, NOW)
    assert first[0][1].bulletin_id != second[0][1].bulletin_id
