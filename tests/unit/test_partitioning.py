"""The word-at-a-time murmur2 is Kafka's: the router refuses a bulletin on any partition but
the one ``enlace.core.topics.owner_partition`` names, and the engine places keyed outputs
where the client's partitioner would."""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from enlace.core.partitioning import murmur2
from enlace.core.topics import owner_partition


@given(st.binary(max_size=80))
def test_murmur2_is_kafkas(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


@given(st.uuids().map(str), st.integers(1, 1000))
def test_the_owner_partition_is_the_default_partitioners(bulletin_id: str, partitions: int) -> None:
    key = bulletin_id.encode("ascii")
    assert (
        owner_partition(bulletin_id, partitions)
        == (aiokafka_murmur2(key) & 0x7FFFFFFF) % partitions
    )


def test_known_values() -> None:
    # Kafka's own test vectors (org.apache.kafka.common.utils.UtilsTest.testMurmur2).
    assert murmur2(b"21") & 0xFFFFFFFF == (-973932308) & 0xFFFFFFFF
    assert murmur2(b"foobar") & 0xFFFFFFFF == (-790332482) & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") & 0xFFFFFFFF == (-985981536) & 0xFFFFFFFF
