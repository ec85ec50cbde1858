"""The history phase's generator (``bench.history``): exact counts, every receipt and feedback
about a release to its reporter, times inside the window, and the log marks of a start-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.exchange import Exchange, build_exchange
from bench.history import (
    DAY_MS,
    DAYS,
    ON_TIME_MAX_MS,
    Counts,
    History,
    plan_history,
)
from bench.history_phase import log_marks, parse_sizes, routed_line, scores_of
from bench.history_writer import jobs, partition_of
from consumers.receipts import receipt_event_id
from enlace.core.topics import AUDIT, receipts
from schemas.vocab import ReleaseKind, TrustEventKind

END = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BULLETIN_KINDS = {
    TrustEventKind.RECEIPT,
    TrustEventKind.FEEDBACK_ACTIONED,
    TrustEventKind.FEEDBACK_USEFUL,
    TrustEventKind.FEEDBACK_NOT_USEFUL,
}


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Exchange:
    return build_exchange(Path(tmp_path_factory.mktemp("history")), "0123abcd")


def history_of(exchange: Exchange, count: int, seed: int = 14) -> History:
    return plan_history(exchange.policy, exchange.registry.ids, count, END, seed=seed)


@given(st.integers(min_value=0, max_value=5_000_000))
def test_counts_add_up_to_the_size(count: int) -> None:
    counts = Counts.of(count)
    assert counts.on_time + counts.late + counts.feedback + counts.incidents == count
    assert min(counts.on_time, counts.late, counts.feedback, counts.incidents) >= 0
    assert counts.on_time + counts.late <= count  # at most one receipt per release


@settings(max_examples=15, deadline=None)
@given(count=st.integers(min_value=1, max_value=3_000), seed=st.integers(0, 2**32))
def test_history_is_consistent(exchange: Exchange, count: int, seed: int) -> None:
    history = history_of(exchange, count, seed)
    assert len(history.releases) == count
    assert history.event_count == count
    assert history.end_ms - history.start_ms == DAYS * DAY_MS
    released: dict[tuple[str, str, str | None], int] = {
        (r.origin, r.partner, r.bulletin_id): r.at_ms for r in history.releases
    }
    assert len(released) == count  # one release per (bulletin, partner)
    times = [r.at_ms for r in history.releases]
    assert times == sorted(times)
    assert all(history.start_ms <= t <= history.end_ms for t in times)
    assert {r.decision for r in history.releases} <= {k.value for k in ReleaseKind}
    assert all(r.origin != r.partner for r in history.releases)
    receipts = set()
    for reporter, events in history.events.items():
        arrivals = [e.arrival_ms for e in events]
        assert arrivals == sorted(arrivals)  # a topic's records in arrival order
        for e in events:
            assert e.reporter == reporter
            assert e.arrival_ms <= history.end_ms
            # The trust feed's skew rule: claimed shortly before the arrival, never after.
            assert e.arrival_ms - 60_000 <= e.occurred_ms <= e.arrival_ms
            if e.kind in BULLETIN_KINDS:
                at = released[e.subject, e.reporter, e.bulletin_id]  # released to the reporter
                assert at <= e.occurred_ms
            else:  # an incident: the originator about a partner it released to
                assert (e.reporter, e.subject, e.bulletin_id) in released
            if e.kind is TrustEventKind.RECEIPT:
                assert e.event_id == receipt_event_id(e.reporter, e.bulletin_id or "")
                receipts.add(e.event_id)
    assert len(receipts) == history.kinds()[TrustEventKind.RECEIPT]  # one per release at most


def test_ninety_per_cent_of_releases_have_a_receipt_on_time(exchange: Exchange) -> None:
    history = history_of(exchange, 20_000)
    released: dict[tuple[str, str, str | None], int] = {
        (r.origin, r.partner, r.bulletin_id): r.at_ms for r in history.releases
    }
    on_time = sum(
        1
        for events in history.events.values()
        for e in events
        if e.kind is TrustEventKind.RECEIPT
        and e.arrival_ms - released[e.subject, e.reporter, e.bulletin_id] <= ON_TIME_MAX_MS
    )
    # Late receipts of releases just before the end are clamped to it: a few more on time.
    assert Counts.of(20_000).on_time <= on_time < Counts.of(20_000).on_time + 50
    kinds = history.kinds()
    assert kinds[TrustEventKind.FEEDBACK_USEFUL] > 0
    assert sum(kinds[k] for k in kinds if k.value.startswith("INCIDENT")) == 12


def test_same_seed_same_history(exchange: Exchange) -> None:
    assert history_of(exchange, 500) == history_of(exchange, 500)


def test_partition_matches_the_java_partitioner() -> None:
    # Kafka's documented murmur2 vectors: key "21" → partition 16, "foobar" → 16 of 1000
    # (org.apache.kafka.common.utils.UtilsTest; toPositive(murmur2) % n).
    assert partition_of(b"21", 1000) == (-973932308 & 0x7FFFFFFF) % 1000
    assert all(0 <= partition_of(str(i).encode(), 3) < 3 for i in range(100))


def test_log_marks_are_seconds_after_launch() -> None:
    launched = (END - timedelta(seconds=10)).timestamp()
    text = "\n".join(
        [
            "not json",
            '{"event": "router_revoked", "timestamp": "2026-12-01T11:59:52.000000Z"}',
            '{"event": "router_started", "timestamp": "2026-12-01T11:59:55.500000Z"}',
            '{"event": "bulletin_routed", "timestamp": "2026-12-01T12:00:00.000000Z"}',
            '{"event": "bulletin_routed", "timestamp": "2026-12-01T12:00:09.000000Z"}',
        ]
    )
    assert log_marks(text, launched) == {
        "router_revoked": 2.0,
        "router_started": 5.5,
        "bulletin_routed": 10.0,
    }


def test_parse_sizes() -> None:
    assert parse_sizes("100000,1_000_000") == (100_000, 1_000_000)
    with pytest.raises(ValueError, match="positive"):
        parse_sizes("0")


def test_writer_jobs_cover_every_record_once(exchange: Exchange) -> None:
    history = history_of(exchange, 12_000)
    by_topic: dict[str, list[Any]] = {}
    for topic, _first, items in jobs(history):
        by_topic.setdefault(topic, []).extend(items)
    assert by_topic.pop(AUDIT) == history.releases
    assert by_topic == {receipts(r): events for r, events in history.events.items()}


def test_routed_line_finds_the_bulletins_decision() -> None:
    text = "\n".join(
        [
            '{"event": "router_started", "timestamp": "2026-12-01T12:00:00Z"}',
            (
                '{"bulletin_id": "b-1", "full": 0, "tearline": 0, "withheld": 10, '
                '"event": "bulletin_routed", "timestamp": "2026-12-01T12:00:01Z"}'
            ),
        ]
    )
    assert routed_line(text, "b-2") is None
    found = routed_line(text, "b-1")
    assert found is not None
    assert found["withheld"] == 10


def test_scores_of_reads_the_originators_gauges() -> None:
    text = (
        "# HELP enlace_trust_score Current directed trust score, originator towards partner.\n"
        "# TYPE enlace_trust_score gauge\n"
        'enlace_trust_score{originator="a",partner="b"} 0.7123\n'
        'enlace_trust_score{originator="c",partner="a"} 0.5\n'
    )
    assert scores_of(text, "a") == {"b": 0.712}
