"""Kafka record headers of the exchange and helpers for aiokafka's ``[(name, bytes)]`` lists.

A header that appears twice is refused rather than resolved: a forwarded record with a second
``enlace-origin`` appended must not be read either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from enlace.core.errors import HeaderError

ORIGIN = "enlace-origin"
KEY_ID = "enlace-key-id"
SIG = "enlace-sig"
SIG_TEARLINE = "enlace-sig-tearline"
RELEASE = "enlace-release"
# On feed records: when the publisher sent the bulletin (its outbound record's timestamp, ms
# since the epoch), so a partner measures publish → delivery, not the author's issued_at.
PUBLISHED_MS = "enlace-published-ms"
_MAX_MS_DIGITS = 15

RELEASE_FULL = "full"
RELEASE_TEARLINE = "tearline"
# A forwarded recall (schemas.recall): the originator's exact recall bytes and signature.
RELEASE_RECALL = "recall"
RELEASE_VALUES = (RELEASE_FULL, RELEASE_TEARLINE, RELEASE_RECALL)

SIGNATURE_SIZE = 64
MAX_TEXT_HEADER = 128

Headers = Sequence[tuple[str, bytes]]


def header(headers: Headers | None, name: str) -> bytes | None:
    """The value of header ``name``, None if absent; HeaderError if it appears twice."""
    found: bytes | None = None
    for key, value in headers or ():
        if key == name:
            if found is not None:
                raise HeaderError(f"header {name!r} appears more than once")
            found = bytes(value) if value is not None else b""
    return found


def require(headers: Headers | None, name: str) -> bytes:
    value = header(headers, name)
    if value is None:
        raise HeaderError(f"header {name!r} is missing")
    return value


def text(headers: Headers | None, name: str) -> str | None:
    """A short ASCII text header (origin, key id, release) decoded, or None if absent."""
    value = header(headers, name)
    if value is None:
        return None
    if len(value) > MAX_TEXT_HEADER:
        raise HeaderError(f"header {name!r} is longer than {MAX_TEXT_HEADER} bytes")
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise HeaderError(f"header {name!r} is not ASCII") from None


def signature(headers: Headers | None, name: str = SIG) -> bytes:
    value = require(headers, name)
    if len(value) != SIGNATURE_SIZE:
        raise HeaderError(f"header {name!r} must be {SIGNATURE_SIZE} bytes, got {len(value)}")
    return value


@dataclass(frozen=True)
class SignedHeaders:
    """The provenance headers of a record: who signed it, with which key, and the signatures."""

    origin: str
    key_id: str
    sig: bytes
    sig_tearline: bytes | None = None
    release: str | None = None

    def to_list(self) -> list[tuple[str, bytes]]:
        out = [
            (ORIGIN, self.origin.encode("ascii")),
            (KEY_ID, self.key_id.encode("ascii")),
            (SIG, self.sig),
        ]
        if self.sig_tearline is not None:
            out.append((SIG_TEARLINE, self.sig_tearline))
        if self.release is not None:
            out.append((RELEASE, self.release.encode("ascii")))
        return out

    @classmethod
    def parse(cls, headers: Headers | None) -> SignedHeaders:
        """Read the provenance headers; HeaderError names the missing or malformed one."""
        origin = text(headers, ORIGIN)
        key_id = text(headers, KEY_ID)
        if origin is None:
            raise HeaderError(f"header {ORIGIN!r} is missing")
        if key_id is None:
            raise HeaderError(f"header {KEY_ID!r} is missing")
        release = text(headers, RELEASE)
        if release is not None and release not in RELEASE_VALUES:
            raise HeaderError(f"header {RELEASE!r} must be one of {RELEASE_VALUES}")
        sig_tearline = (
            signature(headers, SIG_TEARLINE) if header(headers, SIG_TEARLINE) is not None else None
        )
        return cls(origin, key_id, signature(headers, SIG), sig_tearline, release)


def build(
    *,
    origin: str,
    key_id: str,
    sig: bytes,
    sig_tearline: bytes | None = None,
    release: str | None = None,
    published_ms: int | None = None,
) -> list[tuple[str, bytes]]:
    """Headers for a record, in a stable order."""
    out = SignedHeaders(origin, key_id, sig, sig_tearline, release).to_list()
    if published_ms is not None:
        out.append((PUBLISHED_MS, str(published_ms).encode("ascii")))
    return out


def published_ms(headers: Headers | None) -> int | None:
    """The ``enlace-published-ms`` of a feed record; None when absent (a router from before
    it) or not a plain count of milliseconds. Never a reason to refuse a record: it is the
    router's measurement, not part of what the originator signed."""
    try:
        value = header(headers, PUBLISHED_MS)
    except HeaderError:
        return None
    if value is None or not value.isdigit() or len(value) > _MAX_MS_DIGITS:
        return None
    return int(value)
