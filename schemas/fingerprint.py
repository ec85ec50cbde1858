"""CRC-64-AVRO (the Rabin fingerprint of the Avro specification) of a schema's canonical form.

Implemented here rather than borrowed so the wire format does not depend on one library's
helper; the tests check it against the spec's known answer and against fastavro.
"""

from __future__ import annotations

from typing import Any

from fastavro.schema import to_parsing_canonical_form

EMPTY = 0xC15D213AA4D7A795


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        fp = byte
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE = _table()


def crc64_avro(data: bytes) -> int:
    """The 64-bit CRC-64-AVRO of ``data`` (for a schema: of its parsing canonical form)."""
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def canonical_form(schema: Any) -> str:
    """The Avro Parsing Canonical Form of a schema (docs, defaults and logical types dropped)."""
    form: str = to_parsing_canonical_form(schema)
    return form


def schema_fingerprint(schema: Any) -> bytes:
    """The 8 fingerprint bytes of single-object encoding: CRC-64-AVRO, little-endian."""
    return crc64_avro(canonical_form(schema).encode("utf-8")).to_bytes(8, "little")
