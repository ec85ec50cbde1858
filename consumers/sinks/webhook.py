"""``webhook:URL`` — POST each delivery as JSON, in order, retrying with exponential backoff.

A recall is POSTed as ``{"type": "recall", "recall_id", "bulletin_id", "origin",
"recalled_at", "reason", ...}`` (``Idempotency-Key: recall:<recall_id>``), after the bulletin.

Deferred: ``write`` only puts records in a bounded buffer, and one worker POSTs them in
offset order. A failing endpoint is retried forever (capped backoff with jitter; every
non-2xx answer counts as a failure, so nothing is silently dropped). While it fails, the
other sinks keep storing until the buffer is full, then the feed waits; offsets are
committed only up to what the webhook has acknowledged. At-least-once: a restart re-POSTs
what was not committed; the ``Idempotency-Key`` header lets the receiver dedupe.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence

import aiohttp
from yarl import URL

from consumers.records import Delivered, Item, Quarantined, Recalled
from consumers.sinks.base import Sink, WriteResult
from enlace.core.errors import SinkError
from enlace.core.logs import get_logger

log = get_logger(__name__)

INITIAL_BACKOFF_S = 0.2
STOP_FLUSH_S = 5.0
_jitter = random.Random()  # noqa: S311 - retry jitter, not security


def idempotency_key(item: Item) -> str:
    if isinstance(item, Delivered):
        return f"{item.bulletin_id}:{item.release.value}"
    if isinstance(item, Recalled):
        return f"recall:{item.recall.recall_id}"
    rec = item.record
    return f"quarantine:{rec.topic}:{rec.partition}:{rec.offset}"


def backoff_delays(initial: float, cap: float) -> Callable[[int], float]:
    """Delay before retry ``attempt`` (1-based): exponential, capped, with ±20 % jitter."""

    def delay(attempt: int) -> float:
        base: float = min(cap, initial * (2 ** min(attempt - 1, 30)))
        return base * _jitter.uniform(0.8, 1.2)

    return delay


class WebhookSink(Sink):
    kind = "webhook"
    deferred = True

    def __init__(
        self,
        target: str,
        *,
        buffer: int = 1000,
        timeout_s: float = 10.0,
        max_backoff_s: float = 30.0,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(target)
        self.url = target
        self._host = URL(target).host
        self._queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=buffer)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._delay = backoff_delays(INITIAL_BACKOFF_S, max_backoff_s)
        self._on_error = on_error
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None
        self._in_flight = 0
        self.delivered = 0
        self.failures = 0

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._worker = asyncio.create_task(self._run(), name=f"webhook {self._host}")

    async def stop(self) -> None:
        if self._worker is not None:
            # Give the buffer a moment to drain; what is left is redelivered after restart.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), STOP_FLUSH_S)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _drained(self) -> None:
        await self._queue.join()

    def buffered(self) -> int:
        return self._queue.qsize() + self._in_flight

    async def write(self, items: Sequence[Item]) -> WriteResult:
        if self._worker is None or self._worker.done():
            raise SinkError(f"sink {self.name} is not running")
        for item in items:
            await self._queue.put(item)  # waits while the buffer is full: bounded backlog
        return WriteResult()

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            self._in_flight = 1
            try:
                await self._deliver(item)
                self.mark_held(item.record.topic, item.record.partition, item.record.offset)
                self.delivered += 1
            finally:
                self._in_flight = 0
                self._queue.task_done()

    async def _deliver(self, item: Item) -> None:
        assert self._session is not None
        body = (
            item.summary_json(with_bytes=False)
            if isinstance(item, Quarantined)
            else item.summary_json()
        )
        headers = {"Idempotency-Key": idempotency_key(item)}
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._session.post(self.url, json=body, headers=headers) as resp:
                    if 200 <= resp.status < 300:
                        return
                    problem = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = type(exc).__name__
            self.failures += 1
            if self._on_error is not None:
                self._on_error()
            delay = self._delay(attempt)
            log.warning(
                "webhook_retry",
                host=self._host,  # never the full URL: it may carry a token
                problem=problem,
                attempt=attempt,
                retry_in_s=round(delay, 2),
                bulletin_id=None if isinstance(item, Quarantined) else item.bulletin_id,
            )
            await asyncio.sleep(delay)
