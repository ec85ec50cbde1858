"""The real consumer against a real Kafka: a sealed (wire format 2) bulletin then its signed
recall withdraw it in the store and the STIX sink; forged recalls (another agency's, a bad
signature) are quarantined and the feed keeps flowing; recalls get no receipt."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.metrics import ConsumerMetrics
from consumers.service import FeedConsumer
from consumers.store import BulletinStore
from enlace.core.settings import KafkaSettings
from schemas import headers as hdr
from schemas.key_directory import KeyDirectory
from schemas.models import ThreatBulletin
from schemas.recall import BulletinRecall, seal_recall
from schemas.sealed import recipients_of, release_for, seal_sealed, view_sealed
from schemas.sealing import FULL, BoxCache
from schemas.signing import AgencyKey
from tests.feed_records import FeedMessage
from tests.integration.test_consumer_service import (
    CR,
    PA,
    VALID_FROM,
    bulletins,
    consumer_settings,
    produce,
)
from tests.support import eventually

pytestmark = pytest.mark.integration

CO = AgencyKey.generate("co-ponal", valid_from=VALID_FROM)
DIRECTORY = KeyDirectory.from_keys([PA, CR, CO])
_BOXES = BoxCache()


def sealed_release(bulletin: ThreatBulletin) -> FeedMessage:
    """What the router writes on Costa Rica's feed for a sealed bulletin released in full."""
    now = datetime.now(UTC)
    sealed = seal_sealed(bulletin, PA, recipients_of(DIRECTORY, ["cr-msp"], now), boxes=_BOXES)
    value = release_for(view_sealed(sealed.value), "cr-msp", FULL)
    assert value is not None
    return FeedMessage(sealed.key, value, [*sealed.headers, (hdr.RELEASE, b"full")])


def recall_message(bulletin_id: str, key: AgencyKey, reason: str) -> FeedMessage:
    recall = BulletinRecall.new(key.agency, bulletin_id, reason, datetime.now(UTC))
    sealed = seal_recall(recall, key)
    return FeedMessage(sealed.key, sealed.value, [*sealed.headers, (hdr.RELEASE, b"recall")])


async def test_a_recall_withdraws_and_forgeries_are_quarantined(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    tmp_path: Path,
) -> None:
    prefix = unique("")
    feed = f"{prefix}enlace.feed.cr-msp"
    await make_topics(feed, f"{prefix}enlace.receipts.cr-msp")
    db, stix_dir = tmp_path / "inbox.sqlite3", tmp_path / "stix"
    settings = consumer_settings(
        kafka_settings, prefix, tmp_path, f"sqlite:{db}", f"stix:{stix_dir}"
    )
    recalled, kept, after = bulletins(3)
    by_colombia = recall_message(kept.bulletin_id, CO, "not yours to recall")
    unsigned = recall_message(kept.bulletin_id, PA, "bad signature")
    unsigned = FeedMessage(
        unsigned.key,
        unsigned.value,
        [(n, bytes(64) if n == hdr.SIG else v) for n, v in unsigned.headers],
    )
    await produce(
        kafka_settings,
        feed,
        [
            sealed_release(recalled),
            sealed_release(kept),
            recall_message(recalled.bulletin_id, PA, "source compromised"),
            by_colombia,
            unsigned,
            sealed_release(after),
        ],
    )

    metrics = ConsumerMetrics()
    consumer = FeedConsumer(settings, directory=DIRECTORY, key=CR, metrics=metrics)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with consumer:
        task = asyncio.create_task(consumer.run())
        await eventually(lambda: consumer.delivered == 3 and consumer.quarantined == 2)
        await eventually(lambda: consumer.receipts_sent == 3)
        await consumer.stop()
        await task
    elapsed = loop.time() - started

    store = BulletinStore.open(db, create=False)
    try:
        gone, held, later = (
            store.get(recalled.bulletin_id),
            store.get(kept.bulletin_id),
            store.get(after.bulletin_id),
        )
        quarantine = sorted(r.reason for r in store.quarantine_rows())
        receipts_owed = store.pending_receipts()
    finally:
        store.close()
    assert gone is not None
    assert held is not None
    assert later is not None  # the record after the forgeries still flowed
    assert gone.row.status == "withdrawn"
    assert gone.row.recall_reason == "source compromised"
    assert held.row.status == ""
    assert quarantine == ["bad_signature", "recall_not_originator"]
    assert receipts_owed == []  # every bulletin's receipt sent, and none for the recall
    assert consumer.receipts_sent == 3

    bundle = json.loads((stix_dir / f"{recalled.bulletin_id}.json").read_bytes())
    report = next(o for o in bundle["objects"] if o["type"] == "report")
    assert report["revoked"] is True
    untouched = json.loads((stix_dir / f"{kept.bulletin_id}.json").read_bytes())
    assert not any(o.get("revoked") for o in untouched["objects"])

    def sample(outcome: str) -> float | None:
        return metrics.registry.get_sample_value(
            "enlace_consumer_recalls_total", {"agency": "cr-msp", "outcome": outcome}
        )

    assert sample("applied") == 1
    assert sample("quarantined") == 2
    assert elapsed < timedelta(seconds=20).total_seconds()
