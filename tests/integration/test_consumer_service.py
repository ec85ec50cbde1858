"""The partner consumer on the real broker: sinks, quarantine, receipts, own-feed guard."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import stix2
from aiokafka.admin import AIOKafkaAdminClient

from consumers.metrics import ConsumerMetrics
from consumers.service import Delivery, FeedConsumer
from consumers.settings import ConsumerSettings
from consumers.store import BulletinStore
from enlace.core import clients
from enlace.core.errors import ConfigError
from enlace.core.settings import KafkaSettings
from schemas import headers as hdr
from schemas.envelope import open_event, seal
from schemas.key_directory import KeyDirectory
from schemas.models import ThreatBulletin, TrustEvent
from schemas.signing import AgencyKey
from schemas.vocab import TrustEventKind
from tests.feed_records import FeedMessage, feed_message
from tests.samples import sample_bulletin
from tests.support import eventually

pytestmark = pytest.mark.integration

VALID_FROM = datetime(2026, 1, 1, tzinfo=UTC)
PA = AgencyKey.generate("pa-senafront", valid_from=VALID_FROM)
CR = AgencyKey.generate("cr-msp", valid_from=VALID_FROM)
DIRECTORY = KeyDirectory.from_keys([PA, CR])


async def run_until(
    settings: ConsumerSettings, done: Callable[[FeedConsumer], bool]
) -> FeedConsumer:
    consumer = FeedConsumer(settings, directory=DIRECTORY, key=CR)
    async with consumer:
        task = asyncio.create_task(consumer.run())
        await eventually(lambda: done(consumer))
        await consumer.stop()
        await task
    return consumer


def bulletins(n: int) -> list[ThreatBulletin]:
    issued = datetime.now(UTC) - timedelta(seconds=2)
    return [sample_bulletin("pa-senafront", issued_at=issued) for _ in range(n)]


async def produce(settings: KafkaSettings, topic: str, messages: list[FeedMessage]) -> None:
    producer = clients.producer(settings)
    await producer.start()
    try:
        for msg in messages:
            await producer.send_and_wait(topic, msg.value, key=msg.key, headers=msg.headers)
    finally:
        await producer.stop()


async def read_events(
    settings: KafkaSettings, topic: str, want: int, directory: KeyDirectory = DIRECTORY
) -> list[TrustEvent]:
    consumer = clients.consumer(settings, topic, group_id=None)
    await consumer.start()
    events: list[TrustEvent] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(events) < want and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                for rec in recs:
                    event, _ = open_event(directory, rec.value, rec.headers, at=datetime.now(UTC))
                    events.append(event)
        # Nothing more than expected arrives shortly after.
        extra = await consumer.getmany(timeout_ms=500)
        assert not any(extra.values())
    finally:
        await consumer.stop()
    return events


async def committed(settings: KafkaSettings, group: str) -> int:
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for meta in offsets.values() if meta.offset > 0)


def store_count(path: Path) -> int:
    if not path.exists():
        return 0
    store = BulletinStore.open(path)
    try:
        return store.count()
    finally:
        store.close()


@pytest.fixture
def prefix(unique: Callable[[str], str]) -> str:
    return unique("")


@pytest.fixture
async def topics(prefix: str, make_topics: Callable[..., Awaitable[list[str]]]) -> tuple[str, str]:
    feed, receipts = f"{prefix}enlace.feed.cr-msp", f"{prefix}enlace.receipts.cr-msp"
    await make_topics(feed, receipts)
    return feed, receipts


def consumer_settings(
    kafka_settings: KafkaSettings, prefix: str, tmp_path: Path, *sinks: str
) -> ConsumerSettings:
    return ConsumerSettings(
        kafka_bootstrap=kafka_settings.kafka_bootstrap,
        agency="cr-msp",
        topic_prefix=prefix,
        sinks=sinks or (f"sqlite:{tmp_path / 'inbox.sqlite3'}",),
        poll_timeout_ms=100,
        state_dir=tmp_path / "state",
    )


def check_files(tmp_path: Path, wanted: set[str]) -> None:
    jsonl, stix_dir = tmp_path / "feed.jsonl", tmp_path / "stix"
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert {line["bulletin_id"] for line in lines} == wanted
    quarantine_lines = (tmp_path / "feed.quarantine.jsonl").read_text().splitlines()
    assert [json.loads(q)["reason"] for q in quarantine_lines] == ["bad_signature"]

    for bulletin_id in wanted:
        # OpenCTI's x_opencti_* properties are the bundles' only custom ones (the validator
        # test holds them to that); stix2 needs to be told to keep them.
        bundle = stix2.parse((stix_dir / f"{bulletin_id}.json").read_text(), allow_custom=True)
        assert bundle.type == "bundle"
        report = next(o for o in bundle.objects if o.type == "report")
        assert report.external_references[0].external_id == bulletin_id
    assert len(list((stix_dir / "quarantine").iterdir())) == 1


def check_metrics(metrics: ConsumerMetrics) -> None:
    delivered = metrics.registry.get_sample_value(
        "enlace_bulletins_delivered_total",
        {"agency": "cr-msp", "origin": "pa-senafront", "release": "full"},
    )
    assert delivered == 4
    assert (
        metrics.registry.get_sample_value(
            "enlace_bulletins_quarantined_total", {"agency": "cr-msp", "reason": "bad_signature"}
        )
        == 1
    )
    assert (
        metrics.registry.get_sample_value(
            "enlace_publish_to_delivery_seconds_count", {"agency": "cr-msp"}
        )
        == 5
    )


async def test_delivers_to_every_sink_quarantines_and_sends_signed_receipts(
    kafka_settings: KafkaSettings, prefix: str, topics: tuple[str, str], tmp_path: Path
) -> None:
    feed, receipts_topic = topics
    db, jsonl, stix_dir = tmp_path / "inbox.sqlite3", tmp_path / "feed.jsonl", tmp_path / "stix"
    settings = consumer_settings(
        kafka_settings, prefix, tmp_path, f"sqlite:{db}", f"jsonl:{jsonl}", f"stix:{stix_dir}"
    )
    full = bulletins(3)
    teared = bulletins(1)[0]
    forged = feed_message(seal(bulletins(1)[0], PA), "full")
    forged = FeedMessage(
        forged.key,
        forged.value,
        [(n, bytes(64) if n == hdr.SIG else v) for n, v in forged.headers],
    )
    after = bulletins(1)[0]
    messages = [feed_message(seal(b, PA), "full") for b in full]
    messages += [feed_message(seal(teared, PA), "tearline"), forged]
    messages.append(feed_message(seal(after, PA), "full"))
    await produce(kafka_settings, feed, messages)

    seen: list[Delivery] = []
    metrics = ConsumerMetrics()
    consumer = FeedConsumer(
        settings, directory=DIRECTORY, key=CR, metrics=metrics, on_delivery=seen.append
    )
    async with consumer:
        task = asyncio.create_task(consumer.run())
        await eventually(lambda: consumer.delivered == 5 and consumer.quarantined == 1)
        await eventually(lambda: consumer.receipts_sent == 5)
        await consumer.stop()
        await task

    wanted = {b.bulletin_id for b in [*full, teared, after]}
    store = BulletinStore.open(db)
    try:
        assert set(store.ids()) == wanted
        got = store.get(teared.bulletin_id)
        assert got is not None
        assert got.row.release == "tearline"
        assert got.bulletin.details is None
        assert store.pending_receipts() == []
        (q,) = store.quarantine_rows()
        assert q.reason == "bad_signature"
        assert q.bulletin_id == forged.key.decode()
    finally:
        store.close()

    check_files(tmp_path, wanted)

    events = await read_events(kafka_settings, receipts_topic, 5)
    assert {e.bulletin_id for e in events} == wanted
    assert {(e.kind, e.reporter, e.subject) for e in events} == {
        (TrustEventKind.RECEIPT, "cr-msp", "pa-senafront")
    }
    assert {d.bulletin.bulletin_id for d in seen} == wanted
    assert await committed(kafka_settings, settings.consumer_group()) == len(messages)
    check_metrics(metrics)


async def test_restart_redelivers_nothing_twice_in_the_store(
    kafka_settings: KafkaSettings, prefix: str, topics: tuple[str, str], tmp_path: Path
) -> None:
    feed, receipts_topic = topics
    db = tmp_path / "inbox.sqlite3"
    settings = consumer_settings(kafka_settings, prefix, tmp_path, f"sqlite:{db}")
    first = bulletins(4)
    await produce(kafka_settings, feed, [feed_message(seal(b, PA), "full") for b in first])
    await run_until(settings, lambda c: c.delivered == 4 and c.receipts_sent == 4)
    # After a clean restart: a full copy of an already-held bulletin is a duplicate, a new one
    # is stored; only the new one gets a receipt.
    later = bulletins(1)
    again = [feed_message(seal(b, PA), "full") for b in [first[0], *later]]
    await produce(kafka_settings, feed, again)
    second = await run_until(
        settings, lambda c: c.delivered == 1 and c.duplicates == 1 and c.receipts_sent == 1
    )
    assert second.quarantined == 0
    assert store_count(db) == 5
    events = await read_events(kafka_settings, receipts_topic, 5)
    assert len({e.event_id for e in events}) == 5


async def test_foreign_feed_is_refused_before_kafka(tmp_path: Path) -> None:
    settings = ConsumerSettings(
        kafka_bootstrap="127.0.0.1:1",  # nothing listens: the refusal must come first
        agency="cr-msp",
        feed_topic="enlace.feed.pa-senafront",
        state_dir=tmp_path,
    )
    with pytest.raises(ConfigError, match="only its own feed"):
        await FeedConsumer(settings, directory=DIRECTORY, key=CR).start()
    own = settings.model_copy(update={"feed_topic": "enlace.feed.cr-msp"})
    assert own.feed_topic_name() == "enlace.feed.cr-msp"


async def test_key_of_another_agency_is_refused(tmp_path: Path) -> None:
    settings = ConsumerSettings(kafka_bootstrap="127.0.0.1:1", agency="cr-msp", state_dir=tmp_path)
    with pytest.raises(ConfigError, match="not a key of"):
        await FeedConsumer(settings, directory=DIRECTORY, key=PA).start()
