"""The tearline projection keeps what is releasable and nothing else."""

from __future__ import annotations

from schemas.codec import decode_bulletin, encode_bulletin
from schemas.projection import is_tearline, tearline
from schemas.vocab import Classification
from tests.samples import fixed_bulletin


def test_keeps_and_drops() -> None:
    full = fixed_bulletin()
    cut = tearline(full)
    assert (cut.title, cut.summary, cut.category, cut.severity) == (
        full.title,
        full.summary,
        full.category,
        full.severity,
    )
    assert cut.bulletin_id == full.bulletin_id
    assert cut.location is not None
    assert full.location is not None
    assert cut.location.country == full.location.country
    assert (cut.location.lat, cut.location.lon, cut.location.place) == (None, None, None)
    assert cut.route == full.route
    assert cut.details is None
    assert cut.entities == ()
    assert cut.indicators == ()
    assert cut.references == ()
    assert cut.seizure is None


def test_classified_at_tearline_level() -> None:
    full = fixed_bulletin()
    assert full.classification is Classification.CONFIDENTIAL
    assert tearline(full).classification is Classification.RESTRICTED


def test_deterministic_and_idempotent() -> None:
    full = fixed_bulletin()
    assert encode_bulletin(tearline(full)) == encode_bulletin(tearline(fixed_bulletin()))
    assert tearline(tearline(full)) == tearline(full)
    assert is_tearline(tearline(full))
    assert not is_tearline(full)
    assert decode_bulletin(encode_bulletin(tearline(full))) == tearline(full)
