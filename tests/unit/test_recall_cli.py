"""`enlace recall` and the publisher's recall API without a broker: what is refused before
sending (one line, exit 1), what an unreachable broker gives (exit 3), and the record sent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from aiokafka.errors import InvalidTimestampError, KafkaTimeoutError, NotLeaderForPartitionError
from typer.testing import CliRunner, Result

from enlace.cli import app
from enlace.core.errors import (
    ClockSkewRefused,
    ConfigError,
    DeliveryError,
    DeliveryTimeout,
    KafkaUnavailable,
    ValidationError,
)
from enlace.core.topics import owner_partition
from producers.publisher import Publisher
from producers.recall import RecallReceipt, new_recall, send_recall
from producers.recall_cli import exit_code_of, settings_of
from producers.settings import PublisherSettings
from schemas.recall import MAX_REASON, open_recall
from schemas.signing import AgencyKey, KeyDirectory

AGENCY = "pa-senafront"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
# Nothing listens on port 1: connecting fails at once.
NOWHERE = "127.0.0.1:1"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures structlog onto the runner's captured stderr; undo it afterwards."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def key() -> AgencyKey:
    return AgencyKey.generate(AGENCY)


@pytest.fixture
def key_file(tmp_path: Path, key: AgencyKey) -> Path:
    return key.save(tmp_path / "keys")


def invoke(*args: str) -> Result:
    environment: dict[str, str | None] = {
        "ENLACE_KAFKA_BOOTSTRAP": NOWHERE,
        "ENLACE_DELIVERY_TIMEOUT_S": "2",
        # None unsets: only the options given here count.
        "ENLACE_AGENCY": None,
        "ENLACE_PRODUCER_KEY_FILE": None,
        "ENLACE_KEYS_FILE": None,
    }
    return CliRunner().invoke(app, ["recall", *args], env=environment, catch_exceptions=False)


def refused(result: Result, code: int) -> str:
    """The one error line of a refused run (no traceback, nothing on stdout)."""
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# -- validation (pure) ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bulletin_id", "reason", "problem"),
    [
        ("not-a-uuid", "wrong", "bulletin id: 'not-a-uuid' is not a UUID"),
        ("{" + str(uuid.UUID(int=1)) + "}", "wrong", "not a canonical hyphenated UUID"),
        (str(uuid.uuid4()), "", "reason: must be 1-500 characters"),
        (str(uuid.uuid4()), "   ", "reason: must not be blank"),
        (str(uuid.uuid4()), "x" * (MAX_REASON + 1), "reason: must be 1-500 characters"),
        (str(uuid.uuid4()), "two\nlines", "reason: must not contain control character U+000A"),
    ],
)
def test_bad_recalls_are_one_line_validation_errors(
    bulletin_id: str, reason: str, problem: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        new_recall(AGENCY, bulletin_id, reason, NOW)
    message = str(caught.value)
    assert message.startswith("recall is invalid: ")
    assert problem in message
    assert "\n" not in message
    assert caught.value.problems


def test_a_recall_at_the_bounds_is_valid() -> None:
    bid = str(uuid.uuid4())
    recall = new_recall(AGENCY, bid.upper(), "y" * MAX_REASON, NOW)
    assert recall.bulletin_id == bid  # the canonical spelling: the key the bulletin had
    assert recall.recall_id != bid
    assert recall.origin == AGENCY


def test_sealed_recall_is_keyed_by_the_bulletin_and_verifies(key: AgencyKey) -> None:
    publisher = Publisher(PublisherSettings(agency=AGENCY, kafka_bootstrap=NOWHERE), key=key)
    publisher.load()  # no network: sealing a recall needs none
    bid = str(uuid.uuid4())
    recall, sealed = publisher.seal_recall(bid, "sent to the wrong partners")
    assert sealed.key == bid.encode("ascii")
    opened, signed = open_recall(
        KeyDirectory.from_keys([key]), sealed.value, sealed.headers, at=datetime.now(UTC)
    )
    assert opened == recall
    assert signed.origin == AGENCY


def test_exit_codes_split_refused_from_unacknowledged() -> None:
    assert exit_code_of(ValidationError("x")) == 1
    assert exit_code_of(ConfigError("x")) == 1
    assert exit_code_of(ClockSkewRefused("x", "clock_off")) == 1
    assert exit_code_of(KafkaUnavailable("x")) == 3
    assert exit_code_of(DeliveryTimeout("x")) == 3
    assert exit_code_of(DeliveryError("x")) == 3


def test_missing_agency_is_a_config_error_not_a_pydantic_dump(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ENLACE_AGENCY", raising=False)
    with pytest.raises(ConfigError, match=r"agency: Field required \(--agency or ENLACE_AGENCY\)"):
        settings_of(agency=None, kafka_bootstrap=NOWHERE)


# -- the command -----------------------------------------------------------------------------
def test_bad_bulletin_id_is_refused_before_connecting(key_file: Path) -> None:
    line = refused(invoke("nope", "--reason", "r", "--agency", AGENCY, "--key", str(key_file)), 1)
    assert line == "error: recall is invalid: bulletin id: 'nope' is not a UUID"


def test_too_long_reason_is_refused(key_file: Path) -> None:
    args = [str(uuid.uuid4()), "--reason", "z" * 501, "--agency", AGENCY, "--key", str(key_file)]
    assert "reason: must be 1-500 characters" in refused(invoke(*args), 1)


def test_key_of_another_agency_is_refused(tmp_path: Path) -> None:
    other = AgencyKey.generate("cr-msp").save(tmp_path)
    line = refused(
        invoke(str(uuid.uuid4()), "--reason", "r", "--agency", AGENCY, "--key", str(other)), 1
    )
    assert "belongs to 'cr-msp', not to the publishing agency 'pa-senafront'" in line


def test_no_key_and_no_agency_are_refused(key_file: Path) -> None:
    bid = str(uuid.uuid4())
    assert "no signing key" in refused(invoke(bid, "--reason", "r", "--agency", AGENCY), 1)
    assert "--agency or ENLACE_AGENCY" in refused(
        invoke(bid, "--reason", "r", "--key", str(key_file)), 1
    )


def test_unreachable_kafka_exits_3_in_one_line(key_file: Path) -> None:
    result = invoke(str(uuid.uuid4()), "--reason", "r", "--agency", AGENCY, "--key", str(key_file))
    line = refused(result, 3)
    assert f"cannot publish to enlace.outbound.{AGENCY} via {NOWHERE}" in line


def test_help_says_what_only_the_router_checks() -> None:
    result = CliRunner().invoke(app, ["recall", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for phrase in (
        "recall_unknown",
        "recall_not_originator",
        "only from the bulletin's originator",
    ):
        assert phrase in text


# -- sending (a stand-in Kafka client) -------------------------------------------------------
class FakeProducer:
    """Records what is sent; acknowledges, times out or refuses as told."""

    def __init__(self, partitions: int, failure: BaseException | None = None) -> None:
        self.partitions = partitions
        self.failure = failure
        self.sent: list[dict[str, Any]] = []

    async def partitions_for(self, _topic: str) -> set[int]:
        return set(range(self.partitions))

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> asyncio.Future[Any]:
        self.sent.append({"topic": topic, "value": value, **kwargs})
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if isinstance(self.failure, KafkaTimeoutError):
            return future  # never acknowledged
        if self.failure is not None:
            future.set_exception(self.failure)
        else:
            future.set_result(SimpleNamespace(topic=topic, partition=kwargs["partition"], offset=9))
        return future


async def _send(producer: FakeProducer, key: AgencyKey, bid: str) -> RecallReceipt:
    publisher = Publisher(PublisherSettings(agency=AGENCY, kafka_bootstrap=NOWHERE), key=key)
    publisher.load()
    recall, sealed = publisher.seal_recall(bid, "duplicate of an earlier bulletin")
    return await send_recall(
        producer,  # a stand-in with the two methods send_recall uses
        "out",
        recall,
        sealed,
        timeout=0.2,
        stamped=NOW,
    )


async def test_recall_goes_to_the_owner_partition_of_the_bulletin(key: AgencyKey) -> None:
    producer = FakeProducer(12)
    bids = [str(uuid.uuid4()) for _ in range(20)]
    receipts = [await _send(producer, key, bid) for bid in bids]
    for bid, receipt, sent in zip(bids, receipts, producer.sent, strict=True):
        assert sent["partition"] == owner_partition(bid, 12) == receipt.partition
        assert sent["key"] == bid.encode("ascii")
        assert sent["timestamp_ms"] == int(NOW.timestamp() * 1000)
        assert receipt.bulletin_id == bid
        assert (receipt.topic, receipt.offset) == ("out", 9)
        assert receipt.recall_id in receipt.describe()
        assert f"partition {receipt.partition}, offset 9" in receipt.describe()


async def test_unacknowledged_recall_is_a_delivery_timeout(key: AgencyKey) -> None:
    with pytest.raises(DeliveryTimeout, match=r"not acknowledged within 0\.2 s"):
        await _send(FakeProducer(3, KafkaTimeoutError()), key, str(uuid.uuid4()))


async def test_refused_timestamp_is_clock_skew(key: AgencyKey) -> None:
    with pytest.raises(ClockSkewRefused) as caught:
        await _send(FakeProducer(3, InvalidTimestampError()), key, str(uuid.uuid4()))
    assert caught.value.reason == "clock_off"


async def test_other_broker_refusal_is_a_delivery_error(key: AgencyKey) -> None:
    with pytest.raises(DeliveryError, match="broker refused recall"):
        await _send(FakeProducer(3, NotLeaderForPartitionError()), key, str(uuid.uuid4()))
