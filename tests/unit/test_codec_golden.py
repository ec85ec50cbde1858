"""Golden bytes: the wire format of a fixed bulletin never changes silently, and it is
standard Avro single-object encoding (checked against fastavro and the spec's CRC vector).

To regenerate after a deliberate change (a new schema version), run this file with
``ENLACE_REGENERATE_GOLDEN=1`` and commit the new ``.bin`` files with the reason.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from fastavro import schemaless_reader
from fastavro.schema import fingerprint as fastavro_fingerprint

from schemas.catalog import Catalog
from schemas.codec import HEADER_SIZE, MAGIC, decode_bulletin, encode_bulletin
from schemas.fingerprint import canonical_form, crc64_avro, schema_fingerprint
from schemas.models import validate_bulletin
from schemas.projection import tearline

GOLDEN = Path(__file__).parent / "golden"


def golden_bulletin_bytes() -> tuple[bytes, bytes]:
    bulletin = validate_bulletin(json.loads((GOLDEN / "fixed_bulletin.json").read_text()))
    return encode_bulletin(bulletin), encode_bulletin(tearline(bulletin))


@pytest.mark.parametrize(
    ("name", "index"), [("fixed_bulletin.v1.bin", 0), ("fixed_bulletin.tearline.v1.bin", 1)]
)
def test_golden_bytes(name: str, index: int) -> None:
    produced = golden_bulletin_bytes()[index]
    path = GOLDEN / name
    if os.environ.get("ENLACE_REGENERATE_GOLDEN") == "1":
        path.write_bytes(produced)
    assert produced == path.read_bytes()


def test_golden_decodes_to_the_json() -> None:
    bulletin = decode_bulletin((GOLDEN / "fixed_bulletin.v1.bin").read_bytes())
    assert bulletin.model_dump(mode="json") == json.loads(
        (GOLDEN / "fixed_bulletin.json").read_text()
    )


def test_crc64_avro_known_answer() -> None:
    # Avro specification test vector: the fingerprint of the schema "null".
    assert crc64_avro(b'"null"') == 7195948357588979594  # 0x63DD24E7CC258F8A
    assert schema_fingerprint("null") == bytes.fromhex("8a8f25cce724dd63")
    assert crc64_avro(b"") == 0xC15D213AA4D7A795


@pytest.mark.parametrize("schema", ["int", "string", {"type": "array", "items": "long"}])
def test_crc64_matches_fastavro_on_primitives(schema: object) -> None:
    expected = fastavro_fingerprint(canonical_form(schema), "CRC-64-AVRO")
    assert schema_fingerprint(schema).hex() == expected


def test_catalog_fingerprints_match_fastavro() -> None:
    for entry in Catalog.default():
        assert entry.fingerprint.hex() == fastavro_fingerprint(entry.canonical, "CRC-64-AVRO")


def test_golden_is_standard_single_object_encoding() -> None:
    data = (GOLDEN / "fixed_bulletin.v1.bin").read_bytes()
    entry = Catalog.default().get("ThreatBulletin", 1)
    assert data[:2] == MAGIC == b"\xc3\x01"
    assert data[2:HEADER_SIZE] == entry.fingerprint
    stream = io.BytesIO(data[HEADER_SIZE:])
    datum = schemaless_reader(stream, entry.parsed)
    assert stream.read() == b""  # the body is exactly one datum
    assert isinstance(datum, dict)
    assert datum["title"] == "Go-fast boat expected on the Pacific coast"
