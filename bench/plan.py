"""How big a benchmark run is: counts, rate and time limits (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Plan:
    bulletins: int  # saturation count of the Enlace phases
    rate: float  # offered rate of every fixed-rate row (per second)
    seconds: float  # length of every fixed-rate row
    micro_iterations: int
    warm_up: int
    raw_factor: int = 10  # raw Kafka moves this many records per bulletin count
    copy_factor: int = 5
    partitions: int = 3
    drain_s: float = 60.0
    broker_warm_s: float = 45.0  # transactions at 100/s before the first measured row
    consumer_records: int = 20_000  # releases the partner consumer phase stores per sink
    taxii_objects: int = 100_000  # STIX objects the TAXII phase's store holds
    profile_router: bool = False
    # The flood phase (``--flood``): junk trust events from one partner, fixed-rate rows.
    flood_events: int = 100_000
    flood_rate: float = 20.0
    flood_seconds: float = 20.0  # baseline length, and the least the flood row lasts
    flood_deadline_s: float = 180.0  # most the router may take to fold the flood

    @classmethod
    def standard(cls) -> Plan:
        return cls(bulletins=3000, rate=50.0, seconds=12.0, micro_iterations=1000, warm_up=40)

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            bulletins=400, rate=50.0, seconds=4.0, micro_iterations=200, warm_up=12,
            broker_warm_s=5.0, consumer_records=2_000, taxii_objects=5_000,
            flood_events=10_000, flood_seconds=8.0, flood_deadline_s=60.0,
        )  # fmt: skip

    def with_overrides(
        self,
        *,
        bulletins: int | None,
        rate: float | None,
        profile_router: bool,
        flood_events: int | None = None,
    ) -> Plan:
        plan = replace(self, profile_router=profile_router)
        if flood_events is not None:
            if flood_events < 1:
                raise ValueError("--flood-events must be at least 1")
            plan = replace(plan, flood_events=flood_events)
        if bulletins is not None:
            if bulletins < 1:
                raise ValueError("--bulletins must be at least 1")
            plan = replace(plan, bulletins=bulletins)
        if rate is not None:
            if rate <= 0:
                raise ValueError("--rate must be positive")
            plan = replace(plan, rate=rate, flood_rate=rate)
        return plan

    @property
    def fixed_count(self) -> int:
        """Records offered by each fixed-rate row."""
        return max(1, math.ceil(self.rate * self.seconds))

    @property
    def flood_fixed_count(self) -> int:
        """Bulletins of the flood phase's baseline row."""
        return max(1, math.ceil(self.flood_rate * self.flood_seconds))

    @property
    def raw_count(self) -> int:
        return self.bulletins * self.raw_factor

    @property
    def copy_count(self) -> int:
        return self.bulletins * self.copy_factor

    def flat_drain_s(self, count: int, slowest_per_s: float) -> float:
        """Time to allow a flat-out phase of ``count`` at a pessimistic ``slowest_per_s``."""
        return max(self.drain_s, count / slowest_per_s)
