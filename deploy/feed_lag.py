"""Feed lag from the broker's side (pure): committed group offsets against the feeds' ends.

A partner consumer reports its own lag, but a dead consumer reports nothing. The broker still
knows where the partner's group committed and where each feed ends, so lag measured from there
keeps growing while the partner is gone. Only offsets are needed (Describe, never Read): the
operator sees how much waits, not what.

``lag_records``: per partition, the last stable offset (what a read_committed consumer can
reach) minus the committed offset; a group with no commit yet counts from the log start.
``lag_seconds``: how long the oldest record still waiting has waited, derived without reading
it: each observation remembers when each end offset was first seen, and the age of the first
unconsumed offset is the age of the earliest observation that had already passed it. Its
precision is the observation interval, and it restarts from zero when the exporter restarts
(an underestimate, never an overestimate).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PartitionOffsets:
    log_start: int
    end: int  # last stable offset
    committed: int | None  # None: the group never committed on this partition

    @property
    def position(self) -> int:
        return max(self.log_start, self.committed if self.committed is not None else 0)

    @property
    def lag(self) -> int:
        return max(0, self.end - self.position)


@dataclass
class _Seen:
    """When end offsets were first observed on one partition: (time, end), oldest first."""

    marks: deque[tuple[float, int]] = field(default_factory=deque)

    def observe(self, now: float, end: int) -> None:
        if not self.marks or end > self.marks[-1][1]:
            self.marks.append((now, end))

    def waiting_since(self, position: int) -> float | None:
        """The time of the first observation whose end passed ``position``; older marks that
        ``position`` has passed are dropped (they can never matter again)."""
        while len(self.marks) > 1 and self.marks[1][1] <= position:
            self.marks.popleft()
        for at, end in self.marks:
            if end > position:
                return at
        return None


@dataclass(frozen=True)
class FeedLag:
    agency: str
    records: int
    seconds: float


class LagTracker:
    """Observations over time, per (agency, partition); ``observe`` returns each feed's lag."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], _Seen] = {}

    def observe(
        self, now: float, agency: str, partitions: Mapping[int, PartitionOffsets]
    ) -> FeedLag:
        records = 0
        oldest: float | None = None
        for partition, offsets in partitions.items():
            seen = self._seen.setdefault((agency, partition), _Seen())
            seen.observe(now, offsets.end)
            if offsets.lag == 0:
                continue
            records += offsets.lag
            since = seen.waiting_since(offsets.position)
            if since is not None and (oldest is None or since < oldest):
                oldest = since
        seconds = now - oldest if oldest is not None else 0.0
        return FeedLag(agency, records, seconds)
