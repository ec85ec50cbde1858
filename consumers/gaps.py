"""Feed gaps: releases the broker's retention deleted before this partner read them.

A partner that stays offline longer than its feed's retention (or a new partner whose feed's
start already expired) would, with Kafka's ``auto_offset_reset=earliest``, silently jump to
the log start. The consumer instead asks Kafka to fail the fetch (``auto_offset_reset=none``),
and :func:`resume_after_out_of_range` decides, from the offset it wanted and the partition's
log start, where to resume and which offsets expired unread. Pure: no I/O, ``now`` passed in.

Offsets are not releases: in a transactional feed every commit marker takes an offset, so
``missed`` is an upper bound on the releases lost, never an undercount. Marker holes during
normal reading never reach this module: the consumer only asks when Kafka refused the offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class FeedGap:
    """Offsets ``[from_offset, to_offset)`` of one feed partition, expired before being read."""

    topic: str
    partition: int
    from_offset: int
    to_offset: int
    detected_at: datetime

    def __post_init__(self) -> None:
        if not 0 <= self.from_offset < self.to_offset:
            raise ValueError(f"empty or negative gap {self.from_offset}-{self.to_offset}")

    @property
    def missed(self) -> int:
        """Offsets lost: an upper bound on releases (commit markers take offsets too)."""
        return self.to_offset - self.from_offset

    @property
    def key(self) -> tuple[str, int, int, int]:
        return (self.topic, self.partition, self.from_offset, self.to_offset)

    def describe(self) -> str:
        """``enlace.feed.cr-msp p0 offsets 0-120 expired unread`` (``to`` exclusive)."""
        return (
            f"{self.topic} p{self.partition} offsets {self.from_offset}-{self.to_offset} "
            "expired unread"
        )


@dataclass(frozen=True)
class Resume:
    """Where to read next after Kafka refused an offset, and the gap that leaves (if any)."""

    position: int
    gap: FeedGap | None


def resume_after_out_of_range(
    topic: str, partition: int, *, wanted: int | None, log_start: int, now: datetime
) -> Resume:
    """Kafka refused ``wanted`` (``None``: the group never committed on this partition, so a
    first read starts at offset 0). Resume at the log start; everything from ``wanted`` up to
    it expired unread. A refused offset at or past the log start is not an expiry (the log was
    truncated after an unclean leader election, or the end moved back): re-read from the start,
    which the store turns into no-ops, and report no gap."""
    if log_start < 0:
        raise ValueError(f"log start {log_start} < 0")
    start = 0 if wanted is None else max(0, wanted)
    if start >= log_start:
        return Resume(position=log_start, gap=None)
    return Resume(
        position=log_start,
        gap=FeedGap(topic, partition, start, log_start, now),
    )


def uncovered(gap: FeedGap, known: Iterable[tuple[int, int]]) -> list[FeedGap]:
    """The parts of ``gap`` no ``known`` interval ``[from, to)`` of the same partition covers.

    A consumer restarted before it could commit past a gap sees it again, possibly grown (the
    log start moved on): only the new part is reported, so the same offsets never count twice.
    """
    pieces: list[tuple[int, int]] = [(gap.from_offset, gap.to_offset)]
    for lo, hi in known:
        if lo >= hi:
            continue
        next_pieces: list[tuple[int, int]] = []
        for a, b in pieces:
            if hi <= a or lo >= b:
                next_pieces.append((a, b))
                continue
            if a < lo:
                next_pieces.append((a, lo))
            if hi < b:
                next_pieces.append((hi, b))
        pieces = next_pieces
    return [FeedGap(gap.topic, gap.partition, a, b, gap.detected_at) for a, b in sorted(pieces)]


def total_missed(gaps: Sequence[FeedGap]) -> int:
    return sum(g.missed for g in gaps)


__all__ = ["FeedGap", "Resume", "resume_after_out_of_range", "total_missed", "uncovered"]
