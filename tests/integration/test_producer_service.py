"""`publisher run` on the real broker: drop folder, HTTP intake, crash re-send, shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deploy.localkafka import LocalKafka
from enlace.core.settings import KafkaSettings
from enlace.core.topics import TopicSpec, ensure_topics
from producers.dropfolder import CLAIM_SUFFIX
from producers.inputs import parse_input
from producers.prepare import derive_id
from producers.service import PublisherService
from producers.settings import PublisherSettings
from schemas.signing import AgencyKey, KeyDirectory
from tests.integration.test_producer_api import AGENCY, bare, drain, topic_size, verify_record
from tests.support import eventually, free_kafka_port
from tests.tls_certs import server_cert

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "producers" / "examples"
ENLACE = Path(sys.executable).parent / "enlace"


@asynccontextmanager
async def running(settings: PublisherSettings, key: AgencyKey) -> AsyncIterator[PublisherService]:
    service = PublisherService(settings, key=key)
    task = asyncio.create_task(service.run())
    started = asyncio.create_task(service.started.wait())
    await asyncio.wait({task, started}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        task.result()
    assert service.started.is_set()
    try:
        yield service
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 30)


def service_settings(kafka: str, topic: str, root: Path, **extra: Any) -> PublisherSettings:
    # The intake needs a token or the explicit loopback-only opt-out; tests that do not set a
    # token take the opt-out (the service binds 127.0.0.1).
    extra.setdefault("http_insecure_no_auth", "http_token" not in extra)
    return PublisherSettings(
        agency=AGENCY,
        kafka_bootstrap=kafka,
        topic=topic,
        watch_dir=root,
        watch_interval_s=0.05,
        http_port=0,
        **extra,
    )


def jsonl(*objs: Any) -> str:
    return "".join(json.dumps(o, default=str) + "\n" for o in objs)


@pytest.fixture
def key() -> AgencyKey:
    return AgencyKey.generate(AGENCY)


async def test_drop_folder_publishes_whole_files_and_ignores_partial_ones(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key: AgencyKey,
    tmp_path: Path,
) -> None:
    (topic,) = await make_topics(unique("out"))
    root = tmp_path / "drop"
    settings = service_settings(kafka_settings.kafka_bootstrap, topic, root)
    example = (EXAMPLES / "pa-senafront-go-fast.json").read_bytes()
    lines = jsonl(bare(title="Primera"), bare(title="Segunda")).encode()
    started = datetime.now(UTC) - timedelta(seconds=1)
    async with running(settings, key):
        (root / ".a.json.tmp").write_bytes(example)
        (root / ".a.json.tmp").rename(root / "a.json")
        (root / "b.jsonl").write_bytes(lines)
        (root / "c.json.part").write_bytes(b'{"half": ')
        await eventually((root / "done" / "a.json").exists, what="a.json done")
        await eventually((root / "done" / "b.jsonl").exists, what="b.jsonl done")
    assert (root / "c.json.part").exists()
    assert list((root / "processing").iterdir()) == []
    assert list((root / "failed").iterdir()) == []

    records = await drain(kafka_settings, topic, 3)
    directory = KeyDirectory.from_keys([key])
    bulletins = {
        verify_record(directory, r).bulletin_id: verify_record(directory, r) for r in records
    }
    expected = {
        derive_id(AGENCY, parse_input(example).digest, 1),
        derive_id(AGENCY, parse_input(lines).digest, 1),
        derive_id(AGENCY, parse_input(lines).digest, 2),
    }
    assert set(bulletins) == expected
    for bulletin in bulletins.values():
        assert started <= bulletin.issued_at <= datetime.now(UTC)


async def test_invalid_file_goes_to_failed_with_reasons_and_nothing_is_sent(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key: AgencyKey,
    tmp_path: Path,
) -> None:
    (topic,) = await make_topics(unique("out"))
    root = tmp_path / "drop"
    settings = service_settings(kafka_settings.kafka_bootstrap, topic, root)
    async with running(settings, key) as service:
        (root / "bad.jsonl").write_text(
            jsonl(bare(), bare(severity="APOCALYPTIC"), bare(origin="cr-msp")), encoding="utf-8"
        )
        await eventually((root / "failed" / "bad.jsonl").exists, what="bad.jsonl failed")
        (root / "good.json").write_text(json.dumps(bare(), default=str), encoding="utf-8")
        await eventually((root / "done" / "good.json").exists, what="good.json done")
        assert service.metrics.files["failed"]._value.get() == 1
        assert service.metrics.rejected["invalid"]._value.get() == 2
    error = (root / "failed" / "bad.jsonl.error").read_text(encoding="utf-8")
    assert "nothing from this file was published" in error
    assert "line 2: severity: " in error
    assert "line 3: origin: must be the publisher's agency" in error
    assert await topic_size(kafka_settings, topic) == 1


async def test_claimed_file_is_resent_after_a_crash_with_identical_records(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key: AgencyKey,
    tmp_path: Path,
) -> None:
    (topic,) = await make_topics(unique("out"))
    root = tmp_path / "drop"
    processing = root / "processing"
    processing.mkdir(parents=True)
    claimed_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    body = jsonl(bare(title="Uno"), bare(title="Dos"))
    claim = json.dumps({"claimed_at": claimed_at.isoformat(), "name": "x.jsonl"})

    def crashed_mid_publish() -> None:
        # What a crash after claiming (and possibly after sending) leaves behind.
        (processing / "x.jsonl").write_text(body, encoding="utf-8")
        (processing / ("x.jsonl" + CLAIM_SUFFIX)).write_text(claim, encoding="utf-8")

    crashed_mid_publish()
    (processing / ("gone.json" + CLAIM_SUFFIX)).write_text(claim, encoding="utf-8")
    (processing / "unclaimed.json").write_text(json.dumps(bare(), default=str), encoding="utf-8")
    settings = service_settings(kafka_settings.kafka_bootstrap, topic, root)
    async with running(settings, key):
        await eventually((root / "done" / "x.jsonl").exists, what="x.jsonl done")
        await eventually((root / "done" / "unclaimed.json").exists, what="unclaimed done")
    assert sorted(p.name for p in processing.iterdir()) == []

    crashed_mid_publish()
    async with running(settings, key):
        await eventually((root / "done" / "x-2.jsonl").exists, what="re-sent x.jsonl done")

    records = await drain(kafka_settings, topic, 5)
    directory = KeyDirectory.from_keys([key])
    by_id: dict[str, list[bytes]] = {}
    for record in records:
        bulletin = verify_record(directory, record)
        by_id.setdefault(bulletin.bulletin_id, []).append(record.value)
        if bulletin.title in {"Uno", "Dos"}:
            assert bulletin.issued_at == claimed_at
    digest = parse_input(body.encode()).digest
    for position in (1, 2):
        first, again = by_id[derive_id(AGENCY, digest, position)]
        assert first == again  # same id, same bytes: the router drops the copy
    assert len(by_id) == 3


async def test_http_intake_refuses_deep_and_slow_bodies(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key: AgencyKey,
    tmp_path: Path,
) -> None:
    (topic,) = await make_topics(unique("out"))
    settings = service_settings(
        kafka_settings.kafka_bootstrap, topic, tmp_path / "drop", http_read_timeout_s=1.0
    )
    headers = {"Content-Type": "application/json"}
    async with running(settings, key) as service, aiohttp.ClientSession() as http:
        url = f"{service.http.url}/bulletins"
        async with http.post(url, data=b"[" * 5000 + b"]" * 5000, headers=headers) as response:
            assert response.status == 400, "deep nesting is refused before parsing, never a 500"
            assert "nests 5000 levels" in (await response.json())["error"]

        async def trickle() -> AsyncIterator[bytes]:
            yield b'{"title": '
            await asyncio.sleep(3)  # a slow client, past the 1 s body deadline
            yield b'"late"}'

        async with http.post(url, data=trickle(), headers=headers) as response:
            assert response.status == 408, await response.text()


async def test_http_intake(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key: AgencyKey,
    tmp_path: Path,
) -> None:
    (topic,) = await make_topics(unique("out"))
    settings = service_settings(
        kafka_settings.kafka_bootstrap,
        topic,
        tmp_path / "drop",
        http_max_body_bytes=16_384,
        http_token="s3cret-token",
    )
    auth = {"Authorization": "Bearer s3cret-token"}
    async with running(settings, key) as service, aiohttp.ClientSession() as http:
        url = f"{service.http.url}/bulletins"
        one = bare(title="Por HTTP")

        async def post(body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
            data = body if isinstance(body, bytes) else json.dumps(body, default=str).encode()
            hdrs = {"Content-Type": "application/json", **auth, **(headers or {})}
            async with http.post(url, data=data, headers=hdrs) as response:
                return response.status, await response.json()

        status, body = await post(one)
        assert status == 202, body
        (result,) = body["results"]
        assert set(result) == {"bulletin_id", "partition", "offset"}

        status, body = await post([bare(), bare(), bare()])
        assert status == 202
        assert body["published"] == 3

        status, body = await post([bare(), bare(location={"lat": 99, "lon": 0, "country": "PA"})])
        assert status == 422
        assert body["published"] == 0
        assert body["errors"] == [
            {"index": 1, "field": "location.lat", "rule": body["errors"][0]["rule"]}
        ]

        status, body = await post([bare(details="x" * 9000), bare(details="y" * 9000)])
        assert status == 413
        status, body = await post(b'{"title": ')
        assert status == 400
        assert "line 1" in body["error"]
        status, body = await post(b"[]")
        assert status == 400
        status, body = await post(one, {"Authorization": "Bearer wrong"})
        assert status == 401
        status, body = await post(one, {"Content-Type": "text/plain"})
        assert status == 415

        async with http.get(f"{service.http.url}/metrics") as response:
            metrics = await response.text()
        async with http.get(f"{service.http.url}/health") as response:
            assert response.status == 200
            assert (await response.json())["agency"] == AGENCY
    assert 'enlace_bulletins_published_total{agency="pa-senafront"} 4.0' in metrics
    assert 'enlace_publisher_http_requests_total{agency="pa-senafront",status="422"} 1.0' in metrics
    assert "enlace_publish_latency_seconds_bucket" in metrics
    records = await drain(kafka_settings, topic, 4)
    directory = KeyDirectory.from_keys([key])
    assert sorted(verify_record(directory, r).title for r in records).count("Por HTTP") == 1
    assert await topic_size(kafka_settings, topic) == 4


async def test_http_intake_without_a_token_only_when_asked_and_on_loopback(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key: AgencyKey,
    tmp_path: Path,
) -> None:
    (topic,) = await make_topics(unique("out"))
    settings = service_settings(
        kafka_settings.kafka_bootstrap, topic, tmp_path / "drop", http_insecure_no_auth=True
    )
    async with running(settings, key) as service, aiohttp.ClientSession() as http:
        data = json.dumps(bare(title="Sin token"), default=str).encode()
        headers = {"Content-Type": "application/json"}
        async with http.post(f"{service.http.url}/bulletins", data=data, headers=headers) as r:
            assert r.status == 202, await r.text()
    assert await topic_size(kafka_settings, topic) == 1


async def test_http_intake_over_tls(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key: AgencyKey,
    tmp_path: Path,
) -> None:
    (topic,) = await make_topics(unique("out"))
    certs = server_cert(tmp_path / "tls")
    settings = service_settings(
        kafka_settings.kafka_bootstrap,
        topic,
        tmp_path / "drop",
        http_token="s3cret-token",
        http_tls_cert=certs.cert,
        http_tls_key=certs.key,
    )
    trust = ssl.create_default_context(cafile=certs.ca)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer s3cret-token"}
    data = json.dumps(bare(title="Por HTTPS"), default=str).encode()
    async with running(settings, key) as service, aiohttp.ClientSession() as http:
        url = f"{service.http.url}/bulletins"
        assert url.startswith("https://127.0.0.1:")
        async with http.post(url, data=data, headers=headers, ssl=trust) as response:
            assert response.status == 202, await response.text()
        plain = f"http://127.0.0.1:{service.http.port}/bulletins"
        with pytest.raises(aiohttp.ClientError):
            async with http.post(plain, data=data, headers=headers) as response:
                await response.read()
    records = await drain(kafka_settings, topic, 1)
    directory = KeyDirectory.from_keys([key])
    assert [verify_record(directory, r).title for r in records] == ["Por HTTPS"]


@pytest.mark.slow
async def test_file_dropped_during_an_outage_is_published_after_it(
    key: AgencyKey, tmp_path: Path
) -> None:
    kafka = LocalKafka(tmp_path / "kafka")
    outage_port = free_kafka_port()
    spec = await asyncio.to_thread(kafka.up, 1, port=outage_port)
    try:
        base = KafkaSettings(kafka_bootstrap=spec.bootstrap)
        await ensure_topics(base, [TopicSpec("t.folder-outage", 3, 1)])
        root = tmp_path / "drop"
        settings = service_settings(
            spec.bootstrap,
            "t.folder-outage",
            root,
            delivery_timeout_s=2,
            close_timeout_s=2,
            watch_retry_max_s=1,
        )
        async with running(settings, key) as service:
            await asyncio.to_thread(kafka.down)
            (root / "during.json").write_text(json.dumps(bare(), default=str), encoding="utf-8")
            await eventually(
                lambda: service.metrics.files["retry"]._value.get() >= 1, what="a retry"
            )
            assert (root / "processing" / "during.json").exists()
            assert not (root / "done" / "during.json").exists()
            await asyncio.to_thread(kafka.up, 1, port=outage_port)
            await eventually((root / "done" / "during.json").exists, "done after outage", within=60)
        assert await topic_size(base, "t.folder-outage") >= 1
    finally:
        await asyncio.to_thread(kafka.down)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_publisher_run_stops_cleanly_on_sigterm(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    key: AgencyKey,
    tmp_path: Path,
) -> None:
    (topic,) = await make_topics(unique("out"))
    key_path = key.save(tmp_path / "keys")
    root = tmp_path / "drop"
    port = free_port()
    env = {**os.environ, "ENLACE_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap}
    args = [str(ENLACE), "publisher", "run", "--agency", AGENCY, "--watch", str(root)]
    args += ["--key", str(key_path), "--topic", topic, "--http-port", str(port)]
    args += ["--insecure-no-auth"]
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(args, env=env, stdout=log_file, stderr=subprocess.STDOUT)  # noqa: ASYNC220 - Popen returns at once
    try:
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                assert proc.poll() is None, log_path.read_text(encoding="utf-8")
                try:
                    async with http.get(f"http://127.0.0.1:{port}/health") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(healthy, "the service is healthy")
        shutil.copy(EXAMPLES / "pa-senafront-darien.json", root / "darien.json")
        await eventually((root / "done" / "darien.json").exists, what="darien.json done")
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
    log_text = log_path.read_text(encoding="utf-8")
    assert code == 0, log_text
    assert "stop_requested" in log_text
    assert "service_stopped" in log_text
    assert await topic_size(kafka_settings, topic) == 2
