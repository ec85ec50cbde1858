"""The small HTTP server every service runs: ``/metrics`` (Prometheus) and ``/health``.

Services may add their own routes (the producer's intake adds ``POST /bulletins``). Binds to
127.0.0.1 by default; port 0 picks a free port (see :attr:`ServiceHttp.port`).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from enlace.core.errors import EnvironmentProblem

HealthCheck = Callable[[], tuple[bool, dict[str, object]]]


class ServiceHttp:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        health: HealthCheck | None = None,
    ) -> None:
        self.app = web.Application()
        self._registry = registry
        self._health = health or (lambda: (True, {}))
        self._host = host
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/health", self._health_route)

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._requested_port)
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
        return f"http://{self._host}:{self.port}"

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health_route(self, _request: web.Request) -> web.Response:
        ok, detail = self._health()
        return web.json_response({"ok": ok, **detail}, status=200 if ok else 503)
