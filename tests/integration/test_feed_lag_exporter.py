"""``enlace ops exporter`` on the real broker: a partner whose consumer stopped shows lag that
keeps growing, in records and in seconds, on the exporter's own /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import requests
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from deploy.lag_exporter import ExporterSettings, FeedLagExporter
from enlace.core import clients, topics
from enlace.core.settings import KafkaSettings
from tests.feed_records import FeedMessage
from tests.integration.test_consumer_service import produce

pytestmark = pytest.mark.integration


def _messages(n: int, start: int = 0) -> list[FeedMessage]:
    return [FeedMessage(f"k{i}".encode(), f"v{i}".encode(), []) for i in range(start, start + n)]


async def _commit(settings: KafkaSettings, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = clients.consumer(settings, group_id=group)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in offsets])
        await consumer.commit(
            {TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in offsets.items()}
        )
    finally:
        await consumer.stop()


async def test_a_stopped_consumer_s_lag_grows_on_the_exporter(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
) -> None:
    prefix = unique("")
    feed_cr = f"{prefix}{topics.feed('cr-msp')}"
    feed_pa = f"{prefix}{topics.feed('pa-senafront')}"
    await make_topics(feed_cr, feed_pa, partitions=1)
    now = [1_000.0]
    settings = ExporterSettings(
        kafka_bootstrap=kafka_settings.kafka_bootstrap, topic_prefix=prefix, exporter_http_port=0
    )
    exporter = FeedLagExporter(settings, ["cr-msp", "pa-senafront"], clock=lambda: now[0])
    async with exporter:
        await produce(kafka_settings, feed_cr, _messages(10))
        await produce(kafka_settings, feed_pa, _messages(4))
        # cr-msp's consumer read 6 and died; pa-senafront's is caught up.
        await _commit(kafka_settings, topics.consumer_group("cr-msp", prefix), feed_cr, {0: 6})
        await _commit(
            kafka_settings, topics.consumer_group("pa-senafront", prefix), feed_pa, {0: 4}
        )
        first = {lag.agency: lag for lag in await exporter.observe()}
        assert (first["cr-msp"].records, first["pa-senafront"].records) == (4, 0)

        await produce(kafka_settings, feed_cr, _messages(5, start=10))
        now[0] += 60
        later = {lag.agency: lag for lag in await exporter.observe()}
        assert later["cr-msp"].records == 9
        assert later["cr-msp"].seconds == 60.0
        assert (later["pa-senafront"].records, later["pa-senafront"].seconds) == (0, 0.0)

        scrape = (
            await asyncio.to_thread(requests.get, f"{exporter.http.url}/metrics", timeout=5)
        ).text
        assert 'enlace_feed_lag_records{agency="cr-msp"} 9.0' in scrape
        assert 'enlace_feed_lag_seconds{agency="cr-msp"} 60.0' in scrape
        health = await asyncio.to_thread(requests.get, f"{exporter.http.url}/health", timeout=5)
        assert health.status_code == 200


async def test_a_group_that_never_committed_lags_by_the_whole_feed(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
) -> None:
    prefix = unique("")
    feed = f"{prefix}{topics.feed('cr-msp')}"
    await make_topics(feed, partitions=3)
    await produce(kafka_settings, feed, _messages(12))
    settings = ExporterSettings(
        kafka_bootstrap=kafka_settings.kafka_bootstrap, topic_prefix=prefix, exporter_http_port=0
    )
    async with FeedLagExporter(settings, ["cr-msp"]) as exporter:
        (lag,) = await exporter.observe()
    assert lag.records == 12
