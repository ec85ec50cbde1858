"""The Publisher API on the real broker: signed records, refusals, bounded delivery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from deploy.localkafka import LocalKafka
from enlace.core import clients
from enlace.core.errors import ConfigError, KafkaUnavailable, RecordTooLarge, ValidationError
from enlace.core.settings import KafkaSettings
from enlace.core.topics import TopicSpec, ensure_topics
from producers.publisher import DeliveryResult, Publisher, PublishFailure
from producers.settings import PublisherSettings
from schemas import headers as hdr
from schemas.codec import decode_bulletin, encode_bulletin
from schemas.models import ThreatBulletin
from schemas.projection import tearline
from schemas.sealed import view_sealed
from schemas.signing import AgencyKey, KeyDirectory
from tests.samples import bulletin_fields, sample_bulletin
from tests.support import free_kafka_port

pytestmark = pytest.mark.integration

AGENCY = "pa-senafront"
# Within every model bound, yet over the 1 MiB record limit once encoded.
HUGE_INDICATORS = [{"type": "OTHER", "value": f"{i:04d}" + "x" * 1996} for i in range(500)]
HUGE_ENTITIES = [
    {
        "kind": "OTHER",
        "name": f"entity {i}",
        "identifiers": [{"scheme": "ref", "value": f"{j:03d}" + "y" * 197} for j in range(20)],
    }
    for i in range(100)
]


def bare(**overrides: Any) -> dict[str, Any]:
    """A bulletin as an agency's system sends it: no id, time, origin or country."""
    fields = bulletin_fields(AGENCY)
    for name in ("bulletin_id", "issued_at", "valid_until", "origin", "origin_country"):
        del fields[name]
    fields.update(overrides)
    return fields


def settings_for(kafka: KafkaSettings, topic: str, **overrides: Any) -> PublisherSettings:
    return PublisherSettings(
        agency=AGENCY, kafka_bootstrap=kafka.kafka_bootstrap, topic=topic, **overrides
    )


async def drain(
    kafka: KafkaSettings, topic: str, want: int, within: float = 20
) -> list[ConsumerRecord]:
    """Every record of ``topic`` until ``want`` arrived or ``within`` seconds passed."""
    consumer = clients.consumer(kafka, topic, group_id=None)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + within
        while len(records) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            records.extend(rec for recs in batch.values() for rec in recs)
    finally:
        await consumer.stop()
    return records


