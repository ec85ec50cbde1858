"""One partner consumer as a long-lived service: the feed consumer and its HTTP endpoint
(``/metrics``, ``/health``), run by :func:`enlace.core.runtime.serve` like the other two."""

from __future__ import annotations

import signal

from consumers.metrics import ConsumerMetrics
from consumers.service import FeedConsumer
from consumers.settings import ConsumerSettings
from consumers.taxii.server import TaxiiServer
from consumers.taxii.service import build_server
from consumers.taxii.settings import TaxiiSettings
from enlace.core.http import ServiceHttp
from enlace.core.logs import get_logger

log = get_logger(__name__)


def ignore_file_size_signal() -> None:
    """A write past the file-size limit (``RLIMIT_FSIZE``, a quota) then fails with EFBIG
    instead of killing the process: the sinks turn it into a SinkError, retried with backoff,
    the offsets stay where the sinks are, and /health and the sink-error metric show it. Killed
    by SIGXFSZ, the consumer would restart into the same wall without saying why."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


class ConsumerService:
    def __init__(self, settings: ConsumerSettings, *, taxii: TaxiiSettings | None = None) -> None:
        self.metrics = ConsumerMetrics()
        self.consumer = FeedConsumer(settings, metrics=self.metrics)
        self.http = (
            ServiceHttp(self.metrics.registry, port=settings.http_port, health=self.consumer.health)
            if settings.http_port is not None
            else None
        )
        self._taxii_settings = taxii
        self.taxii: TaxiiServer | None = None

    async def run(self) -> None:
        """Consume until :meth:`request_stop`; the HTTP endpoints live as long as the feed
        (the TAXII server starts once the consumer has opened, and so migrated, its store)."""
        ignore_file_size_signal()
        async with self.consumer:
            if self.http is not None:
                await self.http.start()
                log.info("http_listening", url=self.http.url)
            try:
                if self._taxii_settings is not None and self._taxii_settings.db is not None:
                    self.taxii = build_server(self._taxii_settings, self._taxii_settings.db)
                    await self.taxii.start()
                await self.consumer.run()
            finally:
                if self.taxii is not None:
                    await self.taxii.stop()
                if self.http is not None:
                    await self.http.stop()

    def request_stop(self) -> None:
        self.consumer.request_stop()
