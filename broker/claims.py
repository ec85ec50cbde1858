"""Claims are bounded: how much a partner's word about itself may add to its score over time.

Feedback that a bulletin was actioned or useful is the partner's own claim, not something the
router observes; left unbounded, a partner that claims ``actioned`` on everything it receives
buys a classification in a minute. Each directed pair (O, P) has a token bucket, in
pseudo-events at the claims' current weights::

    tokens(t) = min(burst, tokens(t0) + rate_per_day * (t - t0) / 1 day)     (empty at first)
    a claim of weight w counts for  f = min(1, tokens / w)  events, and spends  f * w

so claims add at most ``burst + rate_per_day * days`` pseudo-events over any stretch of time.
The bucket is dated by the router's observation of each claim (never the claimed time), so
a partner cannot fill it by back-dating. The policy loader refuses a ``burst`` that would lift a
fresh partner of any agreement past the next classification (``broker.policy_rules``).
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.evidence import DAY

Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    as_of: float  # POSIX seconds
    fresh: bool = False  # opened, no claim spent yet

    def at(self, ts: float, rate_per_day: float, burst: float) -> Bucket:
        if ts <= self.as_of:
            return self
        filled = self.tokens + rate_per_day * (ts - self.as_of) / DAY
        return Bucket(min(burst, filled), ts)


class ClaimBudget:
    """One bucket per directed pair; :meth:`spend` says how much of a claim counts."""

    def __init__(self, rate_per_day: float, burst: float) -> None:
        self.rate_per_day = rate_per_day
        self.burst = burst
        self._buckets: dict[Pair, Bucket] = {}

    def open(self, pair: Pair, at: float) -> None:
        """Start the pair's bucket, empty, at the pair's first release: honest and eager
        claimers then accrue from the same moment. Until a claim spends from it, an earlier
        release read later moves the start back, so the start does not depend on the order
        history is read in."""
        current = self._buckets.get(pair)
        if current is None or (current.fresh and at < current.as_of):
            self._buckets[pair] = Bucket(0.0, at, fresh=True)

    def spend(self, pair: Pair, weight: float, at: float) -> float:
        """The fraction (0..1) of one claim of ``weight`` that counts at ``at``; spends it."""
        if weight <= 0.0:
            return 1.0  # weightless: it adds nothing whatever it counts for
        current = self._buckets.get(pair) or Bucket(0.0, at)
        current = current.at(at, self.rate_per_day, self.burst)
        fraction = min(1.0, current.tokens / weight)
        self._buckets[pair] = Bucket(current.tokens - fraction * weight, current.as_of)
        return fraction

    def tokens(self, pair: Pair, at: float) -> float:
        current = self._buckets.get(pair)
        if current is None:
            return 0.0
        return current.at(at, self.rate_per_day, self.burst).tokens

    def buckets(self) -> dict[Pair, Bucket]:
        return dict(self._buckets)

    def load(self, buckets: dict[Pair, Bucket]) -> None:
        self._buckets = dict(buckets)
