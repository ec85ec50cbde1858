"""The publisher's clock checks (pure): refuse what the exchange would not admit for its time.

Two checks, both ending in :class:`~enlace.core.errors.ClockSkewRefused`:

- before sending, a bulletin's ``issued_at`` against the publisher's clock and the router's
  admission window (:func:`issued_at_refusal`): the router would dead-letter it ``clock_skew``;
- after sending, the broker's refusal of the record's timestamp (:func:`timestamp_refusal`):
  the publisher stamps each record with its own clock and the outbound topics bound record
  timestamps to the same window (``message.timestamp.after.max.ms``/``before.max.ms``), so
  Kafka answers ``INVALID_TIMESTAMP`` when the publisher's own clock is off by more. That is
  how a publisher learns its clock is wrong: it has no other reference it can trust.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aiokafka.errors import InvalidTimestampError

from enlace.core.clock import MAX_FUTURE, MAX_PAST, outside_window
from enlace.core.errors import ClockSkewRefused

ISSUED_IN_FUTURE = "issued_in_future"
ISSUED_TOO_OLD = "issued_too_old"
CLOCK_OFF = "clock_off"


@dataclass(frozen=True, slots=True)
class Window:
    """The router's admission window for ``issued_at`` (its ``max_future``/``max_past``)."""

    max_future: timedelta = MAX_FUTURE
    max_past: timedelta = MAX_PAST


def issued_at_refusal(
    bulletin_id: str, issued_at: datetime, now: datetime, window: Window
) -> ClockSkewRefused | None:
    """The refusal the router's clock check (admission step 9) would make at ``now``, or None.
    Same bounds, same strictness: the publisher refuses exactly what the router would."""
    skew = outside_window(issued_at, now, window.max_future, window.max_past)
    if skew == "ahead":
        return ClockSkewRefused(
            f"bulletin {bulletin_id}: issued_at {issued_at.isoformat()} is more than "
            f"{window.max_future} after this publisher's clock ({now.isoformat()}); "
            "the router would dead-letter it (clock_skew)",
            ISSUED_IN_FUTURE,
        )
    if skew == "behind":
        return ClockSkewRefused(
            f"bulletin {bulletin_id}: issued_at {issued_at.isoformat()} is more than "
            f"{window.max_past} before this publisher's clock ({now.isoformat()}); "
            "the router would dead-letter it (clock_skew)",
            ISSUED_TOO_OLD,
        )
    return None


def timestamp_refusal(
    bulletin_id: str, error: BaseException, stamped: datetime
) -> ClockSkewRefused | None:
    """The typed refusal for the broker's ``INVALID_TIMESTAMP`` answer to a record stamped
    ``stamped`` (this publisher's clock), or None for any other error."""
    if not isinstance(error, InvalidTimestampError):
        return None
    return ClockSkewRefused(
        f"bulletin {bulletin_id}: the broker refused the record's timestamp "
        f"{stamped.isoformat()} (INVALID_TIMESTAMP): this host's clock is off by more than "
        "the exchange's admission window; fix its time (NTP), then re-send",
        CLOCK_OFF,
    )
