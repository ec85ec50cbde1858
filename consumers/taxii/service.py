"""The TAXII server as a service: from its settings, migrated store, until asked to stop.

Run standalone by ``enlace taxii serve`` or beside a feed consumer
(``enlace consumer run --taxii``), where the consumer's own store is served.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from consumers.store import BulletinStore
from consumers.taxii.server import Credentials, TaxiiMetrics, TaxiiServer
from consumers.taxii.settings import TaxiiSettings
from enlace.core.errors import ConfigError
from enlace.core.http import server_tls_context
from enlace.core.logs import get_logger
from enlace.core.registry import Registry

log = get_logger("enlace.taxii")
_LOOPBACK = ("127.", "::1", "localhost")


def credentials_of(settings: TaxiiSettings) -> Credentials:
    return Credentials(
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        token=settings.token.get_secret_value() if settings.token else None,
        anonymous=settings.anonymous,
    )


def build_server(
    settings: TaxiiSettings, db: Path, *, metrics: TaxiiMetrics | None = None
) -> TaxiiServer:
    """A server over ``db`` as ``settings`` say (no network until ``start()``)."""
    tls = (
        server_tls_context(settings.tls_cert, settings.tls_key)
        if settings.tls_cert is not None and settings.tls_key is not None
        else None
    )
    if tls is None and not settings.host.startswith(_LOOPBACK):
        # Basic credentials and tokens in clear text off this host: say so, loudly.
        log.warning("taxii_without_tls", listen=settings.listen)
    return TaxiiServer(
        db,
        credentials_of(settings),
        host=settings.host,
        port=settings.port,
        title=settings.title,
        max_page=settings.max_page,
        misp_feed=settings.misp_feed,
        ssl_context=tls,
        read_threads=settings.read_threads,
        metrics=metrics,
    )


class TaxiiService:
    """``enlace taxii serve``: the store at ``settings.db``, brought to this release's schema
    (which indexes a store made before the TAXII index), then served until stopped."""

    def __init__(self, settings: TaxiiSettings) -> None:
        if settings.db is None:
            raise ConfigError("no store to serve: give --db (env ENLACE_TAXII_DB)")
        self.settings = settings
        self.db = settings.db
        self._stop = asyncio.Event()

    def _migrate(self) -> None:
        names = {a.id: a.name for a in Registry.load(self.settings.agencies_file)}
        BulletinStore.open(self.db, create=False, agency_names=names).close()

    async def run(self) -> None:
        await asyncio.to_thread(self._migrate)
        async with build_server(self.settings, self.db) as server:
            log.info("taxii_serving", db=str(self.db), url=server.url)
            await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()
