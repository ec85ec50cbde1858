"""`enlace produce` on the real broker: files, stdin, line-numbered refusals, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner, Result

from consumers.misp_mapping import event_json
from consumers.records import Release
from consumers.stix_mapping import bundle_json
from enlace.cli import app
from enlace.core.settings import KafkaSettings
from producers.inputs import parse_input
from producers.prepare import derive_id
from schemas.signing import AgencyKey, KeyDirectory
from tests.integration.test_producer_api import AGENCY, bare, drain, topic_size, verify_record
from tests.samples import sample_bulletin

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "producers" / "examples"
ENLACE = Path(sys.executable).parent / "enlace"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures structlog onto the runner's captured stderr; undo it afterwards."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[AgencyKey, Path]:
    key = AgencyKey.generate(AGENCY)
    return key, key.save(tmp_path / "keys")


async def produce(kafka: KafkaSettings, *args: str, stdin: bytes | None = None) -> Result:
    """Run `enlace produce ...` in a worker thread (the CLI runs its own event loop)."""
    env = {"ENLACE_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap, "ENLACE_LOG_FORMAT": "json"}
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke, app, ["produce", *args], input=stdin, env=env, catch_exceptions=True
    )


def jsonl(*objs: Any) -> str:
    return "".join((o if isinstance(o, str) else json.dumps(o, default=str)) + "\n" for o in objs)


async def test_file_is_published_with_stable_derived_ids(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key_file: tuple[AgencyKey, Path],
) -> None:
    key, path = key_file
    (topic,) = await make_topics(unique("out"))
    example = EXAMPLES / "pa-senafront-darien.json"
    args = ["--agency", AGENCY, "--key", str(path), "--topic", topic, str(example)]
    first = await produce(kafka_settings, *args)
    assert first.exit_code == 0, first.output
    assert "published 2, rejected 0, not acknowledged 0" in first.stdout
    second = await produce(kafka_settings, *args)
    assert second.exit_code == 0, second.output

    records = await drain(kafka_settings, topic, 4)
    directory = KeyDirectory.from_keys([key])
    ids = [verify_record(directory, rec).bulletin_id for rec in records]
    digest = parse_input(example.read_bytes()).digest
    expected = {derive_id(AGENCY, digest, 1), derive_id(AGENCY, digest, 2)}
    # Re-running the same file re-sends the same ids: the router's replay check drops them.
    assert sorted(ids) == sorted([*expected, *expected])


async def test_invalid_lines_abort_by_default_and_nothing_is_sent(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key_file: tuple[AgencyKey, Path],
    tmp_path: Path,
) -> None:
    _, path = key_file
    (topic,) = await make_topics(unique("out"))
    source = tmp_path / "mixed.jsonl"
    source.write_text(
        jsonl(bare(), bare(severity="APOCALYPTIC"), bare(), '{"title": ', bare(origin="cr-msp")),
        encoding="utf-8",
    )
    result = await produce(
        kafka_settings, "--agency", AGENCY, "--key", str(path), "--topic", topic, str(source)
    )
    assert result.exit_code == 1
    assert "line 2: severity: " in result.stderr
    assert "line 4: (json): " in result.stderr
    assert "line 5: origin: must be the publisher's agency 'pa-senafront'" in result.stderr
    assert "aborted: 3 bulletin(s) rejected, nothing published" in result.stdout
    assert await topic_size(kafka_settings, topic) == 0


async def test_skip_publishes_the_valid_lines(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key_file: tuple[AgencyKey, Path],
    tmp_path: Path,
) -> None:
    _, path = key_file
    (topic,) = await make_topics(unique("out"))
    source = tmp_path / "mixed.jsonl"
    source.write_text(jsonl(bare(), bare(title=""), bare()), encoding="utf-8")
    result = await produce(
        kafka_settings,
        *("--agency", AGENCY, "--key", str(path), "--topic", topic),
        *("--on-error", "skip", str(source)),
    )
    assert result.exit_code == 1, result.output
    assert "line 2: title: " in result.stderr
    assert "published 2, rejected 1, not acknowledged 0" in result.stdout
    assert await topic_size(kafka_settings, topic) == 2


async def test_stdin_through_the_installed_command(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key_file: tuple[AgencyKey, Path],
) -> None:
    key, path = key_file
    (topic,) = await make_topics(unique("out"))
    env = {
        **os.environ,
        "ENLACE_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "ENLACE_PRODUCER_KEY_FILE": str(path),
        "ENLACE_AGENCY": AGENCY,
    }
    body = jsonl(*(bare(title=f"Desde stdin {i}") for i in range(3))).encode()
    proc = await asyncio.to_thread(
        subprocess.run,
        [str(ENLACE), "produce", "--topic", topic, "-"],
        input=body,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"published 3, rejected 0" in proc.stdout
    records = await drain(kafka_settings, topic, 3)
    directory = KeyDirectory.from_keys([key])
    titles = sorted(verify_record(directory, r).title for r in records)
    assert titles == ["Desde stdin 0", "Desde stdin 1", "Desde stdin 2"]


async def test_unreachable_broker_reports_every_bulletin_and_exits_3(
    key_file: tuple[AgencyKey, Path], tmp_path: Path
) -> None:
    _, path = key_file
    source = tmp_path / "two.json"
    source.write_text(json.dumps([bare(), bare()], default=str), encoding="utf-8")
    runner = CliRunner()
    env = {"ENLACE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "ENLACE_DELIVERY_TIMEOUT_S": "3"}
    result = await asyncio.to_thread(
        runner.invoke,
        app,
        ["produce", "--agency", AGENCY, "--key", str(path), "--topic", "t.none", str(source)],
        env=env,
    )
    assert result.exit_code == 3, result.output
    assert "published 0, rejected 0, not acknowledged 2" in result.stdout
    assert result.stderr.count(": unavailable: ") == 2


async def test_missing_key_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "one.json"
    source.write_text(json.dumps(bare(), default=str), encoding="utf-8")
    env = {**os.environ, "ENLACE_AGENCY": AGENCY}
    env.pop("ENLACE_PRODUCER_KEY_FILE", None)
    proc = await asyncio.to_thread(
        subprocess.run,
        [str(ENLACE), "produce", str(source)],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert b"no signing key: pass --key PATH or set ENLACE_PRODUCER_KEY_FILE" in proc.stderr


@pytest.mark.parametrize("fmt", ["stix", "misp"])
async def test_a_stix_bundle_and_a_misp_event_publish_as_signed_bulletins(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key_file: tuple[AgencyKey, Path],
    tmp_path: Path,
    fmt: str,
) -> None:
    """What an analyst exports from OpenCTI (a STIX bundle) or MISP (an event) reaches the
    broker as bulletins signed by the agency's key, with the fields the mapping covers."""
    key, path = key_file
    (topic,) = await make_topics(unique("out"))
    made = [sample_bulletin(AGENCY, title=f"Go-fast {n} off Punta Mala") for n in range(3)]
    if fmt == "stix":
        objects = [o for b in made for o in bundle_json(b, Release.FULL)["objects"]]
        unique_objects = list({o["id"]: o for o in objects}.values())
        doc: Any = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": unique_objects}
    else:
        doc = [event_json(b, Release.FULL) for b in made]
    source = tmp_path / f"export.{fmt}.json"
    source.write_text(json.dumps(doc))
    result = await produce(
        kafka_settings, "--agency", AGENCY, "--key", str(path), "--topic", topic,
        "--format", fmt, str(source),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "published 3, rejected 0" in result.stdout
    records = await drain(kafka_settings, topic, 3)
    directory = KeyDirectory.from_keys([key])
    published = sorted((verify_record(directory, rec) for rec in records), key=lambda b: b.title)
    for sent, wanted in zip(published, made, strict=True):
        assert (sent.origin, sent.title, sent.category, sent.tlp, sent.classification) == (
            wanted.origin, wanted.title, wanted.category, wanted.tlp, wanted.classification,
        )  # fmt: skip