async def topic_size(kafka: KafkaSettings, topic: str) -> int:
    consumer = clients.consumer(kafka, topic, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.assignment()
        ends = await consumer.end_offsets(list(partitions))
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


def verify_record(directory: KeyDirectory, record: ConsumerRecord) -> ThreatBulletin:
    """Both originator signatures hold: over the value and over the recomputed tearline."""
    headers: Sequence[tuple[str, bytes]] = record.headers
    signed = hdr.SignedHeaders.parse(headers)
    bulletin = decode_bulletin(record.value)
    at = datetime.now(UTC)
    directory.verify(signed.origin, signed.key_id, record.value, signed.sig, at=at)
    tearline_bytes = encode_bulletin(tearline(bulletin))
    assert signed.sig_tearline is not None
    directory.verify(signed.origin, signed.key_id, tearline_bytes, signed.sig_tearline, at=at)
    assert signed.origin == bulletin.origin
    assert record.key == bulletin.bulletin_id.encode()
    return bulletin


@pytest.fixture
def key() -> AgencyKey:
    return AgencyKey.generate(AGENCY)


async def test_publish_and_publish_many_are_signed_and_decodable(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key: AgencyKey,
) -> None:
    (topic,) = await make_topics(unique("out"))
    async with Publisher(settings_for(kafka_settings, topic), key=key) as pub:
        single = await pub.publish(bare(title="Una sola"))
        many = await pub.publish_many([bare(title=f"Boletín {i}") for i in range(50)])
        model = await pub.publish(sample_bulletin(AGENCY))
    delivered = [o for o in many if isinstance(o, DeliveryResult)]
    assert len(delivered) == 50
    results = [single, *delivered, model]
    assert len({r.bulletin_id for r in results}) == 52
    assert pub.metrics.published._value.get() == 52

    records = await drain(kafka_settings, topic, 52)
    directory = KeyDirectory.from_keys([key])
    by_id = {verify_record(directory, rec).bulletin_id: rec for rec in records}
    assert set(by_id) == {r.bulletin_id for r in results}
    for result in results:
        rec = by_id[result.bulletin_id]
        assert (rec.partition, rec.offset) == (result.partition, result.offset)
    assert decode_bulletin(by_id[single.bulletin_id].value).title == "Una sola"


async def test_invalid_and_foreign_bulletins_are_refused_and_not_sent(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key: AgencyKey,
) -> None:
    (topic,) = await make_topics(unique("out"))
    async with Publisher(settings_for(kafka_settings, topic), key=key) as pub:
        with pytest.raises(ValidationError, match=r"location\.lat"):
            await pub.publish(bare(location={"lat": 91.0, "lon": 0.0, "country": "PA"}))
        with pytest.raises(ValidationError, match="publisher's agency"):
            await pub.publish(sample_bulletin("cr-msp"))
        with pytest.raises(RecordTooLarge, match="over the limit"):
            await pub.publish(bare(indicators=HUGE_INDICATORS, entities=HUGE_ENTITIES))
        outcomes = await pub.publish_many([bare(), bare(severity="APOCALYPTIC"), bare()])
    assert [type(o).__name__ for o in outcomes] == [
        "DeliveryResult",
        "PublishFailure",
        "DeliveryResult",
    ]
    failure = outcomes[1]
    assert isinstance(failure, PublishFailure)
    assert failure.reason == "invalid"
    assert "severity" in str(failure.error)
    assert pub.metrics.rejected["wrong_origin"]._value.get() == 1
    assert pub.metrics.rejected["oversize"]._value.get() == 1
    assert await topic_size(kafka_settings, topic) == 2


async def test_small_record_limit_is_enforced(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key: AgencyKey,
) -> None:
    (topic,) = await make_topics(unique("out"))
    settings = settings_for(kafka_settings, topic, max_bulletin_bytes=1024)
    async with Publisher(settings, key=key) as pub:
        (outcome,) = await pub.publish_many([bare(details="d" * 3000)])
    assert isinstance(outcome, PublishFailure)
    assert outcome.reason == "oversize"
    assert await topic_size(kafka_settings, topic) == 0


async def test_key_self_check_against_directory(
    kafka_settings: KafkaSettings, tmp_path: Path, key: AgencyKey
) -> None:
    keys_file = tmp_path / "keys.yaml"
    KeyDirectory.from_keys([AgencyKey.generate(AGENCY)]).dump(keys_file)
    pub = Publisher(settings_for(kafka_settings, "unused", keys_file=keys_file), key=key)
    with pytest.raises(ConfigError, match="key directory"):
        await pub.start()
    other = Publisher(settings_for(kafka_settings, "unused"), key=AgencyKey.generate("cr-msp"))
    with pytest.raises(ConfigError, match="belongs to 'cr-msp'"):
        await other.start()


async def test_key_file_is_loaded(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    tmp_path: Path,
    key: AgencyKey,
) -> None:
    (topic,) = await make_topics(unique("out"))
    path = key.save(tmp_path)
    keys_file = tmp_path / "keys.yaml"
    KeyDirectory.from_keys([key]).dump(keys_file)
    settings = settings_for(
        kafka_settings, topic, producer_key_file=path, keys_file=keys_file, wire_format=1
    )
    async with Publisher(settings) as pub:
        result = await pub.publish(bare())
    (record,) = await drain(kafka_settings, topic, 1)
    assert verify_record(KeyDirectory.from_keys([key]), record).bulletin_id == result.bulletin_id


async def test_with_the_key_directory_bulletins_are_sealed_for_every_partner_with_a_key(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    tmp_path: Path,
    key: AgencyKey,
) -> None:
    (topic,) = await make_topics(unique("out"))
    partner = AgencyKey.generate("cr-msp", valid_from=key.valid_from)
    keys_file = tmp_path / "keys.yaml"
    directory = KeyDirectory.from_keys([key, partner])
    directory.dump(keys_file)
    settings = settings_for(kafka_settings, topic, keys_file=keys_file)
    assert settings.sealed
    async with Publisher(settings, key=key) as pub:
        result = await pub.publish(bare())
    (record,) = await drain(kafka_settings, topic, 1)
    view = view_sealed(record.value)
    assert view.envelope.bulletin_id == result.bulletin_id
    assert set(view.wraps) == {"cr-msp"}  # the only partner with a key in the directory
    directory.verify(AGENCY, key.key_id, view.routing_digest, hdr.signature(record.headers),
                     at=view.envelope.issued_at)  # fmt: skip


async def test_no_broker_is_a_clear_error_within_the_deadline(key: AgencyKey) -> None:
    settings = PublisherSettings(
        agency=AGENCY, kafka_bootstrap="127.0.0.1:1", topic="t.none", delivery_timeout_s=3
    )
    # A bound, not a measurement: the publisher's own deadline (3 s) must end it.
    async with asyncio.timeout(10):
        with pytest.raises(KafkaUnavailable, match=r"127\.0\.0\.1:1"):
            async with Publisher(settings, key=key):
                pass


async def test_missing_topic_is_a_clear_error(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], key: AgencyKey
) -> None:
    settings = settings_for(kafka_settings, unique("never-created"), delivery_timeout_s=2)
    with pytest.raises(KafkaUnavailable, match="provisioned"):
        async with Publisher(settings, key=key):
            pass


