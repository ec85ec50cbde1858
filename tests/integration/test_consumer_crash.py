"""Kill -9 between the sink write and the offset commit: restart stores every bulletin once.

The consumer runs in a subprocess whose ``after_sink_write`` hook SIGKILLs its own process,
so the sinks hold a batch that Kafka never saw committed (no clean shutdown, no flush).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from consumers.service import FeedConsumer
from consumers.settings import ConsumerSettings
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
    read_events,
    store_count,
)
from tests.support import eventually

pytestmark = pytest.mark.integration

CRASHER = """
import asyncio, json, os, signal, sys
from consumers.service import FeedConsumer
from consumers.settings import ConsumerSettings

async def crash(items):
    os.kill(os.getpid(), signal.SIGKILL)

async def main():
    settings = ConsumerSettings(**json.loads(sys.argv[1]))
    async with FeedConsumer(settings, after_sink_write=crash) as consumer:
        await consumer.run()

asyncio.run(main())
"""


async def test_sigkill_after_sink_write_then_restart_stores_once(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    tmp_path: Path,
) -> None:
    prefix = unique("")
    feed, receipts_topic = await make_topics(
        f"{prefix}enlace.feed.cr-msp", f"{prefix}enlace.receipts.cr-msp"
    )
    keys_file = tmp_path / "keys.yaml"
    DIRECTORY.dump(keys_file)
    key_file = CR.save(tmp_path / "private")
    db, jsonl, stix_dir = tmp_path / "inbox.sqlite3", tmp_path / "feed.jsonl", tmp_path / "stix"
    settings = ConsumerSettings(
        kafka_bootstrap=kafka_settings.kafka_bootstrap,
        agency="cr-msp",
        topic_prefix=prefix,
        sinks=(f"sqlite:{db}", f"jsonl:{jsonl}", f"stix:{stix_dir}"),
        keys_file=keys_file,
        key_file=key_file,
        state_dir=tmp_path / "state",
        poll_timeout_ms=100,
        batch_max_records=4,
        session_timeout_ms=6_000,  # the broker's minimum: the killed member expires sooner
    )
    sent = bulletins(10)
    await produce(kafka_settings, feed, [feed_message(seal(b, PA), "full") for b in sent])

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHER, settings.model_dump_json()
    )
    returncode = await asyncio.wait_for(proc.wait(), 60)
    assert returncode == -signal.SIGKILL
    held_at_kill = store_count(db)
    assert 1 <= held_at_kill <= 4
    assert len(jsonl.read_text().splitlines()) == held_at_kill
    assert await committed(kafka_settings, settings.consumer_group()) == 0

    consumer = FeedConsumer(settings)  # keys from the files, like the CLI
    async with consumer:
        task = asyncio.create_task(consumer.run())
        await eventually(lambda: store_count(db) == 10 and consumer.receipts_sent == 10)
        await consumer.stop()
        await task

    assert consumer.duplicates == held_at_kill  # the killed batch came back...
    assert consumer.delivered == 10 - held_at_kill  # ...and was stored only once
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == 10 + held_at_kill  # JSONL is at-least-once, as documented
    assert {line["bulletin_id"] for line in lines} == {b.bulletin_id for b in sent}
    assert len(list(stix_dir.glob("*.json"))) == 10
    assert await committed(kafka_settings, settings.consumer_group()) == 10
    events = await read_events(kafka_settings, receipts_topic, 10)
    assert sorted(e.bulletin_id or "" for e in events) == sorted(b.bulletin_id for b in sent)
