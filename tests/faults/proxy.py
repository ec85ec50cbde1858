"""A TCP proxy on loopback for network faults between Kafka clients and one broker node.

One :class:`FaultProxy` per node, in front of the node's PROXIED listener (see
``deploy/localkafka.py``: that listener advertises the proxy's port, so a client that
bootstraps through the proxies reaches every node through them, reconnections included).

Faults, all seeded:

- :meth:`FaultProxy.cut` ``"blackhole"``: a partition. Nothing crosses, either way, on any
  connection; connections keep open and new ones are accepted (the kernel completes the
  handshake on loopback whatever we do) but reach no broker. What was sent meanwhile is held,
  in order, and delivered if the connection lives until :meth:`FaultProxy.heal`, as TCP
  retransmission would; the endpoints' own timeouts decide what gives up first.
- :meth:`FaultProxy.cut` ``"refuse"``: the far side is gone: every connection is reset
  (RST, SO_LINGER 0) and new ones are reset as soon as they are accepted.
- :meth:`FaultProxy.latency`: each chunk waits ``mean ± jitter`` seconds (uniform), order kept
  per connection and direction (a chunk never overtakes the one before it).
- :meth:`FaultProxy.reset_probability`: each chunk resets its connection with probability p.

Counters (:class:`ProxyStats`) feed the fault report.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

LOOPBACK = "127.0.0.1"
CHUNK = 65_536
CutMode = Literal["blackhole", "refuse"]


@dataclass
class ProxyStats:
    connections: int = 0  # accepted from clients
    bytes_up: int = 0  # delivered client -> broker
    bytes_down: int = 0  # delivered broker -> client
    resets: int = 0  # connections reset at random (reset probability)
    dropped: int = 0  # connections reset when a "refuse" cut began
    refused: int = 0  # connections reset at accept while refusing


def total(proxies: Iterable[FaultProxy]) -> ProxyStats:
    """The proxies' counters added up."""
    summed = ProxyStats()
    for proxy in proxies:
        for name, value in vars(proxy.stats).items():
            setattr(summed, name, getattr(summed, name) + value)
    return summed


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports nobody listens on now (bound together, then freed)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in socks]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN: SO_LINGER on, timeout 0, then abort."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    writer.close()  # already closed by the abort; marks the writer closed for asyncio too


def _drop(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()
    writer.close()


class _Link:
    """One client connection and its upstream connection, pumped both ways."""

    def __init__(
        self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._proxy = proxy
        self.client_reader, self.client_writer = reader, writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.closed = False

    async def run(self) -> None:
        proxy = self._proxy
        # Sent by the client before the upstream exists (or while cut): held in order.
        up_queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        down_queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        tasks = [asyncio.create_task(self._read(self.client_reader, up_queue))]
        try:
            await proxy.open.wait()  # a partition: the broker is not reachable yet
            if self.closed:
                return
            up_reader, self.upstream_writer = await asyncio.open_connection(
                LOOPBACK, proxy.upstream_port
            )
            tasks += [
                asyncio.create_task(self._write(up_queue, self.upstream_writer, up=True)),
                asyncio.create_task(self._read(up_reader, down_queue)),
                asyncio.create_task(self._write(down_queue, self.client_writer, up=False)),
            ]
            # The link ends once an EOF has been delivered, or on any error or reset; a
            # reader's EOF alone waits for its writer to deliver what is queued before it.
            readers = {tasks[0], tasks[2]}
            pending: set[asyncio.Task[None]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if self.closed or any(
                    t not in readers or t.cancelled() or t.exception() for t in done
                ):
                    break
        except OSError:
            pass  # the broker refused or went away: the client sees its connection close
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.close()

    async def _read(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]]
    ) -> None:
        proxy, loop = self._proxy, asyncio.get_running_loop()
        last_due = 0.0
        while True:
            data = await reader.read(CHUNK)
            if not data:
                await queue.put((last_due, b""))  # EOF travels behind the data before it
                return
            if proxy.open.is_set() and proxy.draw_reset():
                proxy.stats.resets += 1
                self.reset()
                return
            # Monotone due times keep the order of a connection's chunks under jitter.
            last_due = max(last_due, loop.time() + proxy.draw_delay())
            await queue.put((last_due, data))

    async def _write(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        proxy, loop = self._proxy, asyncio.get_running_loop()
        while True:
            due, data = await queue.get()
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the latency fault itself: a schedule
            await proxy.open.wait()  # held while cut, delivered after the heal
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            if up:
                proxy.stats.bytes_up += len(data)
            else:
                proxy.stats.bytes_down += len(data)

    def reset(self) -> None:
        if self.closed:
            return
        self.closed = True
        _reset(self.client_writer)
        if self.upstream_writer is not None:
            _reset(self.upstream_writer)

    def close(self) -> None:
        # Unconditional (both calls are idempotent): an upstream connection that completes
        # after a reset must be closed too.
        self.closed = True
        _drop(self.client_writer)
        if self.upstream_writer is not None:
            _drop(self.upstream_writer)


class FaultProxy:
    """A TCP proxy from a loopback port (ephemeral unless given) to ``upstream_port``."""

    def __init__(
        self, upstream_port: int, *, listen_port: int = 0, seed: int = 0, name: str = ""
    ) -> None:
        self.upstream_port = upstream_port
        self.name = name or f"proxy->{upstream_port}"
        self.stats = ProxyStats()
        self._listen_port = listen_port
        self._rng = random.Random(seed)  # seeded: a run's faults can be replayed
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusing = False
        self._latency = (0.0, 0.0)
        self._reset_p = 0.0
        self.open = asyncio.Event()  # set = traffic flows; cleared while cut
        self.open.set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def live_connections(self) -> int:
        return sum(not link.closed for link in self._links)

    # -- controls ------------------------------------------------------------------------
    def cut(self, mode: CutMode = "blackhole") -> None:
        self.open.clear()
        self._refusing = mode == "refuse"
        if self._refusing:
            for link in list(self._links):
                if not link.closed:
                    self.stats.dropped += 1
                    link.reset()

    def heal(self) -> None:
        """Back to a clean network: no cut, no latency, no resets."""
        self._refusing = False
        self._latency = (0.0, 0.0)
        self._reset_p = 0.0
        self.open.set()

    def latency(self, mean_s: float, jitter_s: float = 0.0) -> None:
        if mean_s < 0 or not 0 <= jitter_s <= mean_s:
            raise ValueError("latency wants 0 <= jitter <= mean")
        self._latency = (mean_s, jitter_s)

    def reset_probability(self, p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError("a probability is in [0, 1]")
        self._reset_p = p

    def draw_delay(self) -> float:
        mean, jitter = self._latency
        return self._rng.uniform(mean - jitter, mean + jitter) if mean else 0.0

    def draw_reset(self) -> bool:
        return self._reset_p > 0 and self._rng.random() < self._reset_p

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, self._listen_port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback: the link runs in a task of ours, which stop() may cancel (asyncio
        # logs an error when a cancelled stream-handler task of its own is inspected).
        self.stats.connections += 1
        if self._refusing:
            self.stats.refused += 1
            _reset(writer)
            return
        link = _Link(self, reader, writer)
        self._links.add(link)
        task = asyncio.create_task(link.run(), name=f"{self.name} link")
        self._tasks.add(task)

        def done(_t: asyncio.Task[None]) -> None:
            self._links.discard(link)
            self._tasks.discard(task)

        task.add_done_callback(done)
