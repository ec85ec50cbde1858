"""Feed records as the router writes them, built from a sealed bulletin (tests, demo, bench).

The router's contract: key = bulletin id; value = the originator's full bytes or its tearline
bytes; ``enlace-sig`` = the originator's signature over exactly that value;
``enlace-release`` = ``full`` | ``tearline``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from consumers.records import Release
from schemas import headers as hdr
from schemas.envelope import Sealed


@dataclass(frozen=True)
class FeedMessage:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def feed_message(
    sealed: Sealed, release: Release | str, *, published_ms: int | None = None
) -> FeedMessage:
    """The feed record releasing ``sealed`` as ``release``; ``published_ms`` (default: now)
    is the router's ``enlace-published-ms``."""
    release = Release(release)
    signed = hdr.SignedHeaders.parse(sealed.headers)
    if release is Release.FULL:
        value, sig = sealed.value, signed.sig
    else:
        if signed.sig_tearline is None:
            raise ValueError("sealed bulletin has no tearline signature")
        value, sig = sealed.tearline_value, signed.sig_tearline
    published = published_ms if published_ms is not None else int(time.time() * 1000)
    headers = hdr.build(
        origin=signed.origin,
        key_id=signed.key_id,
        sig=sig,
        release=release.value,
        published_ms=published,
    )
    return FeedMessage(sealed.key, value, headers)
