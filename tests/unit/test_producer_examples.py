"""Every example in producers/examples validates as its agency's bulletin."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES
from producers.inputs import parse_input
from producers.prepare import prepare_items
from schemas.projection import tearline

EXAMPLES = Path(__file__).resolve().parents[2] / "producers" / "examples"
FILES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in {".json", ".jsonl"})
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_examples_cover_the_scenario() -> None:
    agencies = {path.name.split("-", 2)[0] + "-" + path.name.split("-", 2)[1] for path in FILES}
    assert len(agencies) >= 6
    assert any(path.suffix == ".jsonl" for path in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_validates(path: Path) -> None:
    registry = Registry.load(DEFAULT_AGENCIES)
    agency_id = "-".join(path.name.split("-")[:2])
    parsed = parse_input(path.read_bytes(), name=path.name)
    assert parsed.problems == ()
    ready, problems = prepare_items(
        parsed.items, registry.get(agency_id), NOW, digest=parsed.digest
    )
    assert problems == []
    assert len(ready) == len(parsed.items) >= 1
    for _, bulletin in ready:
        assert bulletin.origin == agency_id
        assert tearline(bulletin).details is None


def test_examples_in_both_languages() -> None:
    registry = Registry.load(DEFAULT_AGENCIES)
    languages = set()
    for path in FILES:
        parsed = parse_input(path.read_bytes(), name=path.name)
        agency = registry.get("-".join(path.name.split("-")[:2]))
        ready, _ = prepare_items(parsed.items, agency, NOW)
        languages |= {bulletin.language for _, bulletin in ready}
    assert languages == {"en", "es"}
