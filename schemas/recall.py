"""BulletinRecall (``bulletin_recall.v1.avsc``): an originator withdraws a bulletin.

The recall is a small signed record of its own, not a bulletin version: the router reads it
in the clear (it must know whom to forward it to) and forwards the originator's exact bytes
and signature, so every recipient verifies that the originator, and no one else, withdrew
the bulletin. On feed records it travels with ``enlace-release: recall``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo, field_validator

from enlace.core.errors import CodecError, KeyNotOfAgency, ValidationError
from schemas import headers as hdr
from schemas.catalog import Catalog
from schemas.codec import DEFAULT_MAX_RECORD_BYTES, _model, decode, encode, fingerprint
from schemas.envelope import Sealed, verify_record
from schemas.fields import AgencyId, UtcTime, Uuid, WireModel, _text_rule
from schemas.key_directory import KeyDirectory
from schemas.signing import AgencyKey

RECALL = "BulletinRecall"
RECALL_VERSION = 1
MAX_REASON = 500

Reason = Annotated[str, AfterValidator(_text_rule(1, MAX_REASON, multiline=False))]


class BulletinRecall(WireModel):
    recall_id: Uuid
    bulletin_id: Uuid
    origin: AgencyId
    recalled_at: UtcTime
    reason: Reason

    @field_validator("recall_id")
    @classmethod
    def _not_the_bulletin(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("bulletin_id"):
            raise ValueError("a recall's id must differ from the recalled bulletin's")
        return value

    @classmethod
    def new(cls, origin: str, bulletin_id: str, reason: str, at: datetime) -> BulletinRecall:
        """A recall with a fresh random id (raises pydantic's error on bad fields)."""
        return cls(
            recall_id=str(uuid.uuid4()),
            bulletin_id=bulletin_id,
            origin=origin,
            recalled_at=at,
            reason=reason,
        )


def recall_fingerprint(catalog: Catalog | None = None) -> bytes:
    return (catalog or Catalog.default()).get(RECALL, RECALL_VERSION).fingerprint


def is_recall(value: bytes, *, catalog: Catalog | None = None) -> bool:
    """Whether ``value`` was written with a BulletinRecall schema (by its fingerprint)."""
    try:
        found = fingerprint(value)
    except CodecError:
        return False
    cat = catalog or Catalog.default()
    try:
        return cat.by_fingerprint(found).name == RECALL
    except CodecError:
        return False


def encode_recall(recall: BulletinRecall, *, catalog: Catalog | None = None) -> bytes:
    writer = recall_fingerprint(catalog)
    return encode(recall.to_avro(), RECALL, catalog=catalog, writer=writer)


def decode_recall(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_RECORD_BYTES, catalog: Catalog | None = None
) -> BulletinRecall:
    datum = decode(
        data, RECALL, max_bytes=max_bytes, catalog=catalog, reader_version=RECALL_VERSION
    )
    return _model(BulletinRecall, datum, "recall")


def seal_recall(
    recall: BulletinRecall, key: AgencyKey, *, catalog: Catalog | None = None
) -> Sealed:
    """Encode and sign a recall with the originator's ``key``; keyed by the bulletin's id."""
    if key.agency != recall.origin:
        raise KeyNotOfAgency(f"key {key.key_id!r} belongs to {key.agency!r}, not {recall.origin!r}")
    value = encode_recall(recall, catalog=catalog)
    headers = hdr.build(origin=recall.origin, key_id=key.key_id, sig=key.sign(value))
    return Sealed(recall.bulletin_id.encode("ascii"), value, b"", headers)


def open_recall(
    directory: KeyDirectory,
    value: bytes,
    headers: hdr.Headers | None,
    *,
    at: datetime,
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    catalog: Catalog | None = None,
) -> tuple[BulletinRecall, hdr.SignedHeaders]:
    """Verify then decode a recall (outbound or forwarded on a feed): signed by its origin's
    key, ``origin`` equal to the signing agency. Raises the codec's, signature or
    :class:`ValidationError` errors."""
    signed = verify_record(directory, value, headers, at=at, tearline_release=False)
    recall = decode_recall(value, max_bytes=max_bytes, catalog=catalog)
    if recall.origin != signed.origin:
        raise KeyNotOfAgency(
            f"recall of {recall.bulletin_id} claims origin {recall.origin!r} "
            f"but is signed by {signed.origin!r}"
        )
    return recall, signed


__all__ = [
    "MAX_REASON",
    "RECALL",
    "BulletinRecall",
    "ValidationError",
    "decode_recall",
    "encode_recall",
    "is_recall",
    "open_recall",
    "recall_fingerprint",
    "seal_recall",
]
