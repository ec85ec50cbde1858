"""A failing webhook: retried with backoff, bounded backlog, nothing committed past its acks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from consumers.service import FeedConsumer
from consumers.settings import ConsumerSettings
from consumers.sinks import WebhookSink
from enlace.core.settings import KafkaSettings
from schemas.envelope import seal
from tests.feed_records import feed_message
from tests.integration.test_consumer_service import (
    CR,
    DIRECTORY,
    PA,
    bulletins,
    committed,
    produce,
    store_count,
)
from tests.support import eventually

pytestmark = pytest.mark.integration

BUFFER = 2


class Receiver:
    """A webhook endpoint that answers 503 until opened."""

    def __init__(self) -> None:
        self.open = False
        self.refused = 0
        self.bodies: dict[str, dict[str, Any]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        if not self.open:
            self.refused += 1
            return web.Response(status=503)
        self.bodies[request.headers["Idempotency-Key"]] = await request.json()
        return web.Response(status=204)


async def test_failing_webhook_holds_commits_and_bounds_the_backlog(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    tmp_path: Path,
) -> None:
    prefix = unique("")
    feed, _ = await make_topics(f"{prefix}enlace.feed.cr-msp", f"{prefix}enlace.receipts.cr-msp")
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    db = tmp_path / "inbox.sqlite3"
    settings = ConsumerSettings(
        kafka_bootstrap=kafka_settings.kafka_bootstrap,
        agency="cr-msp",
        topic_prefix=prefix,
        sinks=(f"sqlite:{db}", f"webhook:http://127.0.0.1:{port}/hook"),
        state_dir=tmp_path / "state",
        poll_timeout_ms=100,
        batch_max_records=1,
        webhook_buffer=BUFFER,
        webhook_max_backoff_s=0.2,
    )
    sent = bulletins(6)
    await produce(kafka_settings, feed, [feed_message(seal(b, PA), "full") for b in sent])
    consumer = FeedConsumer(settings, directory=DIRECTORY, key=CR)
    try:
        async with consumer:
            (webhook,) = [s for s in consumer.sinks if isinstance(s, WebhookSink)]
            task = asyncio.create_task(consumer.run())
            # One POST in flight + a full buffer + the batch waiting to enter it.
            await eventually(lambda: store_count(db) == BUFFER + 2 and receiver.refused >= 3)
            assert webhook.buffered() == BUFFER + 1
            assert await committed(kafka_settings, settings.consumer_group()) == 0
            await asyncio.sleep(0.5)  # absence check: the feed stays held while it fails
            assert store_count(db) == BUFFER + 2

            receiver.open = True
            await eventually(lambda: len(receiver.bodies) == 6 and store_count(db) == 6)
            await eventually(lambda: webhook.buffered() == 0)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while await committed(kafka_settings, settings.consumer_group()) < 6:
                assert loop.time() < deadline, "offsets not committed after the webhook caught up"
                await asyncio.sleep(0.1)
            await consumer.stop()
            await task
    finally:
        await runner.cleanup()
    assert {b["bulletin_id"] for b in receiver.bodies.values()} == {b.bulletin_id for b in sent}
    assert all(b["type"] == "bulletin" and b["release"] == "full" for b in receiver.bodies.values())
    assert webhook.failures >= 3
