"""Admission of one outbound record: every check the router makes before any release.

Pure: the record's bytes and headers, the key directory, limits and ``now`` in; an
:class:`Admitted` bulletin or a :class:`Refused` reason out. Checks run in the documented
order and the first failure decides the dead-letter reason:

1. size            ``oversize`` (or ``empty``)
2. headers         ``bad_header`` (missing, duplicated or malformed provenance headers)
3. origin header   ``forged_origin`` (``enlace-origin`` is not the agency of the topic)
4. key and sig     ``unknown_key``, ``key_not_of_agency``, ``revoked_key``, ``bad_signature``
5. decode          ``bad_magic``, ``unknown_fingerprint``, ``truncated``, ``corrupt``
6. model rules     ``invalid``
7. body origin     ``origin_mismatch`` (the bulletin's ``origin`` is not the topic's agency)
8. key at issue    ``revoked_key`` (the key was not valid at ``issued_at``)
9. clock           ``clock_skew`` (``issued_at`` too far in the future or the past)
10. tearline       ``tearline_mismatch`` (the router's projection does not verify against
                   the originator's tearline signature)

A wire-format-2 record (a ``SealedBulletin``, told by its writer fingerprint) is decoded
before its signature is checked, since ``enlace-sig`` covers a digest of the decoded parts
(envelope and both ciphertexts): 5, then 4 over :attr:`SealedView.routing_digest`, then 6-9
on the envelope. Step 10 moves to the recipient, the only one that can read a tearline.

The partition (``wrong_partition``: not the bulletin id's owner partition) and replay
(``duplicate`` / ``id_conflict``) need the record's place and state; the caller checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from enlace.core.clock import MAX_FUTURE, MAX_PAST, outside_window
from enlace.core.errors import CodecError, SignatureError, ValidationError
from enlace.core.topics import owner_partition
from schemas import headers as hdr
from schemas.bulletin import BulletinEnvelope
from schemas.catalog import Catalog
from schemas.codec import DEFAULT_MAX_RECORD_BYTES, decode_bulletin, encode_bulletin, fingerprint
from schemas.key_directory import KeyDirectory
from schemas.models import ThreatBulletin
from schemas.projection import tearline
from schemas.sealed import SEALED_BULLETIN, SEALED_VERSION, SealedView, view_sealed

# Dead-letter reason codes that are not an error class's own ``reason``.
EMPTY = "empty"
FORGED_ORIGIN = "forged_origin"
INVALID = "invalid"
ORIGIN_MISMATCH = "origin_mismatch"
CLOCK_SKEW = "clock_skew"
TEARLINE_MISMATCH = "tearline_mismatch"
ID_CONFLICT = "id_conflict"
WRONG_PARTITION = "wrong_partition"
INTERNAL_ERROR = "internal_error"
# A recall (broker.lifecycle) of no bulletin routed for its originator, or of another's.
RECALL_UNKNOWN = "recall_unknown"
RECALL_NOT_ORIGINATOR = "recall_not_originator"
# Every reason a record can be dead-lettered for that the router knows in advance (its own
# codes and the typed errors'): the router's counters start at 0 for each, so the first
# forged record moves a series Prometheus already has (rate() and increase() ignore the
# value a series is born with; a counter created by its first increment hides that one).
DEAD_LETTER_REASONS = (
    EMPTY, "oversize", FORGED_ORIGIN, INVALID, ORIGIN_MISMATCH, CLOCK_SKEW, TEARLINE_MISMATCH,
    ID_CONFLICT, WRONG_PARTITION, INTERNAL_ERROR, "undecodable", "bad_magic",
    "unknown_fingerprint", "truncated", "corrupt", "bad_header", "bad_signature",
    "unknown_key", "key_not_of_agency", "revoked_key", "unsealable", RECALL_UNKNOWN,
    RECALL_NOT_ORIGINATOR,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Limits:
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_future: timedelta = MAX_FUTURE
    max_past: timedelta = MAX_PAST


@dataclass(frozen=True, slots=True)
class Admitted:
    """A v1 bulletin (``bulletin`` the whole body) or a sealed one (``bulletin`` its envelope,
    ``sealed`` the parts the router forwards; no key that opens them)."""

    bulletin: ThreatBulletin | BulletinEnvelope
    value: bytes
    tearline_value: bytes
    signed: hdr.SignedHeaders
    sealed: SealedView | None = None
    # When the publisher sent it (the outbound record's timestamp): feed records carry it.
    published_ms: int | None = None
    # A sealed bulletin's release headers by level: the same for every partner.
    _headers: dict[str, tuple[tuple[str, bytes], ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def key(self) -> bytes:
        """The record key of everything routed for this bulletin: its id."""
        return self.bulletin.bulletin_id.encode("ascii")

    @property
    def identity(self) -> bytes:
        """What the replay index hashes: a sealed bulletin re-sealed for a retry has new random
        nonces, so its identity is its signed envelope (the retry is a DUPLICATE, not an id
        conflict); a v1 bulletin's is its value."""
        return self.sealed.envelope_bytes if self.sealed is not None else self.value

    @property
    def sealed_for(self) -> frozenset[str] | None:
        """The partners the originator wrapped keys for (None: v1, releasable to anyone)."""
        return frozenset(self.sealed.wraps) if self.sealed is not None else None

    def release_headers(self, release: str) -> tuple[tuple[str, bytes], ...]:
        """Headers of a wire-format-2 release at ``release`` (the originator's routing
        signature covers both levels)."""
        found = self._headers.get(release)
        if found is None:
            signed = self.signed
            found = self._headers[release] = tuple(
                hdr.build(
                    origin=signed.origin,
                    key_id=signed.key_id,
                    sig=signed.sig,
                    release=release,
                    published_ms=self.published_ms,
                )
            )
        return found


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    message: str


