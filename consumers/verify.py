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
quarantined (``no_private_key``), never dropped. A sealed tearline's body drops the
bulletin's references; its envelope, signed by the originator and read in clear by the router
and every recipient, keeps them, so the delivery carries the envelope's (supersede links).

A recall (``enlace-release: recall``, ``schemas/recall.py``) is verified as a recall, never as
a bulletin: the originator's signature over exactly the value, checked at its ``recalled_at``,
its ``origin`` equal to the signer, the record key equal to the recalled bulletin's id. A
recall value under another release header, or a bulletin under ``recall``, is refused.
Whether the signer is the recalled bulletin's own originator needs the store:
:func:`consumers.lifecycle.screen_recalls` checks it.
"""

from __future__ import annotations

from datetime import datetime

from consumers.records import Delivered, FeedRecord, Quarantined, Recalled, Release
from enlace.core.errors import CodecError, SignatureError, ValidationError
from schemas import headers as hdr
from schemas.bulletin import Reference
from schemas.codec import decode_bulletin
from schemas.key_directory import KeyDirectory
from schemas.models import ThreatBulletin
from schemas.projection import is_tearline
from schemas.recall import BulletinRecall, decode_recall, is_recall, open_recall
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
# Checked against the store by consumers.lifecycle: a recall signed by another agency than
# the recalled bulletin's originator.
RECALL_NOT_ORIGINATOR = "recall_not_originator"


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
) -> Delivered | Quarantined | Recalled:
    """Verify and decode one feed record (see the module docstring for the rules); a sealed
    release (wire format 2) is opened with this agency's key ``own``."""
    signed: hdr.SignedHeaders | None = None
    bulletin: ThreatBulletin | None = None
    recall: BulletinRecall | None = None
    signed_bytes: bytes | None = None
    references: tuple[Reference, ...] | None = None
    try:
        signed = hdr.SignedHeaders.parse(record.headers)
        if signed.release == hdr.RELEASE_RECALL:
            # Decoded first for its recalled_at (bounded decoder), then verified at that time.
            recall = decode_recall(record.value, max_bytes=max_bytes)
            recall = _open_recall(record, directory, recall, max_bytes)
            return Recalled(
                record=record,
                recall=recall,
                key_id=signed.key_id,
                signature=signed.sig,
                received_at=now,
            )
        release = _release_of(signed.release)
        _not_a_recall(record, release)
        if is_sealed_release(record.value):
            opened = _open_sealed(record, release, directory, max_bytes, own, boxes)
            bulletin, signature, signed_bytes = opened.bulletin, opened.signature, opened.body
            if release is Release.TEARLINE:
                references = opened.envelope.references
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
            envelope_references=references,
        )
    subject = bulletin.bulletin_id if bulletin is not None else None
    if recall is not None:
        subject = recall.bulletin_id
    return Quarantined(
        record=record,
        reason=reason,
        detail=detail[:2000],
        received_at=now,
        origin=signed.origin if signed else None,
        key_id=signed.key_id if signed else None,
        bulletin_id=subject,
        release=signed.release if signed else None,
    )


def _open_recall(
    record: FeedRecord, directory: KeyDirectory, claimed: BulletinRecall, max_bytes: int
) -> BulletinRecall:
    recall, _ = open_recall(
        directory, record.value, record.headers, at=claimed.recalled_at, max_bytes=max_bytes
    )
    if record.key is not None and record.key != recall.bulletin_id.encode("ascii"):
        raise _Refused(KEY_MISMATCH, "record key is not the recalled bulletin's id")
    return recall


def _not_a_recall(record: FeedRecord, release: Release) -> None:
    if is_recall(record.value):
        raise _Refused(RELEASE_MISMATCH, f"a recall released as {release.value}")


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
    "RECALL_NOT_ORIGINATOR",
    "RELEASE_MISMATCH",
    "TEARLINE_NOT_SANITIZED",
    "open_feed_record",
]
