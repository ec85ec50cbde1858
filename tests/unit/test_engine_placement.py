"""The engine places each output where aiokafka's default partitioner would (hashing a key
once per batch): keyed, compacted topics must keep every key on one partition."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from broker.engine import OutRecord, _Placement


def producer_with(partitions: dict[str, set[int]]) -> Any:
    cluster = SimpleNamespace(partitions_for_topic=partitions.get)
    return SimpleNamespace(client=SimpleNamespace(cluster=cluster))


@given(
    st.lists(st.binary(min_size=0, max_size=64), min_size=1, max_size=30),
    st.integers(1, 64),
)
def test_same_partition_as_the_default_partitioner(keys: list[bytes], count: int) -> None:
    partitions = set(range(count))
    place = _Placement(producer_with({"t": partitions}))
    for key in keys:
        expected = DefaultPartitioner()(key, list(partitions), list(partitions))
        assert place(OutRecord("t", b"v", key)) == expected
        assert place(OutRecord("t", b"v", key)) == expected, "a cached hash places the same"


def test_unkeyed_records_and_unknown_topics_are_left_to_the_client() -> None:
    place = _Placement(producer_with({"t": {0, 1}}))
    assert place(OutRecord("t", b"v", None)) is None
    assert place(OutRecord("unknown", b"v", b"k")) is None
