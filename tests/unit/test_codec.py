"""The wire codec: single-object framing, round trips, determinism, typed decode errors."""

from __future__ import annotations

import io

import pytest
from fastavro import schemaless_reader

from enlace.core.errors import (
    BadMagic,
    CorruptRecord,
    RecordTooLarge,
    TruncatedRecord,
    UnknownFingerprint,
    ValidationError,
)
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES
from schemas.catalog import Catalog
from schemas.codec import (
    FINGERPRINT_SIZE,
    HEADER_SIZE,
    MAGIC,
    decode,
    decode_audit,
    decode_bulletin,
    decode_trust_event,
    encode,
    encode_audit,
    encode_bulletin,
    encode_trust_event,
    fingerprint,
)
from tests.samples import fixed_bulletin, sample_audit, sample_bulletin, sample_event

SEED_AGENCIES = Registry.load(DEFAULT_AGENCIES).ids  # the seed registry's 11 agencies


def test_framing_constants() -> None:
    assert MAGIC == b"\xc3\x01"
    assert FINGERPRINT_SIZE == 8
    assert HEADER_SIZE == 10


@pytest.mark.parametrize("origin", SEED_AGENCIES)
def test_bulletin_from_every_agency_round_trips(origin: str) -> None:
    bulletin = sample_bulletin(origin)
    assert decode_bulletin(encode_bulletin(bulletin)) == bulletin


def test_minimal_bulletin_round_trips() -> None:
    bulletin = sample_bulletin(
        details=None,
        location=None,
        route=None,
        entities=[],
        seizure=None,
        indicators=[],
        references=[],
        caveats=[],
        valid_until=None,
    )
    assert decode_bulletin(encode_bulletin(bulletin)) == bulletin


def test_trust_event_and_audit_round_trip() -> None:
    event = sample_event()
    record = sample_audit()
    assert decode_trust_event(encode_trust_event(event)) == event
    assert decode_audit(encode_audit(record)) == record


def test_encoding_is_deterministic() -> None:
    bulletin = fixed_bulletin()
    assert encode_bulletin(bulletin) == encode_bulletin(bulletin)
    assert encode_bulletin(bulletin) == encode_bulletin(decode_bulletin(encode_bulletin(bulletin)))


def test_bytes_are_standard_single_object_encoding() -> None:
    data = encode_bulletin(fixed_bulletin())
    entry = Catalog.default().latest("ThreatBulletin")
    assert data[:2] == MAGIC
    assert data[2:10] == entry.fingerprint == fingerprint(data)
    # fastavro's own reader decodes the body after the 10-byte header.
    datum = schemaless_reader(io.BytesIO(data[HEADER_SIZE:]), entry.parsed)
    assert isinstance(datum, dict)
    assert str(datum["bulletin_id"]) == fixed_bulletin().bulletin_id


def test_bad_magic() -> None:
    data = encode_bulletin(fixed_bulletin())
    with pytest.raises(BadMagic):
        decode_bulletin(b"\x00\x01" + data[2:])
    with pytest.raises(BadMagic):
        decode_bulletin(b"")


def test_unknown_fingerprint() -> None:
    data = encode_bulletin(fixed_bulletin())
    with pytest.raises(UnknownFingerprint):
        decode_bulletin(data[:2] + b"\xff" * 8 + data[10:])


def test_wrong_record_type_is_refused() -> None:
    with pytest.raises(UnknownFingerprint, match="TrustEvent"):
        decode_bulletin(encode_trust_event(sample_event()))


def test_truncated_header_and_body() -> None:
    data = encode_bulletin(fixed_bulletin())
    with pytest.raises(TruncatedRecord):
        decode_bulletin(data[:6])
    with pytest.raises(TruncatedRecord):
        decode_bulletin(data[:-5])


def test_trailing_bytes_are_corrupt() -> None:
    data = encode_bulletin(fixed_bulletin())
    with pytest.raises(CorruptRecord, match="trailing"):
        decode_bulletin(data + b"\x00")


def test_oversize() -> None:
    data = encode_bulletin(fixed_bulletin())
    with pytest.raises(RecordTooLarge):
        decode_bulletin(data, max_bytes=len(data) - 1)
    assert decode_bulletin(data, max_bytes=len(data)) == fixed_bulletin()


def test_decodes_but_breaks_model_rules() -> None:
    datum = fixed_bulletin().to_avro()
    datum["location"]["lat"] = 123.0
    data = encode(datum, "ThreatBulletin")
    assert decode(data, "ThreatBulletin")["location"]["lat"] == 123.0
    with pytest.raises(ValidationError) as caught:
        decode_bulletin(data)
    assert [path for path, _ in caught.value.problems] == ["location.lat"]


def test_encode_refuses_a_datum_that_does_not_fit() -> None:
    datum = fixed_bulletin().to_avro()
    del datum["title"]
    with pytest.raises(ValidationError):
        encode(datum, "ThreatBulletin")
