"""TAXII timestamps as integer microseconds since the epoch (pure).

The index keys ``date_added`` and versions as integers: comparisons and keyset pages are
integer compares, and a timestamp's text form is made only for what a response shows.
TAXII 2.1 timestamps are RFC 3339 in UTC (``Z``); more than six fractional digits are
truncated, which keeps ``added_after`` exact (an object added at ``.123456`` is not after
``.123456789``: neither before nor after truncation).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339_UTC = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z", re.ASCII
)


def to_us(value: datetime) -> int:
    delta = value.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_us(text: str) -> int:
    """``text`` (RFC 3339, UTC) as microseconds; ValueError says what is wrong."""
    match = _RFC3339_UTC.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an RFC 3339 UTC timestamp (like 2026-05-01T12:00:00Z)")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = (match.group(7) or "").ljust(6, "0")[:6]
    try:
        moment = datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid date and time: {exc}") from exc
    return to_us(moment)


def format_us(us: int) -> str:
    """Fixed-width RFC 3339 with microseconds, the form every ``date_added`` takes."""
    moment = EPOCH + timedelta(microseconds=us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
