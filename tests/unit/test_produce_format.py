"""``enlace produce --format``: which reader reads the input, and the CLI end to end with the
broker replaced by a recorder (the Kafka side is tests/integration/test_producer_cli.py's)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from consumers.records import Release
from consumers.stix_mapping import bundle_json
from enlace.cli import app
from producers.inputs import INPUT_FORMATS
from producers.produce import read_input
from producers.publisher import DeliveryResult, Publisher
from producers.stix_intake import parse_stix
from schemas.envelope import Sealed
from schemas.models import ThreatBulletin
from schemas.signing import AgencyKey
from tests.samples import sample_bulletin
from tests.unit.test_stix_roundtrip import _opencti

AGENCY = "cr-msp"
EXAMPLE = Path(__file__).resolve().parents[2] / "producers" / "examples" / "cr-msp-ransomware.json"


def _bundle_bytes() -> bytes:
    return json.dumps(bundle_json(sample_bulletin(AGENCY), Release.FULL), indent=2).encode()


def test_auto_reads_a_bundle_as_stix_and_everything_else_as_before() -> None:
    data = _bundle_bytes()
    assert read_input(data) == parse_stix(data)
    assert read_input(data, fmt="stix") == parse_stix(data)
    plain = read_input(EXAMPLE.read_bytes(), name=EXAMPLE.name)
    assert plain.problems == ()
    assert plain.items[0].obj["origin"] == AGENCY
    # Told it is JSON, a bundle is one JSON object (which prepare then refuses).
    assert read_input(data, fmt="json").items[0].obj["type"] == "bundle"


def test_stix_on_a_bulletin_says_it_is_not_a_bundle() -> None:
    parsed = read_input(EXAMPLE.read_bytes(), fmt="stix")
    assert parsed.items == ()
    assert [p.describe() for p in parsed.problems] == [
        '(stix): is not a STIX 2.1 bundle (no "type": "bundle")'
    ]


@pytest.mark.skipif(
    importlib.util.find_spec("producers.misp_intake") is None, reason="no MISP reader yet"
)
def test_misp_goes_to_the_misp_reader() -> None:
    from producers.misp_intake import parse_misp

    data = json.dumps({"Event": {"info": "x"}}).encode()
    assert read_input(data, fmt="misp") == parse_misp(data)


def test_every_format_is_a_cli_choice() -> None:
    result = CliRunner().invoke(app, ["produce", "--help"], env={"COLUMNS": "200"})
    assert f"<{'|'.join(INPUT_FORMATS)}>" in result.output


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures structlog onto the runner's captured stderr; undo it afterwards."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids the publisher 'sends': every step but the broker's is the real one."""
    ids: list[str] = []

    async def enter(self: Publisher) -> Publisher:
        return self

    async def leave(self: Publisher, *exc: object) -> None:
        return None

    async def send(
        self: Publisher, records: Sequence[tuple[ThreatBulletin, Sealed]]
    ) -> list[DeliveryResult]:
        ids.extend(b.bulletin_id for b, _ in records)
        return [DeliveryResult(b.bulletin_id, self.topic, 0, n) for n, (b, _) in enumerate(records)]

    monkeypatch.setattr(Publisher, "__aenter__", enter)
    monkeypatch.setattr(Publisher, "__aexit__", leave)
    monkeypatch.setattr(Publisher, "send_sealed", send)
    return ids


def _produce(tmp_path: Path, data: bytes, *args: str) -> Any:
    key = AgencyKey.generate(AGENCY).save(tmp_path / "keys")
    source = tmp_path / "input.json"
    source.write_bytes(data)
    argv = ["produce", "--agency", AGENCY, "--key", str(key), *args, str(source)]
    env = {"ENLACE_LOG_FORMAT": "json", "COLUMNS": "200"}
    return CliRunner().invoke(app, argv, env=env, catch_exceptions=False)


def test_an_opencti_export_publishes_with_its_warnings_on_stderr(
    tmp_path: Path, sent: list[str]
) -> None:
    result = _produce(tmp_path, json.dumps(_opencti(), indent=2).encode(), "--format", "stix")
    assert result.exit_code == 0, result.output
    assert "published 1, rejected 0, not acknowledged 0" in result.stdout
    assert len(sent) == 1
    assert "warning: line " in result.stderr
    assert "objects[5] (type=malware): not mapped" in result.stderr


def test_auto_publishes_our_own_bundle_back_under_its_id(tmp_path: Path, sent: list[str]) -> None:
    data = _bundle_bytes()
    result = _produce(tmp_path, data)
    assert result.exit_code == 0, result.output
    assert "warning: " not in result.stderr
    assert sent == [item.obj["bulletin_id"] for item in parse_stix(data).items]


def test_a_refused_report_aborts_and_nothing_is_sent(tmp_path: Path, sent: list[str]) -> None:
    bundle = _opencti(labels=["category:cyber", "severity:high"])
    result = _produce(tmp_path, json.dumps(bundle, indent=2).encode(), "--format", "stix")
    assert result.exit_code == 1
    assert "classification: the report has no 'classification:<value>' label" in result.stderr
    assert "aborted: 1 bulletin(s) rejected, nothing published" in result.stdout
    assert sent == []
