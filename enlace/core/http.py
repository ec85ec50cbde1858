"""The small HTTP server every service runs: ``/metrics`` (Prometheus) and ``/health``.

Services may add their own routes (the producer's intake adds ``POST /bulletins``). Binds to
127.0.0.1 by default; port 0 picks a free port (see :attr:`ServiceHttp.port`). Optionally
over TLS (:func:`server_tls_context`).

A slow or idle client cannot hold a connection open: a connection with no request for
``idle_timeout_s`` is closed (aiohttp's keep-alive timer, which also runs from the moment a
connection opens), and a request whose line and headers have not all arrived within
``header_timeout_s`` of its first byte is answered 408 and closed (our own timer: aiohttp
has none). Request bodies are the route's to bound (the intake gives them a deadline).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from enlace.core.errors import ConfigError, EnvironmentProblem

HealthCheck = Callable[[], tuple[bool, dict[str, object]]]

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_IDLE_TIMEOUT_S = 15.0
# aiohttp's own defaults, pinned here so an upgrade cannot loosen them: a line (request line
# or one header) over 8 KiB, or more than 64 headers, is a 400 from the parser, never a 500.
MAX_LINE_BYTES = 8190
MAX_HEADERS = 64
_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context of TLS 1.2 or later for ``cert`` (PEM chain) and ``key``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert.expanduser(), key.expanduser())
    except (OSError, ssl.SSLError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"cannot load the TLS certificate {cert} with key {key}: {detail}"
        ) from exc
    return context


class _HeaderTimedHandler(web.RequestHandler):
    """aiohttp's protocol plus a deadline on a request's line and headers.

    aiohttp bounds only the wait *before* a request (keep-alive timeout), and measures it
    from the previous response, so a client that trickles its headers byte by byte holds the
    connection for the whole keep-alive period, every period. The timer starts at the first
    byte received while the handler waits for a request and stops when the parser has the
    whole head (``_request_count`` moves, for a request and for a parse error alike).
    """

    __slots__ = ("_header_timeout_s", "_header_timer")

    def __init__(self, manager: web.Server, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:
            self._stop_header_timer()
        elif data and self._header_timer is None and self._awaiting_request():
            self._header_timer = self._loop.call_later(
                self._header_timeout_s, self._header_timed_out
            )

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _awaiting_request(self) -> bool:
        # Only while the handler waits for a request is every byte part of a head: during a
        # request, bytes are its body (or a pipelined head, which the keep-alive timer bounds).
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        # A malformed request (line or header too long, too many headers) is the client's
        # doing: aiohttp would log a traceback for each, which lets any client flood the log.
        self.logger.debug("bad request from %s: %s", request.remote, message)
        response = web.Response(status=status, text=message, content_type="text/plain")
        response.force_close()
        return response

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport is not None and self._awaiting_request():
            self.transport.write(_REQUEST_TIMEOUT)
            self.force_close()


class _HeaderTimedServer(web.Server):
    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout_s = header_timeout_s

    def __call__(self) -> web.RequestHandler:
        return _HeaderTimedHandler(
            self, loop=self._loop, header_timeout_s=self._header_timeout_s, **self._kwargs
        )


class _HeaderTimedRunner(web.AppRunner):
    __slots__ = ("_header_timeout_s",)

    def __init__(self, app: web.Application, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout_s = header_timeout_s

    async def _make_server(self) -> web.Server:
        # The app's own server runs the start-up hooks and freezes the app; ours serves the
        # same handler and request factory with our protocol.
        plain = await super()._make_server()
        return _HeaderTimedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            header_timeout_s=self._header_timeout_s,
            **self._kwargs,
        )


class ServiceHttp:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        health: HealthCheck | None = None,
        ssl_context: ssl.SSLContext | None = None,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        self.app = web.Application()
        self._registry = registry
        self._health = health or (lambda: (True, {}))
        self._host = host
        self._requested_port = port
        self._ssl_context = ssl_context
        self._header_timeout_s = header_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/health", self._health_route)

    async def start(self) -> None:
        self._runner = _HeaderTimedRunner(
            self.app,
            header_timeout_s=self._header_timeout_s,
            access_log=None,
            keepalive_timeout=self._idle_timeout_s,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_LINE_BYTES,
            max_headers=MAX_HEADERS,
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self._host, self._requested_port, ssl_context=self._ssl_context
        )
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise EnvironmentProblem(
                f"cannot listen on {self._host}:{self._requested_port}: {exc.strerror}"
            ) from exc
        addresses = self._runner.addresses
        self.port = int(addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ServiceHttp:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health_route(self, _request: web.Request) -> web.Response:
        ok, detail = self._health()
        return web.json_response({"ok": ok, **detail}, status=200 if ok else 503)
