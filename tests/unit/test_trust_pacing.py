"""Reading history in time order: the trust feed's merge of per-partition buffers."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from broker.trust_view import _Merge
from enlace.core.topics import AUDIT

RECEIPTS = "enlace.receipts.cr-msp"
TPS = [TopicPartition(AUDIT, 0), TopicPartition(AUDIT, 1),
       TopicPartition(RECEIPTS, 0), TopicPartition(RECEIPTS, 1)]  # fmt: skip


@dataclass(frozen=True)
class FakeRecord:
    timestamp: int
    offset: int


logs = st.lists(st.lists(st.integers(0, 50), max_size=12).map(sorted), min_size=4, max_size=4)


@given(logs, st.lists(st.tuples(st.integers(0, 3), st.integers(1, 5)), max_size=60))
def test_records_come_out_in_time_order_however_fetches_interleave(
    partitions: list[list[int]], fetches: list[tuple[int, int]]
) -> None:
    merge = _Merge(AUDIT)
    fetched = [0] * len(TPS)
    out: list[tuple[int, bool]] = []

    def unfetched() -> set[TopicPartition]:
        return {tp for i, tp in enumerate(TPS) if fetched[i] < len(partitions[i])}

    def fetch(i: int, n: int) -> None:
        chunk = partitions[i][fetched[i] : fetched[i] + n]
        merge.add({TPS[i]: [FakeRecord(t, fetched[i] + k) for k, t in enumerate(chunk)]})
        fetched[i] += len(chunk)

    def drain() -> None:
        out.extend((r.timestamp, topic != AUDIT) for topic, r in merge.ready(unfetched()))

    for i, n in fetches:
        fetch(i, n)
        drain()
    while unfetched() or not merge.empty():
        for i in range(len(TPS)):  # the feed keeps fetching until every partition is read
            fetch(i, 3)
        drain()
    assert len(out) == sum(len(p) for p in partitions)
    assert out == sorted(out), "folded out of time order"
