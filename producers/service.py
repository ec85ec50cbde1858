"""The long-running producer service: drop folder + HTTP intake + /metrics + /health.

``run()`` serves until :meth:`request_stop` (the CLI wires SIGTERM/SIGINT to it). Shutdown
is graceful: the watcher finishes the file it is publishing (bounded by the delivery
timeout), the HTTP server drains its requests, then the Kafka client flushes and closes.
"""

from __future__ import annotations

import asyncio

from enlace.core.clock import Clock, utc_now
from enlace.core.http import ServiceHttp, server_tls_context
from enlace.core.logs import get_logger
from enlace.core.registry import Registry
from producers.intake import HttpIntake
from producers.metrics import PublisherMetrics
from producers.publisher import Publisher
from producers.settings import PublisherSettings
from producers.watcher import FolderWatcher
from schemas.signing import AgencyKey

log = get_logger(__name__)


class PublisherService:
    def __init__(
        self,
        settings: PublisherSettings,
        *,
        key: AgencyKey | None = None,
        registry: Registry | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.metrics = PublisherMetrics(settings.agency)
        self.publisher = Publisher(
            settings, key=key, registry=registry, metrics=self.metrics, clock=clock
        )
        # Everything the service dates uses the publisher's clock (a drill's offset applied).
        clock = self.publisher.clock
        # Both refuse a bad configuration (no token, unreadable certificate) with a
        # ConfigError here, before anything connects or binds.
        intake = (
            HttpIntake(settings, self.publisher, clock=clock) if settings.intake_enabled else None
        )
        tls = (
            server_tls_context(settings.http_tls_cert, settings.http_tls_key)
            if settings.http_tls_cert is not None and settings.http_tls_key is not None
            else None
        )
        self.http = ServiceHttp(
            self.metrics.registry,
            host=settings.http_host,
            port=settings.http_port,
            health=self._health,
            ssl_context=tls,
            header_timeout_s=settings.http_header_timeout_s,
            idle_timeout_s=settings.http_idle_timeout_s,
        )
        if intake is not None:
            intake.install(self.http.app)
        self.watcher = (
            FolderWatcher(settings, self.publisher, clock=clock)
            if settings.watch_dir is not None
            else None
        )
        self._stop = asyncio.Event()
        self.started = asyncio.Event()

    def _health(self) -> tuple[bool, dict[str, object]]:
        detail: dict[str, object] = {
            "agency": self.settings.agency,
            "kafka": "ok" if self.publisher.healthy else "unacknowledged",
        }
        if self.watcher is not None:
            detail["files_awaiting_ack"] = self.watcher.awaiting
        return self.publisher.healthy, detail

    def request_stop(self) -> None:
        log.info("stop_requested", agency=self.settings.agency)
        self._stop.set()

    async def start(self) -> None:
        await self.publisher.start()
        try:
            await self.http.start()
        except BaseException:
            await self.publisher.stop()
            raise
        log.info("service_started", agency=self.settings.agency, http=self.http.url)
        self.started.set()

    async def stop(self) -> None:
        await self.http.stop()
        await self.publisher.stop()
        log.info("service_stopped", agency=self.settings.agency)

    async def run(self) -> None:
        await self.start()
        try:
            if self.watcher is not None:
                await self.watcher.run(self._stop)
            else:
                await self._stop.wait()
        finally:
            await self.stop()
