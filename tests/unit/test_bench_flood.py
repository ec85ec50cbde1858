"""The flood phase's pure helpers: the junk mix, its outcomes, counters and small figures."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from bench.exchange import build_exchange
from bench.flood import matches, ratio, times
from bench.junk import (
    CLOCK_SKEW,
    DUPLICATE,
    ORPHAN,
    UNKNOWN_AGENCY,
    build_flood,
    dump_records,
    expected_outcomes,
    junk_kinds,
    load_records,
)
from bench.memory import rss_mib
from bench.plan import Plan
from bench.scrape import TrustCounters, parse_trust
from broker.metrics import RouterMetrics
from broker.trust_state import Outcome, TrustLimits, TrustState
from schemas.envelope import open_event


def test_junk_mix_is_two_orphans_in_five_and_one_of_each_other() -> None:
    kinds = Counter(junk_kinds(100))
    assert kinds == {ORPHAN: 40, UNKNOWN_AGENCY: 20, DUPLICATE: 20, CLOCK_SKEW: 20}
    assert expected_outcomes(100) == {
        "held": 40,
        "rejected unknown_agency": 20,
        "rejected clock_skew": 20,
        "ignored duplicate": 19,
        "counted": 1,
    }
    assert expected_outcomes(3) == {
        "held": 2,
        "rejected unknown_agency": 1,
        "rejected clock_skew": 0,
        "ignored duplicate": 0,
        "counted": 0,
    }


def test_the_router_state_makes_of_the_junk_what_the_mix_predicts(tmp_path: Path) -> None:
    ex = build_exchange(tmp_path, "f100d000")
    reporter = ex.agency("cr-msp")
    flood = build_flood(ex, reporter, 60, ex.origins[:3], ex.agency("gt-pnc"))
    bounds: Counter[str] = Counter()
    limits = TrustLimits(orphans_per_reporter=5)
    state = TrustState(ex.policy, ex.registry.ids, limits, on_bound=lambda b: bounds.update([b]))
    seen: Counter[str] = Counter()
    now = datetime.now(UTC)
    for record in flood.records:
        event, signed = open_event(ex.directory, record.value, record.headers, at=now)
        assert signed.origin == event.reporter == reporter
        folded = state.event(event, now, now)
        if folded.outcome in {Outcome.REJECTED, Outcome.IGNORED}:
            seen[f"{folded.outcome.value} {folded.reason}"] += 1
        else:
            seen[folded.outcome.value] += 1
    assert state.orphans() == 5
    assert bounds == {"orphans": seen["held"] - 5}
    assert matches(dict(seen), flood.expected)


def test_records_survive_the_file_to_the_writer(tmp_path: Path) -> None:
    ex = build_exchange(tmp_path, "f100d001")
    flood = build_flood(ex, ex.agency("cr-msp"), 7, ex.origins[:2], ex.agency("gt-pnc"))
    path = tmp_path / "flood.jsonl"
    dump_records(flood.records, path)
    assert load_records(path) == [(r.key, r.value, r.headers) for r in flood.records]


def test_trust_counters_from_metrics_and_health_and_their_difference() -> None:
    metrics = RouterMetrics()
    before = parse_trust(generate_latest(metrics.registry).decode(), {"trust_orphans": 2})
    metrics.trust_events_rejected.labels("clock_skew").inc(3)
    metrics.trust_events_rejected.labels("unknown_agency").inc(4)
    metrics.trust_events_ignored.labels("duplicate").inc(5)
    metrics.trust_events.labels("INCIDENT_MISHANDLING").inc()
    metrics.trust_bounds_hit.labels("orphans").inc(6)
    metrics.trust_bounds_hit.labels("deadletter_queue").inc(2)
    after = parse_trust(generate_latest(metrics.registry).decode(), {"trust_orphans": 10})
    seen = after - before
    assert seen.held == 8 + 6
    assert seen.read == 3 + 4 + 5 + 1 + 14  # bounds other than orphans are not events
    assert seen.outcomes() == {
        "held": 14,
        "rejected clock_skew": 3,
        "rejected unknown_agency": 4,
        "ignored duplicate": 5,
        "counted": 1,
    }
    assert seen.bounds == {"deadletter_queue": 2, "orphans": 6}
    assert parse_trust("", {}) == TrustCounters()


def test_small_figures() -> None:
    assert ratio(30.0, 10.0) == 3.0
    assert ratio(None, 10.0) is None
    assert ratio(5.0, 0.0) is None
    assert times(1.5) == "x1.50"
    assert times(None) == "—"
    assert matches({"held": 2, "counted": 0}, {"held": 2})
    assert not matches({"held": 2, "counted": 1}, {"held": 2})
    own = rss_mib(os.getpid())
    assert own is None or own > 1
    assert rss_mib(None) is None


def test_flood_plan_and_its_overrides() -> None:
    quick, standard = Plan.quick(), Plan.standard()
    assert quick.flood_events < standard.flood_events == 100_000
    plan = standard.with_overrides(bulletins=None, rate=10.0, profile_router=False,
                                   flood_events=500)  # fmt: skip
    assert (plan.flood_events, plan.flood_rate, plan.rate) == (500, 10.0, 10.0)
    assert plan.flood_fixed_count == 10 * plan.flood_seconds
    with pytest.raises(ValueError, match="flood-events"):
        standard.with_overrides(bulletins=None, rate=None, profile_router=False, flood_events=0)
