"""Clock skew, the pure parts: the drills' offset clock, the publisher's refusal decision (the
same as the router's admission window), the broker's INVALID_TIMESTAMP made typed, the
counters, the CLI's one line and the outbound topics' timestamp bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.errors import InvalidTimestampError, KafkaTimeoutError
from hypothesis import given
from hypothesis import strategies as st

from broker.admission import CLOCK_SKEW, Limits, Refused, admit
from broker.settings import RouterSettings
from enlace.core.clock import MAX_FUTURE, MAX_PAST, offset_clock, to_millis
from enlace.core.errors import BulletinRefused, ClockSkewRefused, DeliveryError
from enlace.core.registry import Agency, Registry
from enlace.core.topics import exchange_topics
from producers.metrics import PublisherMetrics
from producers.produce import clock_skew_line
from producers.publisher import Publisher, PublishFailure, reason_of
from producers.settings import PublisherSettings
from producers.skew import (
    CLOCK_OFF,
    ISSUED_IN_FUTURE,
    ISSUED_TOO_OLD,
    Window,
    issued_at_refusal,
    timestamp_refusal,
)
from schemas.agency_key import AgencyKey
from schemas.envelope import seal
from schemas.key_directory import KeyDirectory
from tests.samples import bulletin_fields, sample_bulletin

PA = "pa-senafront"
BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
offsets = st.floats(min_value=-366 * 86_400.0, max_value=366 * 86_400.0, allow_nan=False)
# Whole milliseconds: the wire keeps issued_at to the millisecond, so the router compares those.
shifts = st.integers(min_value=-10 * 86_400_000, max_value=10 * 86_400_000).map(
    lambda ms: timedelta(milliseconds=ms)
)


@given(offsets)
def test_offset_clock_shifts_every_reading_by_the_offset(offset: float) -> None:
    readings = iter([BASE, BASE + timedelta(seconds=3)])
    clock = offset_clock(lambda: next(readings), offset)
    first, second = clock(), clock()
    assert first - BASE == timedelta(seconds=offset)
    assert second - first == timedelta(seconds=3), "the skewed clock still runs at real speed"


def test_no_offset_is_the_clock_itself_and_a_year_is_a_typo() -> None:
    def clock() -> datetime:
        return BASE

    assert offset_clock(clock, 0.0) is clock
    with pytest.raises(ValueError, match="over a year"):
        offset_clock(clock, 400 * 86_400.0)


@given(shifts)
def test_the_publisher_refuses_exactly_what_the_router_would(shift: timedelta) -> None:
    """issued_at = now + shift: the publisher's decision before sending equals the router's
    admission (step 9, clock_skew) of the same bulletin at the same now."""
    key = AgencyKey.generate(PA, valid_from=BASE - timedelta(days=30))
    bulletin = sample_bulletin(PA, issued_at=BASE + shift)
    sealed = seal(bulletin, key)
    admitted = admit(
        PA,
        sealed.value,
        sealed.headers,
        keys=KeyDirectory.from_keys([key]),
        limits=Limits(),
        received_at=BASE,
        now=BASE,
    )
    router_refuses = isinstance(admitted, Refused) and admitted.reason == CLOCK_SKEW
    refusal = issued_at_refusal(bulletin.bulletin_id, bulletin.issued_at, BASE, Window())
    assert (refusal is not None) == router_refuses
    if refusal is not None:
        assert refusal.reason == (ISSUED_IN_FUTURE if shift > MAX_FUTURE else ISSUED_TOO_OLD)
        assert isinstance(refusal, BulletinRefused)


def test_window_edges_are_admitted() -> None:
    window = Window()
    assert issued_at_refusal("b", BASE + MAX_FUTURE, BASE, window) is None
    assert issued_at_refusal("b", BASE - MAX_PAST, BASE, window) is None
    late = issued_at_refusal("b", BASE + MAX_FUTURE + timedelta(milliseconds=1), BASE, window)
    assert late is not None
    assert late.reason == ISSUED_IN_FUTURE


def test_only_the_brokers_invalid_timestamp_is_a_clock_refusal() -> None:
    refusal = timestamp_refusal("b", InvalidTimestampError(), BASE)
    assert refusal is not None
    assert refusal.reason == CLOCK_OFF
    assert "NTP" in str(refusal)
    assert timestamp_refusal("b", KafkaTimeoutError(), BASE) is None
    assert reason_of(refusal) == "clock_skew"
    assert reason_of(DeliveryError("x")) == "refused"


def test_refusals_are_counted_by_reason_with_a_bounded_label() -> None:
    metrics = PublisherMetrics(PA)
    metrics.clock_skew(CLOCK_OFF)
    metrics.clock_skew(ISSUED_IN_FUTURE)
    metrics.clock_skew("anything else")  # a bug must not mint a label
    reg = metrics.registry
    labels = {"agency": PA, "reason": CLOCK_OFF}
    assert reg.get_sample_value("enlace_publisher_clock_skew_refused_total", labels) == 2
    found = {
        s.labels["reason"]
        for m in reg.collect()
        if m.name == "enlace_publisher_clock_skew_refused"
        for s in m.samples
    }
    assert found == {ISSUED_IN_FUTURE, ISSUED_TOO_OLD, CLOCK_OFF}


def test_cli_says_it_in_one_line() -> None:
    off = PublishFailure("a", "clock_skew", ClockSkewRefused("x", CLOCK_OFF))
    early = PublishFailure("b", "clock_skew", ClockSkewRefused("y", ISSUED_IN_FUTURE))
    other = PublishFailure("c", "timeout", DeliveryError("z"))
    line = clock_skew_line([off, off, early, other])
    assert line is not None
    assert "\n" not in line
    assert line.startswith("clock skew: 3 bulletin(s) refused (clock_off 2, issued_in_future 1)")
    assert "clock is off" in line
    assert clock_skew_line([other]) is None


def test_a_publisher_two_hours_ahead_dates_and_refuses_by_its_own_clock() -> None:
    """With the drill's offset, issued_at defaults to the skewed now (so the broker will see
    the skew in the record timestamp), and a correctly dated bulletin looks 2 h old... which is
    inside the window; one dated 2 h ahead of the skewed clock is refused before sending."""
    settings = PublisherSettings(agency=PA, fault_clock_offset_s=7200.0)
    registry = Registry(agencies=(Agency(id=PA, name=PA, country="PA"),))
    key = AgencyKey.generate(PA, valid_from=BASE - timedelta(days=30))
    publisher = Publisher(settings, key=key, registry=registry, clock=lambda: BASE)
    publisher.load()
    now = publisher.clock()
    assert now == BASE + timedelta(hours=2)
    undated = {k: v for k, v in bulletin_fields(PA).items() if k != "issued_at"}
    bulletin, _ = publisher.seal(undated, now)
    assert bulletin.issued_at == now
    ahead = sample_bulletin(PA, issued_at=now + timedelta(hours=2))
    with pytest.raises(ClockSkewRefused) as refused:
        publisher.seal(ahead, now)
    assert refused.value.reason == ISSUED_IN_FUTURE


def test_router_settings_carry_the_drill_offset() -> None:
    assert RouterSettings().fault_clock_offset_s == 0.0
    assert RouterSettings(fault_clock_offset_s=-360).fault_clock_offset_s == -360.0


def test_outbound_topics_bound_record_timestamps_to_the_admission_window() -> None:
    made = exchange_topics([PA], partitions=3, replication=3, min_insync=2)
    specs = {s.name: dict(s.configs) for s in made}
    outbound = specs[f"enlace.outbound.{PA}"]
    window_ms = to_millis(BASE + MAX_FUTURE) - to_millis(BASE)
    assert outbound["message.timestamp.after.max.ms"] == str(window_ms)
    assert outbound["message.timestamp.before.max.ms"] == str(7 * 86_400_000)
    # Other topics keep Kafka's defaults: the router's own timestamps are not bounded here.
    assert "message.timestamp.after.max.ms" not in specs[f"enlace.feed.{PA}"]