def admit(  # noqa: PLR0911 - one exit per check keeps the documented order readable
    topic_agency: str,
    value: bytes | None,
    headers: hdr.Headers | None,
    *,
    keys: KeyDirectory,
    limits: Limits,
    received_at: datetime,
    now: datetime,
) -> Admitted | Refused:
    """Run the checks above. ``received_at`` (the record timestamp) dates the signature check
    before the bulletin is decoded; ``issued_at`` is checked against the key afterwards."""
    checked = provenance(topic_agency, value, headers, limits)
    if isinstance(checked, Refused):
        return checked
    value, signed = checked
    if _is_sealed(value):
        return _admit_sealed(
            topic_agency, value, signed, keys=keys, limits=limits, received_at=received_at, now=now
        )
    try:
        keys.verify(topic_agency, signed.key_id, value, signed.sig, at=received_at)
    except SignatureError as exc:
        return Refused(exc.reason, str(exc))
    try:
        bulletin = decode_bulletin(value, max_bytes=limits.max_record_bytes)
    except CodecError as exc:
        return Refused(exc.reason, str(exc))
    except ValidationError as exc:
        return Refused(INVALID, _problems(exc))
    late = _origin_key_and_clock(
        topic_agency, bulletin, signed=signed, keys=keys, limits=limits, now=now
    )
    if late is not None:
        return late
    if signed.sig_tearline is None:
        return Refused("bad_header", f"header {hdr.SIG_TEARLINE!r} is missing")
    # The projection is re-encoded with the writer schema of the value, as the originator did.
    tearline_value = encode_bulletin(tearline(bulletin), writer=fingerprint(value))
    try:
        keys.verify(
            topic_agency, signed.key_id, tearline_value, signed.sig_tearline, at=received_at
        )
    except SignatureError as exc:
        return Refused(TEARLINE_MISMATCH, f"tearline projection does not verify: {exc}")
    return Admitted(bulletin, value, tearline_value, signed, published_ms=_ms(received_at))