@pytest.mark.slow
async def test_broker_outage_gives_an_outcome_per_bulletin_then_recovers(
    tmp_path: Path, key: AgencyKey
) -> None:
    kafka = LocalKafka(tmp_path / "kafka")
    outage_port = free_kafka_port()
    spec = await asyncio.to_thread(kafka.up, 1, port=outage_port)
    try:
        base = KafkaSettings(kafka_bootstrap=spec.bootstrap)
        await ensure_topics(base, [TopicSpec("t.outage", 3, 1)])
        settings = PublisherSettings(
            agency=AGENCY,
            kafka_bootstrap=spec.bootstrap,
            topic="t.outage",
            delivery_timeout_s=3,
            close_timeout_s=2,
        )
        async with Publisher(settings, key=key) as pub:
            before = await pub.publish_many([bare() for _ in range(20)])
            assert all(isinstance(o, DeliveryResult) for o in before)

            await asyncio.to_thread(kafka.down)
            async with asyncio.timeout(3 * 3 + 2 + 2):  # our deadlines, not aiokafka's
                during = await pub.publish_many([bare() for _ in range(20)])
            assert len(during) == 20
            failures = [o for o in during if isinstance(o, PublishFailure)]
            assert failures, "a dead broker cannot acknowledge"
            assert {f.reason for f in failures} <= {"timeout", "unavailable"}
            assert all(f.bulletin_id for f in failures)
            assert not pub.healthy

            async with asyncio.timeout(3 + 2 + 3):
                again = await pub.publish_many([bare() for _ in range(5)])
            assert all(isinstance(o, PublishFailure) and o.reason == "unavailable" for o in again)

            await asyncio.to_thread(kafka.up, 1, port=outage_port)
            deadline = time.monotonic() + 60
            after: list[DeliveryResult | PublishFailure] = []
            while time.monotonic() < deadline:
                after = await pub.publish_many([bare() for _ in range(10)])
                if all(isinstance(o, DeliveryResult) for o in after):
                    break
            assert all(isinstance(o, DeliveryResult) for o in after)
            assert pub.healthy
    finally:
        await asyncio.to_thread(kafka.down)
