"""The HTTP server under the intake: slow, idle and oversized clients; HTTPS.

Raw sockets, so the test controls every byte; the server's cut is awaited as end of stream
under a deadline, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from enlace.core.http import ServiceHttp, server_tls_context
from tests.tls_certs import server_cert

HEAD = b"POST /bulletins HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
GET_HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
SLACK_S = 3.0  # how late past its timeout a cut may come on a loaded machine


@pytest.fixture
async def http() -> AsyncIterator[ServiceHttp]:
    # The idle timeout is far away, so a cut within the header timeout is the header timer's.
    async with ServiceHttp(CollectorRegistry(), header_timeout_s=0.5, idle_timeout_s=60) as server:
        yield server


async def connect(
    server: ServiceHttp,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert server.port is not None
    return await asyncio.open_connection("127.0.0.1", server.port)


async def until_closed(reader: asyncio.StreamReader, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), within)
    return data, time.monotonic() - started


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):  # the server already cut it: as intended
        await writer.wait_closed()


async def read_response(reader: asyncio.StreamReader) -> int:
    """The status of one whole response (head and Content-Length body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (h.partition(": ") for h in lines) if k == "Content-Length")
    await asyncio.wait_for(reader.readexactly(length), 5)
    return int(lines[0].split(" ")[1])


async def test_a_stalled_request_head_is_answered_408_and_cut(http: ServiceHttp) -> None:
    for partial in (b"POST /bullet", HEAD):  # inside the request line, then inside the headers
        reader, writer = await connect(http)
        writer.write(partial)
        data, elapsed = await until_closed(reader, within=0.5 + SLACK_S)
        await close(writer)
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert elapsed >= 0.4


async def test_trickling_the_head_does_not_extend_its_deadline(http: ServiceHttp) -> None:
    reader, writer = await connect(http)

    async def trickle() -> None:
        for at in range(len(HEAD)):  # ~4 s for the whole head, 8x the header timeout
            writer.write(HEAD[at : at + 1])
            await asyncio.sleep(0.05)  # a byte every 50 ms: pacing the client, not waiting

    dripping = asyncio.create_task(trickle())
    try:
        data, elapsed = await until_closed(reader, within=0.5 + SLACK_S)
    finally:
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
        await close(writer)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert elapsed < 0.5 + SLACK_S


async def test_a_head_completed_in_time_is_served_and_its_timer_stopped(
    http: ServiceHttp,
) -> None:
    reader, writer = await connect(http)
    writer.write(GET_HEALTH)
    await writer.drain()
    await asyncio.sleep(0.1)  # pacing: the head arrives in two parts, so its timer starts
    writer.write(b"\r\n")
    assert await read_response(reader) == 200
    # Let the (stopped) timer's deadline pass: were it still running, it would cut the
    # kept-alive connection. A negative check, so time has to pass; nothing is awaited by it.
    await asyncio.sleep(0.8)
    writer.write(GET_HEALTH + b"\r\n")
    assert await read_response(reader) == 200
    await close(writer)


async def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    async with ServiceHttp(CollectorRegistry(), header_timeout_s=60, idle_timeout_s=0.5) as http:
        reader, writer = await connect(http)  # never sends anything
        data, elapsed = await until_closed(reader, within=0.5 + SLACK_S)
        await close(writer)
        assert data == b""
        assert elapsed >= 0.4

        reader, writer = await connect(http)  # keep-alive after a response
        writer.write(GET_HEALTH + b"\r\n")
        data, elapsed = await until_closed(reader, within=0.5 + SLACK_S)
        await close(writer)
        assert data.startswith(b"HTTP/1.1 200 "), data
        assert b"Connection: close" not in data, "cut for idling, not answered with close"


@pytest.mark.parametrize(
    ("what", "request_bytes"),
    [
        ("a header over 8 KiB", GET_HEALTH + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n"),
        ("a request line over 8 KiB", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("100 headers", GET_HEALTH + b"".join(b"X-%d: a\r\n" % i for i in range(100)) + b"\r\n"),
        ("a header name over 8 KiB", GET_HEALTH + b"X" * 9000 + b": a\r\n\r\n"),
    ],
)
async def test_oversized_heads_are_a_4xx_never_a_500(
    http: ServiceHttp, what: str, request_bytes: bytes
) -> None:
    reader, writer = await connect(http)
    writer.write(request_bytes)
    data, _ = await until_closed(reader, within=5)
    await close(writer)
    status = int(data.split(b" ", 2)[1])
    assert 400 <= status < 500, (what, data[:200])


@pytest.fixture
async def https(tmp_path: Path) -> AsyncIterator[tuple[ServiceHttp, Path]]:
    certs = server_cert(tmp_path)
    context = server_tls_context(certs.cert, certs.key)
    async with ServiceHttp(CollectorRegistry(), ssl_context=context) as server:
        yield server, certs.ca


async def test_https_with_the_right_ca_succeeds(https: tuple[ServiceHttp, Path]) -> None:
    server, ca = https
    assert server.url.startswith("https://")
    trust = ssl.create_default_context(cafile=ca)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/health", ssl=trust) as response,
    ):
        assert response.status == 200
        assert (await response.json())["ok"] is True


async def test_plain_http_to_the_tls_port_fails(https: tuple[ServiceHttp, Path]) -> None:
    server, _ = https
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{server.port}/health") as response:
                await response.read()


async def test_a_client_trusting_another_ca_fails_verification(
    https: tuple[ServiceHttp, Path], tmp_path: Path
) -> None:
    server, _ = https
    stranger = server_cert(tmp_path / "stranger", ca_name="stranger-ca")
    trust = ssl.create_default_context(cafile=stranger.ca)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with session.get(f"{server.url}/health", ssl=trust) as response:
                await response.read()
