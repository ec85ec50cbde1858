"""Time as the exchange sees it: the admission window and the drills' skewed clocks.

The window is defined once here because three parties must agree on it: the router admits a
bulletin only if its ``issued_at`` lies within it of the router's clock, the publisher refuses
to send what the router would dead-letter, and the outbound topics carry it as the broker's
bound on record timestamps (``message.timestamp.after.max.ms``/``before.max.ms``), so a
publisher whose clock is off by more is refused by Kafka itself (``INVALID_TIMESTAMP``).

:func:`offset_clock` is for fault drills (``ENLACE_FAULT_CLOCK_OFFSET_S``): a component's
notion of now shifted by a fixed offset, without faking the operating system's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]

# How far ahead of the router's clock a bulletin may be issued (a little clock drift between
# agencies) and how old it may be (an agency offline for days publishes its backlog).
MAX_FUTURE = timedelta(minutes=5)
MAX_PAST = timedelta(days=7)
# A drill's offset is bounded: beyond a year it is a typo, not a skew.
MAX_DRILL_OFFSET_S = 366 * 86_400.0


def outside_window(
    issued_at: datetime,
    now: datetime,
    max_future: timedelta = MAX_FUTURE,
    max_past: timedelta = MAX_PAST,
) -> str | None:
    """``"ahead"`` if ``issued_at`` is more than ``max_future`` after ``now``, ``"behind"`` if
    more than ``max_past`` before it, else None: the one comparison the router's admission and
    the publisher's refusal both make, so they cannot drift apart."""
    if issued_at > now + max_future:
        return "ahead"
    if issued_at < now - max_past:
        return "behind"
    return None


def utc_now() -> datetime:
    return datetime.now(UTC)


def offset_clock(clock: Clock, offset_s: float) -> Clock:
    """``clock`` shifted by ``offset_s`` seconds (negative: behind). Zero returns ``clock``
    itself, so a production component runs on exactly the clock it was given."""
    if not offset_s:
        return clock
    if abs(offset_s) > MAX_DRILL_OFFSET_S:
        raise ValueError(f"clock offset {offset_s:g} s is over a year")
    shift = timedelta(seconds=offset_s)

    def skewed() -> datetime:
        return clock() + shift

    return skewed


def to_millis(at: datetime) -> int:
    """A Kafka record timestamp (ms since the epoch) for ``at``."""
    return int(at.timestamp() * 1000)
