"""Progress of a router's trust catch-up at start: a long history is slow, not stuck."""

from __future__ import annotations

import asyncio
import time

from broker.settings import RouterSettings
from enlace.core.logs import get_logger

log = get_logger(__name__)


class CatchUpLog:
    """Progress of the trust catch-up: a log line every few seconds, and the start-up
    deadline pushed back whenever records were read."""

    EVERY_S = 10.0

    def __init__(self, deadline: asyncio.Timeout | None, settings: RouterSettings) -> None:
        self._deadline = deadline
        self._limit = settings.startup_timeout_seconds
        self._began = self._logged = time.monotonic()
        self._last_read = 0

    def __call__(self, read: int, total: int) -> None:
        now = time.monotonic()
        if read > self._last_read and self._deadline is not None:
            self._deadline.reschedule(asyncio.get_running_loop().time() + self._limit)
        self._last_read = read
        if now - self._logged < self.EVERY_S:
            return
        self._logged = now
        rate = read / max(now - self._began, 1e-9)
        log.info("trust_catch_up", read=read, total=total, per_second=round(rate),
                 eta_s=round((total - read) / rate) if rate > 0 else None)  # fmt: skip
