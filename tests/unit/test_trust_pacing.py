"""Reading history in time order: which partitions the trust feed holds back, and never all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from broker.policy import Policy
from broker.trust_state import TrustState
from broker.trust_view import AUDIT_LEAD, TrustFeed
from enlace.core.settings import KafkaSettings
from enlace.core.topics import AUDIT
from schemas.key_directory import KeyDirectory

T0 = datetime(2026, 3, 1, tzinfo=UTC)
AUDIT_TPS = [TopicPartition(AUDIT, p) for p in range(3)]
EVENT_TPS = [TopicPartition("enlace.receipts.cr-msp", p) for p in range(3)]


def feed() -> TrustFeed:
    state = TrustState(Policy.model_validate({}))
    return TrustFeed(
        KafkaSettings(), state, KeyDirectory(), receipt_topics=["enlace.receipts.cr-msp"]
    )


def test_receipts_wait_for_the_audit_topic_to_start_and_then_follow_it() -> None:
    f = feed()
    behind = AUDIT_TPS + EVENT_TPS
    assert f._pace(behind) == set(EVENT_TPS)
    f._last_at.update(dict.fromkeys(AUDIT_TPS, T0))
    f._last_at[EVENT_TPS[0]] = T0 + timedelta(minutes=1)
    assert f._pace(behind) == {EVENT_TPS[0]}
    f._last_at.update(dict.fromkeys(EVENT_TPS, T0 - 2 * AUDIT_LEAD))
    assert f._pace(behind) == set(AUDIT_TPS)


offsets = st.one_of(st.none(), st.integers(-10_000, 10_000))


@given(st.lists(offsets, min_size=6, max_size=6), st.lists(st.booleans(), min_size=6, max_size=6))
def test_never_every_partition_behind_is_held(times: list[int | None], behind: list[bool]) -> None:
    f = feed()
    tps = AUDIT_TPS + EVENT_TPS
    for tp, minutes in zip(tps, times, strict=True):
        if minutes is not None:
            f._last_at[tp] = T0 + timedelta(minutes=minutes)
    lagging = [tp for tp, b in zip(tps, behind, strict=True) if b]
    held = f._pace(lagging)
    assert held <= set(lagging)
    if lagging:
        assert held != set(lagging), "reading would stop"
