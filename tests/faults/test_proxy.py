"""The fault proxy on its own, against an echo server on loopback: it forwards, a cut
blackholes or refuses, latency delays each chunk in order, resets happen at random (seeded)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from tests.faults.proxy import LOOPBACK, FaultProxy, free_ports, total
from tests.support import eventually

# An absence (nothing delivered while cut) can only be seen over a window.
QUIET_S = 0.5


class Echo:
    """An echo server that counts the connections reaching it."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        with contextlib.suppress(OSError):
            while data := await reader.read(65_536):
                writer.write(data)
                await writer.drain()
        writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    server = Echo()
    server.server = await asyncio.start_server(server._serve, LOOPBACK, 0)
    try:
        yield server
    finally:
        server.server.close()
        for writer in server.writers:
            writer.close()
        await server.server.wait_closed()


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(echo.port, seed=7) as running:
        yield running


_opened: list[asyncio.StreamWriter] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Every client connection a test opens is closed after it, pass or fail."""
    yield
    while _opened:
        _opened.pop().close()


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(LOOPBACK, proxy.port)
    _opened.append(writer)
    return reader, writer


async def roundtrip(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], data: bytes, within: float = 5.0
) -> bytes:
    reader, writer = conn
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), within)


async def closed_by_peer(reader: asyncio.StreamReader, within: float = 5.0) -> bool:
    """True once the connection is reset or closed from the other end."""
    try:
        return await asyncio.wait_for(reader.read(1), within) == b""
    except ConnectionResetError:
        return True


async def test_forwards_both_ways_and_counts(proxy: FaultProxy, echo: Echo) -> None:
    conn = await connect(proxy)
    assert await roundtrip(conn, b"hello broker") == b"hello broker"
    payload = bytes(range(256)) * 1_000  # several chunks
    assert await roundtrip(conn, payload) == payload
    assert proxy.stats.connections == 1
    assert echo.accepted == 1
    assert proxy.stats.bytes_up == proxy.stats.bytes_down == len(payload) + 12
    conn[1].close()
    await eventually(lambda: proxy.live_connections == 0, "the link closes behind its client")


async def test_blackhole_holds_everything_until_heal(proxy: FaultProxy, echo: Echo) -> None:
    conn = await connect(proxy)
    assert await roundtrip(conn, b"before") == b"before"
    proxy.cut("blackhole")
    reader, writer = conn
    writer.write(b"during")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), QUIET_S)
    # A new connection is accepted (loopback completes the handshake) but reaches no broker.
    late = await connect(proxy)
    late[1].write(b"late")
    await eventually(lambda: proxy.stats.connections == 2, "the second connection is accepted")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(late[0].read(1), QUIET_S)
    assert echo.accepted == 1
    proxy.heal()
    # What TCP would have retransmitted arrives, in order, on both connections.
    assert await asyncio.wait_for(reader.readexactly(6), 5) == b"during"
    assert await asyncio.wait_for(late[0].readexactly(4), 5) == b"late"
    assert echo.accepted == 2


async def test_refuse_resets_existing_and_new_connections(proxy: FaultProxy, echo: Echo) -> None:
    conn = await connect(proxy)
    assert await roundtrip(conn, b"ping") == b"ping"
    proxy.cut("refuse")
    assert await closed_by_peer(conn[0])
    assert proxy.stats.dropped == 1
    new = await connect(proxy)
    assert await closed_by_peer(new[0])
    assert proxy.stats.refused == 1
    proxy.heal()
    again = await connect(proxy)
    assert await roundtrip(again, b"back") == b"back"
    assert echo.accepted == 2  # the refused one never reached it


async def test_latency_delays_each_chunk_and_keeps_order(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    assert await roundtrip(conn, b"warm") == b"warm"
    proxy.latency(0.15, 0.1)
    started = time.monotonic()
    assert await roundtrip(conn, b"x") == b"x"
    # Two crossings (there and back), each at least mean - jitter.
    assert time.monotonic() - started >= 2 * 0.05
    reader, writer = conn
    chunks = [f"{i:04d}".encode() for i in range(40)]
    for chunk in chunks:  # separate writes: jittered chunks that must not overtake
        writer.write(chunk)
        await writer.drain()
    echoed = await asyncio.wait_for(reader.readexactly(4 * len(chunks)), 20)
    assert echoed == b"".join(chunks)
    proxy.heal()
    started = time.monotonic()
    assert await roundtrip(conn, b"fast") == b"fast"
    assert time.monotonic() - started < 0.1


async def test_resets_happen_at_the_set_probability_and_are_counted(echo: Echo) -> None:
    async with FaultProxy(echo.port, seed=3) as proxy:
        proxy.reset_probability(1.0)
        conn = await connect(proxy)
        conn[1].write(b"doomed")
        assert await closed_by_peer(conn[0])
        assert proxy.stats.resets == 1
        proxy.reset_probability(0.3)
        survived = 0
        for _ in range(20):
            conn = await connect(proxy)
            try:
                survived += await roundtrip(conn, b"maybe") == b"maybe"
            except (asyncio.IncompleteReadError, ConnectionResetError):
                pass
            finally:
                conn[1].close()
        assert proxy.stats.resets > 1
        assert survived > 0
        assert total([proxy]).resets == proxy.stats.resets


async def test_fixed_port_and_stop_closes_everything(echo: Echo) -> None:
    (port,) = free_ports(1)
    proxy = FaultProxy(echo.port, listen_port=port)
    await proxy.start()
    assert proxy.port == port
    conn = await connect(proxy)
    assert await roundtrip(conn, b"hi") == b"hi"
    await proxy.stop()
    assert await closed_by_peer(conn[0])
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(LOOPBACK, port)
