"""Several consumers in one event loop (the demo's shape), and signed feedback and incidents."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumers.feedback import originator_of, record_feedback, send_event
from consumers.metrics import ConsumerMetrics
from consumers.receipts import feedback_event, incident_event
from consumers.service import Delivery, FeedConsumer
from consumers.settings import ConsumerSettings
from enlace.core.settings import KafkaSettings
from schemas.envelope import seal
from schemas.key_directory import KeyDirectory
from schemas.signing import AgencyKey
from schemas.vocab import TrustEventKind
from tests.feed_records import feed_message
from tests.integration.test_consumer_service import (
    CR,
    PA,
    VALID_FROM,
    bulletins,
    produce,
    read_events,
)
from tests.support import eventually

pytestmark = pytest.mark.integration

GT = AgencyKey.generate("gt-pnc", valid_from=VALID_FROM)
DIRECTORY = KeyDirectory.from_keys([PA, CR, GT])


async def test_two_agencies_in_one_loop_share_metrics(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    tmp_path: Path,
) -> None:
    prefix = unique("")
    agencies = {"cr-msp": CR, "gt-pnc": GT}
    for agency in agencies:
        await make_topics(f"{prefix}enlace.feed.{agency}", f"{prefix}enlace.receipts.{agency}")
    to_cr, to_gt = bulletins(3), bulletins(2)
    await produce(
        kafka_settings,
        f"{prefix}enlace.feed.cr-msp",
        [feed_message(seal(b, PA), "full") for b in to_cr],
    )
    await produce(
        kafka_settings,
        f"{prefix}enlace.feed.gt-pnc",
        [feed_message(seal(b, PA), "tearline") for b in to_gt],
    )

    metrics = ConsumerMetrics()
    seen: list[Delivery] = []
    consumers = [
        FeedConsumer(
            ConsumerSettings(
                kafka_bootstrap=kafka_settings.kafka_bootstrap,
                agency=agency,
                topic_prefix=prefix,
                state_dir=tmp_path / agency,
                poll_timeout_ms=100,
            ),
            directory=DIRECTORY,
            key=key,
            metrics=metrics,
            on_delivery=seen.append,
        )
        for agency, key in agencies.items()
    ]
    for consumer in consumers:
        await consumer.start()
    tasks = [asyncio.create_task(c.run()) for c in consumers]
    try:
        await eventually(lambda: len(seen) == 5 and sum(c.receipts_sent for c in consumers) == 5)
    finally:
        await asyncio.gather(*(c.stop() for c in consumers))
        await asyncio.gather(*tasks)

    assert {(d.agency, d.bulletin.bulletin_id) for d in seen} == {
        *(("cr-msp", b.bulletin_id) for b in to_cr),
        *(("gt-pnc", b.bulletin_id) for b in to_gt),
    }
    sample = metrics.registry.get_sample_value
    labels = {"origin": "pa-senafront"}
    assert (
        sample(
            "enlace_bulletins_delivered_total", {"agency": "cr-msp", **labels, "release": "full"}
        )
        == 3
    )
    assert (
        sample(
            "enlace_bulletins_delivered_total",
            {"agency": "gt-pnc", **labels, "release": "tearline"},
        )
        == 2
    )
    # Each consumer has its own default store under its state dir.
    assert consumers[0].store is not None
    assert consumers[0].store.path == tmp_path / "cr-msp" / "consumers" / "cr-msp" / "inbox.sqlite3"
    gt_receipts = await read_events(kafka_settings, f"{prefix}enlace.receipts.gt-pnc", 2, DIRECTORY)
    assert {e.reporter for e in gt_receipts} == {"gt-pnc"}


async def test_feedback_and_incident_are_signed_on_the_reporters_topic(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    tmp_path: Path,
) -> None:
    prefix = unique("")
    feed, cr_receipts, pa_receipts = await make_topics(
        f"{prefix}enlace.feed.cr-msp",
        f"{prefix}enlace.receipts.cr-msp",
        f"{prefix}enlace.receipts.pa-senafront",
    )
    (bulletin,) = bulletins(1)
    await produce(kafka_settings, feed, [feed_message(seal(bulletin, PA), "full")])
    db = tmp_path / "inbox.sqlite3"
    cr_settings = ConsumerSettings(
        kafka_bootstrap=kafka_settings.kafka_bootstrap,
        agency="cr-msp",
        topic_prefix=prefix,
        sinks=(f"sqlite:{db}",),
        poll_timeout_ms=100,
    )
    consumer = FeedConsumer(cr_settings, directory=DIRECTORY, key=CR)
    async with consumer:
        task = asyncio.create_task(consumer.run())
        await eventually(lambda: consumer.receipts_sent == 1)
        await consumer.stop()
        await task

    now = datetime.now(UTC)
    origin = originator_of(bulletin.bulletin_id, db)
    assert origin == "pa-senafront"
    fb = feedback_event("cr-msp", origin, bulletin.bulletin_id, "actioned", note="450 kg", now=now)
    assert await send_event(cr_settings, fb, CR) == cr_receipts
    record_feedback(fb, db)
    pa_settings = cr_settings.model_copy(update={"agency": "pa-senafront"})
    inc = incident_event("pa-senafront", "cr-msp", "leak", bulletin.bulletin_id, note=None, now=now)
    assert await send_event(pa_settings, inc, PA) == pa_receipts

    cr_events = await read_events(kafka_settings, cr_receipts, 2)
    assert sorted(e.kind for e in cr_events) == [
        TrustEventKind.FEEDBACK_ACTIONED,
        TrustEventKind.RECEIPT,
    ]
    (incident,) = await read_events(kafka_settings, pa_receipts, 1)
    assert (incident.kind, incident.reporter, incident.subject) == (
        TrustEventKind.INCIDENT_LEAK,
        "pa-senafront",
        "cr-msp",
    )
