"""The wire codec: Avro single-object encoding with a bounded, schema-resolving decoder.

A record is ``MAGIC`` (``C3 01``), the 8-byte CRC-64-AVRO fingerprint of the writer schema's
canonical form (little-endian), then the Avro binary body. Decoding finds the writer schema
by fingerprint, pre-scans the body so no declared length can outgrow the bytes, and resolves
the writer's version to the reader's. No maps in the schemas, so encoding is deterministic.
"""

from __future__ import annotations

import io
import struct
from typing import Any, TypeVar

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from pydantic import ValidationError as PydanticValidationError

from enlace.core.errors import (
    BadMagic,
    CorruptRecord,
    RecordTooLarge,
    TruncatedRecord,
    UnknownFingerprint,
    ValidationError,
)
from schemas.bounds import check_body
from schemas.catalog import Catalog
from schemas.models import AuditRecord, ThreatBulletin, TrustEvent, WireModel, problems_of

MAGIC = b"\xc3\x01"
FINGERPRINT_SIZE = 8
HEADER_SIZE = len(MAGIC) + FINGERPRINT_SIZE
DEFAULT_MAX_RECORD_BYTES = 1_048_576

M = TypeVar("M", bound=WireModel)

BULLETIN = "ThreatBulletin"
TRUST_EVENT = "TrustEvent"
AUDIT = "AuditRecord"

# What fastavro raises on bytes that passed the pre-scan but still do not decode (bad UTF-8,
# a timestamp beyond datetime's range, an unresolvable symbol).
_DECODE_FAILURES = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    EOFError,
    struct.error,
    SchemaResolutionError,
)


def _catalog(catalog: Catalog | None) -> Catalog:
    return catalog if catalog is not None else Catalog.default()


def fingerprint(data: bytes) -> bytes:
    """The writer-schema fingerprint of a single-object record (checks the magic)."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BadMagic(f"record does not start with Avro single-object magic {MAGIC.hex()}")
    if len(data) < HEADER_SIZE:
        raise TruncatedRecord(f"record of {len(data)} bytes is shorter than its header")
    return bytes(data[len(MAGIC) : HEADER_SIZE])


def encode(
    datum: dict[str, Any],
    schema_name: str,
    *,
    catalog: Catalog | None = None,
    writer: bytes | None = None,
) -> bytes:
    """Encode ``datum`` with the latest ``schema_name`` (or the ``writer`` fingerprint's)."""
    cat = _catalog(catalog)
    entry = cat.latest(schema_name) if writer is None else cat.by_fingerprint(writer)
    if entry.name != schema_name:
        raise UnknownFingerprint(f"fingerprint {entry.fingerprint.hex()} is not a {schema_name}")
    out = io.BytesIO()
    out.write(MAGIC)
    out.write(entry.fingerprint)
    try:
        schemaless_writer(out, entry.parsed, datum, strict=True, disable_tuple_notation=True)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error) as exc:
        raise ValidationError(
            f"datum does not fit schema {entry.name} v{entry.version}: {exc}"
        ) from exc
    return out.getvalue()


def decode(
    data: bytes,
    reader_schema_name: str,
    *,
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    catalog: Catalog | None = None,
    reader_version: int | None = None,
) -> dict[str, Any]:
    """Decode a record to a datum of the reader's version of ``reader_schema_name``."""
    if len(data) > max_bytes:
        raise RecordTooLarge(f"record of {len(data)} bytes exceeds the limit of {max_bytes}")
    cat = _catalog(catalog)
    writer = cat.by_fingerprint(fingerprint(data))
    reader = cat.get(reader_schema_name, reader_version)
    if writer.name != reader.name:
        raise UnknownFingerprint(
            f"record was written as {writer.name} v{writer.version}, expected {reader.name}"
        )
    body = memoryview(data)[HEADER_SIZE:]
    check_body(writer.tree, body)
    try:
        datum = schemaless_reader(
            io.BytesIO(body),
            writer.parsed,
            None if writer is reader else reader.parsed,
        )
    except _DECODE_FAILURES as exc:
        raise CorruptRecord(
            f"{writer.name} v{writer.version} body does not decode: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(datum, dict):
        raise CorruptRecord(f"{writer.name} body did not decode to a record")
    return datum


def _model(model: type[M], datum: dict[str, Any], what: str) -> M:
    try:
        return model.from_avro(datum)
    except PydanticValidationError as exc:
        problems = problems_of(exc)
        listing = "; ".join(f"{path}: {rule}" for path, rule in problems)
        raise ValidationError(f"{what} decodes but is invalid: {listing}", problems) from exc


def encode_bulletin(
    bulletin: ThreatBulletin, *, catalog: Catalog | None = None, writer: bytes | None = None
) -> bytes:
    if writer is None:
        writer = _catalog(catalog).get(BULLETIN, ThreatBulletin.avro_version).fingerprint
    return encode(bulletin.to_avro(), BULLETIN, catalog=catalog, writer=writer)


def decode_bulletin(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_RECORD_BYTES, catalog: Catalog | None = None
) -> ThreatBulletin:
    datum = decode(
        data,
        BULLETIN,
        max_bytes=max_bytes,
        catalog=catalog,
        reader_version=ThreatBulletin.avro_version,
    )
    return _model(ThreatBulletin, datum, "bulletin")


def encode_trust_event(event: TrustEvent, *, catalog: Catalog | None = None) -> bytes:
    writer = _catalog(catalog).get(TRUST_EVENT, TrustEvent.avro_version).fingerprint
    return encode(event.to_avro(), TRUST_EVENT, catalog=catalog, writer=writer)


def decode_trust_event(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_RECORD_BYTES, catalog: Catalog | None = None
) -> TrustEvent:
    datum = decode(
        data,
        TRUST_EVENT,
        max_bytes=max_bytes,
        catalog=catalog,
        reader_version=TrustEvent.avro_version,
    )
    return _model(TrustEvent, datum, "trust event")


def encode_audit(record: AuditRecord, *, catalog: Catalog | None = None) -> bytes:
    writer = _catalog(catalog).get(AUDIT, AuditRecord.avro_version).fingerprint
    return encode(record.to_avro(), AUDIT, catalog=catalog, writer=writer)


def decode_audit(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_RECORD_BYTES, catalog: Catalog | None = None
) -> AuditRecord:
    datum = decode(
        data, AUDIT, max_bytes=max_bytes, catalog=catalog, reader_version=AuditRecord.avro_version
    )
    return _model(AuditRecord, datum, "audit record")
