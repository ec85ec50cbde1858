"""The fast sealing path writes exactly what the generic path wrote: the compiled Avro writer
against fastavro, the tearline datum against ``tearline()``, and a whole sealed record (its
envelope bytes and, opened by partners, both bodies) against the fastavro encodings, for
arbitrary valid bulletins. Only the random body keys and nonces differ between two seals."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enlace.core.errors import ValidationError
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES
from producers.publisher import Publisher
from producers.settings import PublisherSettings
from schemas.avro_writer import UnsupportedSchema, compile_writer, writer_for
from schemas.bulletin import BulletinEnvelope, Location, Route, ThreatBulletin
from schemas.catalog import Catalog
from schemas.codec import (
    AUDIT,
    BULLETIN,
    HEADER_SIZE,
    MAGIC,
    TRUST_EVENT,
    decode,
    encode,
    encode_bulletin,
)
from schemas.key_directory import KeyDirectory
from schemas.projection import tearline
from schemas.sealed import (
    SEALED_BULLETIN,
    Sealer,
    envelope_bytes,
    open_release,
    recipients_of,
    release_for,
    tearline_datum,
    view_sealed,
)
from schemas.sealing import FULL, TEARLINE, BoxCache
from schemas.signing import AgencyKey
from tests.samples import sample_audit, sample_bulletin, sample_event
from tests.unit.test_models_hypothesis import bulletins

AGENCIES = Registry.load(DEFAULT_AGENCIES).ids
SINCE = datetime(1999, 1, 1, tzinfo=UTC)  # the generated bulletins are issued from 2000 on
KEYS = {a: AgencyKey.generate(a, valid_from=SINCE) for a in AGENCIES}
DIRECTORY = KeyDirectory.from_keys(KEYS.values())
NOW = datetime.now(UTC)
BOXES = BoxCache()
SEALERS = {
    origin: Sealer(KEYS[origin], recipients_of(DIRECTORY, AGENCIES, NOW), boxes=BOXES)
    for origin in AGENCIES
}
BODY = Catalog.default().get(BULLETIN, ThreatBulletin.avro_version)
WRITE_BODY = writer_for(BODY.parsed)


def fastavro_body(datum: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, BODY.parsed, datum, strict=True, disable_tuple_notation=True)
    return out.getvalue()


@given(bulletins())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_the_compiled_writer_writes_what_fastavro_writes(bulletin: ThreatBulletin) -> None:
    assert WRITE_BODY(bulletin.model_dump()) == fastavro_body(bulletin.to_avro())
    assert BODY.fingerprint + WRITE_BODY(bulletin.model_dump()) == encode_bulletin(bulletin)[2:]


@given(bulletins())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_the_tearline_datum_is_the_dump_of_the_tearline(bulletin: ThreatBulletin) -> None:
    projected = tearline(bulletin)
    datum = tearline_datum(bulletin.model_dump())
    assert datum == projected.model_dump()
    assert WRITE_BODY(datum) == encode_bulletin(projected)[HEADER_SIZE:]


def test_the_tearline_datum_decides_on_every_field() -> None:
    """A field added to the model must be added (kept or blanked) here too: until it is,
    the datum lacks it, and a writer that knows the field refuses the datum."""
    datum = tearline_datum(sample_bulletin().model_dump())
    assert set(datum) == set(ThreatBulletin.model_fields)
    assert set(datum["location"]) == set(Location.model_fields)
    assert set(datum["route"]) == set(Route.model_fields)


@given(bulletins(), st.sampled_from(AGENCIES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_sealed_record_carries_the_bytes_the_generic_path_wrote(
    bulletin: ThreatBulletin, partner: str
) -> None:
    if partner == bulletin.origin:
        return
    sealed = SEALERS[bulletin.origin].seal(bulletin)
    view = view_sealed(sealed.value)
    generic = bulletin.to_avro()
    assert view.envelope_bytes == envelope_bytes(
        {name: generic[name] for name in BulletinEnvelope.model_fields}
    )
    # The whole record is fastavro's encoding of what it decodes to.
    assert encode(decode(sealed.value, SEALED_BULLETIN), SEALED_BULLETIN) == sealed.value
    assert sorted(view.wraps) == sorted(a for a in AGENCIES if a != bulletin.origin)
    for level, expected in ((FULL, encode_bulletin(bulletin)), (TEARLINE, None)):
        release = release_for(view, partner, level)
        assert release is not None
        opened = open_release(
            release, sealed.headers, directory=DIRECTORY, own=KEYS[partner], boxes=BOXES
        )
        want = expected if expected is not None else encode_bulletin(tearline(bulletin))
        assert opened.body == want
        assert opened.bulletin == (bulletin if level == FULL else tearline(bulletin))


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic's, dumping the unvalidated model
def test_a_bulletin_that_does_not_fit_its_schema_is_refused_not_written() -> None:
    bad = ThreatBulletin.model_construct(**{**dict(sample_bulletin()), "title": 42})
    with pytest.raises(ValidationError, match="does not fit"):
        SEALERS[bad.origin].seal(bad)


@pytest.mark.parametrize(
    ("name", "record"),
    [(TRUST_EVENT, sample_event()), (AUDIT, sample_audit()), (BULLETIN, sample_bulletin())],
)
def test_the_compiled_writer_matches_fastavro_on_the_other_records(name: str, record: Any) -> None:
    entry = Catalog.default().get(name, type(record).avro_version)
    try:
        write = compile_writer(entry.parsed)
    except UnsupportedSchema:
        pytest.skip(f"{name} needs fastavro")
    assert MAGIC + entry.fingerprint + write(record.model_dump()) == encode(
        record.to_avro(), name, writer=entry.fingerprint
    )


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "map", "values": "string"},
        ["null", "string", "long"],
        {"type": "long", "logicalType": "timestamp-micros"},
        {"type": "record", "name": "R", "fields": [{"name": "u", "type": "Unknown"}]},
    ],
)
def test_what_it_does_not_compile_is_refused_at_compile_time(schema: Any) -> None:
    with pytest.raises(UnsupportedSchema):
        compile_writer(schema)


@given(st.integers(-(2**63), 2**63 - 1), st.none() | st.text(max_size=40))
def test_longs_strings_and_unions_are_fastavros(number: int, text: str | None) -> None:
    raw = {
        "type": "record",
        "name": "T",
        "fields": [
            {"name": "n", "type": "long"},
            {"name": "s", "type": [{"type": "string"}, "null"]},
            {"name": "a", "type": {"type": "array", "items": "long"}},
        ],
    }
    parsed = parse_schema(raw)
    datum = {"n": number, "s": text, "a": [number, 0, -1]}
    out = io.BytesIO()
    schemaless_writer(out, parsed, datum, strict=True)
    assert compile_writer(parsed)(datum) == out.getvalue()


def test_the_publisher_keeps_its_sealer_while_the_key_set_holds(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    DIRECTORY.dump(keys_file)
    origin = "pa-senafront"
    publisher = Publisher(PublisherSettings(agency=origin, keys_file=keys_file), key=KEYS[origin])
    publisher.load()
    # The clock of this test, not the module's import time: a long suite runs for minutes,
    # and a bulletin issued more than 5 minutes after the publisher's clock is refused.
    now = datetime.now(UTC).replace(microsecond=0)
    _, first = publisher.seal(sample_bulletin(origin, issued_at=now), now)
    sealer = publisher._sealer
    publisher.seal(sample_bulletin(origin, issued_at=now), now)
    later = now + timedelta(seconds=1)
    publisher.seal(sample_bulletin(origin, issued_at=later), later)
    assert publisher._sealer is sealer
    assert sealer is not None
    assert len(view_sealed(first.value).wraps) == len(AGENCIES) - 1
