"""Sealing records for Kafka (encode + sign + headers) and opening them (verify + decode).

An outbound bulletin carries two signatures by its originator: over the full value and over
the tearline projection encoded with the same writer schema. The router can then release
either without being able to alter a byte, and a recipient verifies the originator directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from enlace.core.errors import KeyNotOfAgency
from schemas import headers as hdr
from schemas.catalog import Catalog
from schemas.codec import (
    DEFAULT_MAX_RECORD_BYTES,
    decode_bulletin,
    decode_trust_event,
    encode_bulletin,
    encode_trust_event,
    fingerprint,
)
from schemas.key_directory import KeyDirectory
from schemas.models import ThreatBulletin, TrustEvent
from schemas.projection import tearline
from schemas.signing import AgencyKey


@dataclass(frozen=True)
class Sealed:
    """A record ready for Kafka. ``tearline_value`` is empty for trust events."""

    key: bytes
    value: bytes
    tearline_value: bytes
    headers: list[tuple[str, bytes]]


def _check_signer(key: AgencyKey, author: str) -> None:
    if key.agency != author:
        raise KeyNotOfAgency(f"key {key.key_id!r} belongs to {key.agency!r}, not {author!r}")


def seal(bulletin: ThreatBulletin, key: AgencyKey, *, catalog: Catalog | None = None) -> Sealed:
    """Encode ``bulletin`` and its tearline and sign both with the originator's ``key``."""
    _check_signer(key, bulletin.origin)
    value = encode_bulletin(bulletin, catalog=catalog)
    tearline_value = encode_bulletin(tearline(bulletin), catalog=catalog)
    headers = hdr.build(
        origin=bulletin.origin,
        key_id=key.key_id,
        sig=key.sign(value),
        sig_tearline=key.sign(tearline_value),
    )
    return Sealed(bulletin.bulletin_id.encode("ascii"), value, tearline_value, headers)


def seal_event(event: TrustEvent, key: AgencyKey, *, catalog: Catalog | None = None) -> Sealed:
    """Encode and sign a trust event with the reporter's ``key``.

    The record key is the subject: every event a reporter sends about one agency lands on one
    partition, so the router folds them in the order they arrived however its read of the
    topic's partitions interleaves (the claim budget depends on that order).
    """
    _check_signer(key, event.reporter)
    value = encode_trust_event(event, catalog=catalog)
    headers = hdr.build(origin=event.reporter, key_id=key.key_id, sig=key.sign(value))
    return Sealed(event.subject.encode("ascii"), value, b"", headers)


def tearline_value_of(
    value: bytes, *, max_bytes: int = DEFAULT_MAX_RECORD_BYTES, catalog: Catalog | None = None
) -> bytes:
    """The tearline bytes the originator signed for full bytes ``value``.

    Re-encoded with the writer schema of ``value`` (not the latest), so the result matches
    ``enlace-sig-tearline`` even when the reader knows a newer schema version.
    """
    bulletin = decode_bulletin(value, max_bytes=max_bytes, catalog=catalog)
    return encode_bulletin(tearline(bulletin), catalog=catalog, writer=fingerprint(value))


def verify_record(
    directory: KeyDirectory,
    value: bytes,
    headers: hdr.Headers | None,
    *,
    at: datetime,
    tearline_release: bool | None = None,
) -> hdr.SignedHeaders:
    """Check the originator's signature over ``value``; returns the parsed headers.

    Outbound records carry ``enlace-sig`` over the full value. A feed record released as
    tearline (``enlace-release: tearline``, or ``tearline_release``) carries the originator's
    tearline signature: in ``enlace-sig-tearline`` if present, else in ``enlace-sig`` (the
    router puts the signature matching the released bytes there).
    """
    signed = hdr.SignedHeaders.parse(headers)
    is_tearline = (
        signed.release == hdr.RELEASE_TEARLINE if tearline_release is None else tearline_release
    )
    signature = signed.sig
    if is_tearline and signed.sig_tearline is not None:
        signature = signed.sig_tearline
    directory.verify(signed.origin, signed.key_id, value, signature, at=at)
    return signed


def open_bulletin(
    directory: KeyDirectory,
    value: bytes,
    headers: hdr.Headers | None,
    *,
    at: datetime,
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    catalog: Catalog | None = None,
) -> tuple[ThreatBulletin, hdr.SignedHeaders]:
    """Verify then decode a bulletin record; its ``origin`` must be the signing agency."""
    signed = verify_record(directory, value, headers, at=at)
    bulletin = decode_bulletin(value, max_bytes=max_bytes, catalog=catalog)
    if bulletin.origin != signed.origin:
        raise KeyNotOfAgency(
            f"bulletin {bulletin.bulletin_id} claims origin {bulletin.origin!r} "
            f"but is signed by {signed.origin!r}"
        )
    return bulletin, signed


def open_event(
    directory: KeyDirectory,
    value: bytes,
    headers: hdr.Headers | None,
    *,
    at: datetime,
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    catalog: Catalog | None = None,
) -> tuple[TrustEvent, hdr.SignedHeaders]:
    """Verify then decode a trust event; its ``reporter`` must be the signing agency."""
    signed = verify_record(directory, value, headers, at=at, tearline_release=False)
    event = decode_trust_event(value, max_bytes=max_bytes, catalog=catalog)
    if event.reporter != signed.origin:
        raise KeyNotOfAgency(
            f"event {event.event_id} claims reporter {event.reporter!r} "
            f"but is signed by {signed.origin!r}"
        )
    return event, signed
