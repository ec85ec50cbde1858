"""Broker-side feed lag: records from offsets, seconds from observations (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from deploy.feed_lag import LagTracker, PartitionOffsets


def test_a_group_that_never_committed_counts_from_the_log_start() -> None:
    assert PartitionOffsets(log_start=10, end=25, committed=None).lag == 15
    assert PartitionOffsets(log_start=10, end=25, committed=3).lag == 15  # retention moved on
    assert PartitionOffsets(log_start=0, end=25, committed=25).lag == 0


def test_a_dead_consumer_s_lag_keeps_growing_in_records_and_seconds() -> None:
    tracker = LagTracker()
    lags = []
    for step in range(6):
        end = 100 + 10 * step
        offsets = {0: PartitionOffsets(0, end, committed=100), 1: PartitionOffsets(0, 5, 5)}
        lags.append(tracker.observe(15.0 * step, "cr-msp", offsets))
    assert [lag.records for lag in lags] == [0, 10, 20, 30, 40, 50]
    # The first record past offset 100 was first seen at t=15.
    assert [lag.seconds for lag in lags] == [0.0, 0.0, 15.0, 30.0, 45.0, 60.0]


def test_catching_up_brings_the_age_down_to_the_oldest_still_waiting() -> None:
    tracker = LagTracker()
    for step, end in enumerate((10, 20, 30)):
        tracker.observe(10.0 * step, "a", {0: PartitionOffsets(0, end, committed=0)})
    caught_up = tracker.observe(30.0, "a", {0: PartitionOffsets(0, 30, committed=15)})
    assert caught_up.records == 15
    assert caught_up.seconds == 20.0  # offset 15 arrived between t=10 and t=20: seen at 20
    done = tracker.observe(40.0, "a", {0: PartitionOffsets(0, 30, committed=30)})
    assert (done.records, done.seconds) == (0, 0.0)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=30))
def test_lag_is_never_negative_and_the_age_never_exceeds_the_watch(
    steps: list[tuple[int, int]],
) -> None:
    tracker = LagTracker()
    end = committed = 0
    for n, (grow, consume) in enumerate(steps):
        end += grow
        committed = min(end, committed + consume)
        lag = tracker.observe(float(n), "a", {0: PartitionOffsets(0, end, committed)})
        assert lag.records == end - committed
        assert 0.0 <= lag.seconds <= n
        assert (lag.records == 0) <= (lag.seconds == 0.0)
