"""Live statistics of a demo run: rates over a sliding window, latency percentiles, the
decisions of the leak pair before and after the leak. Pure (times are passed in)."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from schemas.vocab import Classification


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, ``q`` in [0, 100]; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Rate:
    """Events per second over the last ``window`` seconds."""

    window: float = 5.0
    _times: deque[float] = field(default_factory=deque)
    total: int = 0

    def add(self, now: float, count: int = 1) -> None:
        self.total += count
        self._times.extend([now] * count)
        self._trim(now)

    def per_second(self, now: float) -> float:
        self._trim(now)
        return len(self._times) / self.window

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()


# A fresh leak adds its weight (16 pseudo-events by default); old ones fade over months.
LEAK_SEEN = 1.0


@dataclass
class LeakWatch:
    """Decisions and scores of the (originator → partner) pair around the leak."""

    originator: str
    partner: str
    leaked_at: float | None = None  # wall-clock seconds since epoch
    before: Counter[str] = field(default_factory=Counter)
    after: Counter[str] = field(default_factory=Counter)
    scores_before: list[float] = field(default_factory=list)
    scores_after: list[float] = field(default_factory=list)
    full_ranks_after: list[int] = field(default_factory=list)
    full_ranks_before: list[int] = field(default_factory=list)
    leak_weight_before: float = 0.0

    def observe(
        self,
        decided_at: float,
        decision: str,
        score: float | None,
        cls: Classification | None,
        *,
        leak_weight: float = 0.0,
    ) -> None:
        """``leak_weight``: the pseudo-events of the decision's ``incident_leak`` factor. A
        decision counts as after the leak once its score holds this leak (more leak weight than
        any decision before the report: a broker may hold earlier runs' leaks); one scored after
        the report but before the router folded it is "before", since the router decides on
        what it has read and that read is asynchronous."""
        reported = self.leaked_at is not None and decided_at >= self.leaked_at
        if not reported:
            self.leak_weight_before = max(self.leak_weight_before, leak_weight)
        counted = leak_weight > self.leak_weight_before + LEAK_SEEN
        after = reported and (counted or score is None)
        (self.after if after else self.before)[decision] += 1
        if score is not None:
            (self.scores_after if after else self.scores_before).append(score)
        if decision == "FULL" and cls is not None:
            (self.full_ranks_after if after else self.full_ranks_before).append(cls.rank)

    def score_drop(self) -> float | None:
        if not self.scores_before or not self.scores_after:
            return None
        return self.scores_before[-1] - self.scores_after[0]