def provenance(
    topic_agency: str, value: bytes | None, headers: hdr.Headers | None, limits: Limits
) -> tuple[bytes, hdr.SignedHeaders] | Refused:
    """Checks 1-3, the same for every record of an outbound topic (bulletins and recalls):
    the value and its parsed provenance headers, or the first refusal."""
    if not value:
        return Refused(EMPTY, "record has no value")
    if len(value) > limits.max_record_bytes:
        return Refused("oversize", f"{len(value)} bytes > limit {limits.max_record_bytes}")
    try:
        signed = hdr.SignedHeaders.parse(headers)
    except CodecError as exc:
        return Refused(exc.reason, str(exc))
    if signed.origin != topic_agency:
        return Refused(
            FORGED_ORIGIN, f"header origin {signed.origin!r} on {topic_agency!r}'s outbound topic"
        )
    return value, signed


def misplaced(
    what: str, bulletin_id: str, partition: int, partitions: int | None, *, key_hint: str
) -> Refused | None:
    """``wrong_partition`` for a record about ``bulletin_id`` (the bulletin, or its recall)
    that is not on the id's owner partition. Replay protection, and one writer per
    replay-index entry, hold per owner partition: a record elsewhere could be handled by
    another transaction at the same time (README, "Threat model")."""
    if not partitions:
        return None
    owner = owner_partition(bulletin_id, partitions)
    if partition == owner:
        return None
    message = (
        f"{what} belongs on partition {owner} of {partitions}, not {partition} "
        f"(key it by {key_hint})"
    )
    return Refused(WRONG_PARTITION, message)


def _is_sealed(value: bytes) -> bool:
    """A SealedBulletin by its writer fingerprint; anything unreadable takes the v1 path,
    whose signature check comes first (garbage is a bad signature, as it always was)."""
    try:
        found = fingerprint(value)
    except CodecError:
        return False
    return found == Catalog.default().get(SEALED_BULLETIN, SEALED_VERSION).fingerprint


def _admit_sealed(
    topic_agency: str,
    value: bytes,
    signed: hdr.SignedHeaders,
    *,
    keys: KeyDirectory,
    limits: Limits,
    received_at: datetime,
    now: datetime,
) -> Admitted | Refused:
    try:
        view = view_sealed(value, max_bytes=limits.max_record_bytes)
    except CodecError as exc:
        return Refused(exc.reason, str(exc))
    except ValidationError as exc:
        return Refused(INVALID, _problems(exc))
    try:
        keys.verify(topic_agency, signed.key_id, view.routing_digest, signed.sig, at=received_at)
    except SignatureError as exc:
        return Refused(exc.reason, str(exc))
    late = _origin_key_and_clock(
        topic_agency, view.envelope, signed=signed, keys=keys, limits=limits, now=now
    )
    if late is not None:
        return late
    return Admitted(view.envelope, value, b"", signed, view, published_ms=_ms(received_at))


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _origin_key_and_clock(
    topic_agency: str,
    bulletin: ThreatBulletin | BulletinEnvelope,
    *,
    signed: hdr.SignedHeaders,
    keys: KeyDirectory,
    limits: Limits,
    now: datetime,
) -> Refused | None:
    """Checks 7-9 on a bulletin or an envelope."""
    if bulletin.origin != topic_agency:
        return Refused(
            ORIGIN_MISMATCH, f"bulletin origin {bulletin.origin!r} on {topic_agency!r}'s topic"
        )
    if not keys.get(signed.key_id).valid_at(bulletin.issued_at):
        return Refused(
            "revoked_key", f"key {signed.key_id!r} was not valid at issued_at {bulletin.issued_at}"
        )
    skew = outside_window(bulletin.issued_at, now, limits.max_future, limits.max_past)
    if skew == "ahead":
        return Refused(CLOCK_SKEW, f"issued_at {bulletin.issued_at} is in the future")
    if skew == "behind":
        return Refused(CLOCK_SKEW, f"issued_at {bulletin.issued_at} is older than the window")
    return None


def _problems(exc: ValidationError) -> str:
    if not exc.problems:
        return str(exc)
    return "; ".join(f"{field}: {rule}" for field, rule in exc.problems)[:500]
