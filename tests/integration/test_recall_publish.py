"""`enlace recall` on the real broker: the signed recall lands on the bulletin's own partition,
after the bulletin, and verifies as the originator's."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from enlace.cli import app
from enlace.core.settings import KafkaSettings
from enlace.core.topics import owner_partition
from producers.publisher import Publisher
from schemas.recall import is_recall, open_recall
from schemas.signing import AgencyKey, KeyDirectory
from tests.integration.test_producer_api import AGENCY, bare, drain, settings_for

pytestmark = pytest.mark.integration

PARTITIONS = 6
RECEIPT = re.compile(
    r"recall (?P<recall>\S+) of bulletin (?P<bulletin>\S+) published "
    r"\(topic (?P<topic>\S+), partition (?P<partition>\d+), offset (?P<offset>\d+)\)"
)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures structlog onto the runner's captured stderr; undo it afterwards."""
    yield
    structlog.reset_defaults()


async def test_cli_recall_lands_after_the_bulletin_on_its_owner_partition(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    tmp_path: Path,
) -> None:
    key = AgencyKey.generate(AGENCY)
    key_path = key.save(tmp_path / "keys")
    (topic,) = await make_topics(unique("out"), partitions=PARTITIONS)
    async with Publisher(settings_for(kafka_settings, topic), key=key) as publisher:
        published = await publisher.publish(bare(title="Lancha interceptada"))
    bid = published.bulletin_id

    env = {"ENLACE_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap, "ENLACE_LOG_FORMAT": "json"}
    args = ["recall", bid, "--reason", "wrong vessel named", "--agency", AGENCY]
    result = await asyncio.to_thread(
        CliRunner().invoke, app, [*args, "--key", str(key_path), "--topic", topic], env=env
    )
    assert result.exit_code == 0, result.output
    shown = RECEIPT.search(result.stdout)
    assert shown is not None, result.stdout
    assert (shown["bulletin"], shown["topic"]) == (bid, topic)

    records = await drain(kafka_settings, topic, 2)
    assert len(records) == 2
    bulletin_record, recall_record = sorted(records, key=lambda r: r.offset)
    owner = owner_partition(bid, PARTITIONS)
    assert bulletin_record.partition == recall_record.partition == owner == published.partition
    assert recall_record.offset > bulletin_record.offset
    assert (int(shown["partition"]), int(shown["offset"])) == (owner, recall_record.offset)
    assert recall_record.key == bid.encode("ascii")
    assert is_recall(recall_record.value)
    assert not is_recall(bulletin_record.value)

    recall, signed = open_recall(
        KeyDirectory.from_keys([key]),
        recall_record.value,
        recall_record.headers,
        at=datetime.now(UTC),
    )
    assert (recall.recall_id, recall.bulletin_id) == (shown["recall"], bid)
    assert (recall.origin, signed.origin, signed.key_id) == (AGENCY, AGENCY, key.key_id)
    assert recall.reason == "wrong vessel named"
