"""The synthetic generator: deterministic per seed, valid, varied."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from enlace.cli import app
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES
from producers.synthetic import BulletinGenerator, to_json_line
from schemas.codec import decode_bulletin, encode_bulletin
from schemas.models import validate_bulletin
from schemas.vocab import Category, Classification, Tlp

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(DEFAULT_AGENCIES)


def test_same_seed_same_bulletins(registry: Registry) -> None:
    first = BulletinGenerator(42, registry).batch(50, NOW)
    second = BulletinGenerator(42, registry).batch(50, NOW)
    assert first == second


def test_other_seed_other_bulletins(registry: Registry) -> None:
    first = BulletinGenerator(1, registry).batch(20, NOW)
    second = BulletinGenerator(2, registry).batch(20, NOW)
    assert {b.bulletin_id for b in first}.isdisjoint(b.bulletin_id for b in second)


def test_variety_over_a_thousand(registry: Registry) -> None:
    bulletins = BulletinGenerator(7, registry).batch(1000, NOW)
    categories = Counter(b.category for b in bulletins)
    expected = set(Category) - {Category.TERRORISM, Category.OTHER}
    assert expected <= set(categories)
    assert {b.language for b in bulletins} == {"en", "es"}
    assert {b.tlp for b in bulletins} == set(Tlp)
    assert {b.classification for b in bulletins} == set(Classification)
    assert {b.tearline_classification for b in bulletins} == set(Classification)
    assert {b.origin for b in bulletins} == set(registry.ids)
    assert any(b.references for b in bulletins)
    assert any(b.indicators for b in bulletins)
    assert any(b.seizure for b in bulletins)
    assert any(b.route for b in bulletins)
    assert len({b.bulletin_id for b in bulletins}) == 1000


def test_bulletins_are_valid_and_round_trip(registry: Registry) -> None:
    for bulletin in BulletinGenerator(3, registry).batch(200, NOW):
        assert decode_bulletin(encode_bulletin(bulletin)) == bulletin
        assert validate_bulletin(bulletin.model_dump(mode="json")) == bulletin
        assert abs((bulletin.issued_at - NOW).total_seconds()) <= 300
        assert bulletin.tearline_classification.rank <= bulletin.classification.rank


def test_agency_filter_and_origin(registry: Registry) -> None:
    gen = BulletinGenerator(5, registry, agencies=["pa-senafront", "cr-msp"])
    assert {b.origin for b in gen.batch(100, NOW)} == {"pa-senafront", "cr-msp"}
    assert gen.next(NOW, origin="cr-msp").origin == "cr-msp"


def test_references_point_to_the_same_origins_earlier_bulletins(registry: Registry) -> None:
    gen = BulletinGenerator(11, registry, agencies=["pa-senafront"])
    seen: set[str] = set()
    for bulletin in gen.batch(300, NOW):
        assert all(ref.bulletin_id in seen for ref in bulletin.references)
        seen.add(bulletin.bulletin_id)


def test_json_line_is_one_valid_line(registry: Registry) -> None:
    bulletin = BulletinGenerator(9, registry).next(NOW)
    line = to_json_line(bulletin)
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert validate_bulletin(json.loads(line)) == bulletin


def test_synth_command_writes_deterministic_valid_jsonl() -> None:
    runner = CliRunner()
    args = ["publisher", "synth", "--count", "5", "--seed", "3", "--agency", "hn-fusina"]
    first = runner.invoke(app, args)
    second = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert len(lines) == 5
    bulletins = [validate_bulletin(json.loads(line)) for line in lines]
    again = [validate_bulletin(json.loads(line)) for line in second.stdout.splitlines()]
    assert [b.bulletin_id for b in bulletins] == [b.bulletin_id for b in again]
    assert [b.title for b in bulletins] == [b.title for b in again]
    assert {b.origin for b in bulletins} == {"hn-fusina"}
