"""Pure statistics for the benchmark: percentiles, latency summaries and rates (no I/O)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, interpolating linearly between ranks.

    Same definition as numpy's default ("linear"), so p50 of two values is their mean.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile rank must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return ordered[low]
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


@dataclass(frozen=True)
class LatencySummary:
    """Latencies in milliseconds of the ``count`` messages that arrived."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "mean_ms": round(self.mean_ms, 3),
        }


def summarize_seconds(latencies_s: Iterable[float]) -> LatencySummary | None:
    """Summarize latencies given in seconds; None when nothing arrived."""
    values = [v * 1000.0 for v in latencies_s]
    if not values:
        return None
    return LatencySummary(
        count=len(values),
        p50_ms=percentile(values, 50),
        p99_ms=percentile(values, 99),
        max_ms=max(values),
        mean_ms=sum(values) / len(values),
    )


def latencies(sent: dict[bytes, float], received: dict[bytes, float]) -> list[float]:
    """Receipt minus send time of every key both sides saw (unmatched keys are ignored)."""
    return [received[key] - at for key, at in sent.items() if key in received]


def rate(count: int, seconds: float) -> float:
    """Events per second; 0 when no time passed (never divide by zero on a tiny run)."""
    if seconds <= 0.0:
        return 0.0
    return count / seconds


def due(rate_per_s: float, elapsed_s: float, already: int, limit: int) -> int:
    """How many items an open-loop sender at ``rate_per_s`` owes after ``elapsed_s``.

    Open loop: what is owed does not depend on how fast earlier sends were acknowledged,
    so a slow pipeline shows up as latency, not as a silently lower offered rate.
    """
    owed = min(limit, math.floor(rate_per_s * elapsed_s) + 1)
    return max(0, owed - already)
