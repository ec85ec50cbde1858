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

    def observe(
        self, decided_at: float, decision: str, score: float | None, cls: Classification | None
    ) -> None:
        after = self.leaked_at is not None and decided_at >= self.leaked_at
        (self.after if after else self.before)[decision] += 1
        if score is not None:
            (self.scores_after if after else self.scores_before).append(score)
        if decision == "FULL" and cls is not None:
            (self.full_ranks_after if after else self.full_ranks_before).append(cls.rank)

    def score_drop(self) -> float | None:
        if not self.scores_before or not self.scores_after:
            return None
        return self.scores_before[-1] - self.scores_after[0]
