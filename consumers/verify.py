"""Opening a feed record: decode, verify the originator end to end, check release consistency.

Pure: the key directory, the record and ``now`` go in, a :class:`Delivered` or a
:class:`Quarantined` comes out; nothing raises for bad input, so one bad record never stops
the feed.

Order matters. The bounded decoder runs first because the signature is checked at the
bulletin's ``issued_at`` (a key rotated out later still vouches for what it signed while
valid; a revoked key vouches for nothing). The router places the originator's signature over
exactly the released bytes in ``enlace-sig``; for a tearline release ``enlace-sig-tearline``
is also accepted when present, since either way it is the originator's signature over these
very bytes, checked in full.

A sealed release (wire format 2, ``schemas/sealed.py``) is opened with this agency's key:
the routing signature, the wrap, the body and the body's own signature are each checked, the
body must agree with its envelope, and a tearline must be a tearline. Without the key it is
quarantined (``no_private_key``), never dropped.
"""

from __future__ import annotations

from datetime import datetime

from consumers.records import Delivered, FeedRecord, Quarantined, Release
from enlace.core.errors import CodecError, SignatureError, ValidationError
from schemas import headers as hdr
from schemas.codec import decode_bulletin
from schemas.key_directory import KeyDirectory
from schemas.models import ThreatBulletin
from schemas.projection import is_tearline
from schemas.sealed import Opened, is_sealed_release, open_release
from schemas.sealing import BoxCache
from schemas.signing import AgencyKey

# Reasons of our own (the error classes carry the codec and signature ones).
MISSING_RELEASE = "missing_release"
ORIGIN_MISMATCH = "origin_mismatch"
KEY_MISMATCH = "key_mismatch"
TEARLINE_NOT_SANITIZED = "tearline_not_sanitized"
INVALID = "invalid"
NO_PRIVATE_KEY = "no_private_key"
RELEASE_MISMATCH = "release_mismatch"


class _Refused(Exception):
    """Internal: a consistency check failed with ``reason``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def open_feed_record(
    record: FeedRecord,
    directory: KeyDirectory,
    *,
    now: datetime,
    max_bytes: int,
    own: AgencyKey | None = None,
    boxes: BoxCache | None = None,
) -> Delivered | Quarantined:
    """Verify and decode one feed record (see the module docstring for the rules); a sealed
    release (wire format 2) is opened with this agency's key ``own``."""
    signed: hdr.SignedHeaders | None = None
    bulletin: ThreatBulletin | None = None
    signed_bytes: bytes | None = None
    try:
        signed = hdr.SignedHeaders.parse(record.headers)
        release = _release_of(signed.release)
        if is_sealed_release(record.value):
            opened = _open_sealed(record, release, directory, max_bytes, own, boxes)
            bulletin, signature, signed_bytes = opened.bulletin, opened.signature, opened.body
        else:
            bulletin = decode_bulletin(record.value, max_bytes=max_bytes)
            signature = _verify(directory, record, signed, release, at=bulletin.issued_at)
        _check_consistency(record, bulletin, signed.origin, release)
    except _Refused as exc:
        reason, detail = exc.reason, str(exc)
    except (CodecError, SignatureError) as exc:
        reason, detail = exc.reason, str(exc)
    except ValidationError as exc:
        reason, detail = INVALID, str(exc)
    else:
        return Delivered(
            record=record,
            bulletin=bulletin,
            release=release,
            key_id=signed.key_id,
            signature=signature,
            received_at=now,
            signed_bytes=signed_bytes,
        )
    return Quarantined(
        record=record,
        reason=reason,
        detail=detail[:2000],
        received_at=now,
        origin=signed.origin if signed else None,
        key_id=signed.key_id if signed else None,
        bulletin_id=bulletin.bulletin_id if bulletin is not None else None,
        release=signed.release if signed else None,
    )


def _open_sealed(  # noqa: PLR0917 - one step of open_feed_record
    record: FeedRecord,
    release: Release,
    directory: KeyDirectory,
    max_bytes: int,
    own: AgencyKey | None,
    boxes: BoxCache | None,
) -> Opened:
    if own is None:
        raise _Refused(NO_PRIVATE_KEY, "a sealed release opens only with this agency's key")
    opened = open_release(
        record.value,
        record.headers,
        directory=directory,
        own=own,
        boxes=boxes or BoxCache(),
        max_bytes=max_bytes,
    )
    if opened.level != release.value.upper():
        raise _Refused(RELEASE_MISMATCH, f"header says {release.value}, body is {opened.level}")
    return opened


def _release_of(text: str | None) -> Release:
    if text is None:
        raise _Refused(MISSING_RELEASE, f"header {hdr.RELEASE!r} is missing")
    return Release(text)  # SignedHeaders.parse already refused unknown values


def _verify(
    directory: KeyDirectory,
    record: FeedRecord,
    signed: hdr.SignedHeaders,
    release: Release,
    *,
    at: datetime,
) -> bytes:
    """The signature that verifies over the record's bytes, or the first failure."""
    candidates = [signed.sig]
    if release is Release.TEARLINE and signed.sig_tearline is not None:
        candidates.append(signed.sig_tearline)
    failure: SignatureError | None = None
    for signature in candidates:
        try:
            directory.verify(signed.origin, signed.key_id, record.value, signature, at=at)
        except SignatureError as exc:
            failure = failure or exc
            continue
        return signature
    assert failure is not None  # candidates is never empty
    raise failure


def _check_consistency(
    record: FeedRecord, bulletin: ThreatBulletin, signer: str, release: Release
) -> None:
    if bulletin.origin != signer:
        raise _Refused(
            ORIGIN_MISMATCH, f"bulletin claims origin {bulletin.origin!r}, signed by {signer!r}"
        )
    if record.key is not None and record.key != bulletin.bulletin_id.encode("ascii"):
        raise _Refused(KEY_MISMATCH, "record key is not the bulletin id")
    if release is Release.TEARLINE and not is_tearline(bulletin):
        raise _Refused(
            TEARLINE_NOT_SANITIZED,
            "released as tearline but carries fields above the tearline",
        )


__all__ = [
    "INVALID",
    "KEY_MISMATCH",
    "MISSING_RELEASE",
    "NO_PRIVATE_KEY",
    "ORIGIN_MISMATCH",
    "RELEASE_MISMATCH",
    "TEARLINE_NOT_SANITIZED",
    "open_feed_record",
]
