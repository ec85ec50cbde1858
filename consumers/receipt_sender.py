"""Sending the receipts the store marks pending: after each batch, and after a crash.

The store is the ledger: a bulletin is stored with its receipt ``pending`` in the same
transaction, the receipt is sent (idempotent producer, acknowledged within our deadline),
then marked ``sent``. A crash between the two repeats the receipt with the same event id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from aiokafka import AIOKafkaProducer

from consumers.receipts import publish_events, receipt_event
from consumers.sinks import SqliteSink
from enlace.core.errors import DeliveryError, SinkError
from enlace.core.logs import get_logger
from schemas.signing import AgencyKey

log = get_logger(__name__)

RECEIPT_BATCH = 500
RECEIPT_RETRY_S = 5.0
# Marks a bulletin of our own that came back on our feed: no receipt to oneself.
SELF_RECEIPT = "n/a:own-bulletin"


class ReceiptSender:
    def __init__(
        self,
        *,
        agency: str,
        store: SqliteSink,
        producer: AIOKafkaProducer,
        key: AgencyKey,
        topic: str,
        timeout_s: float,
        clock: Callable[[], datetime],
        on_sent: Callable[[int], None] | None = None,
        after_ack: Callable[[int], None] | None = None,
    ) -> None:
        self.agency = agency
        self._store = store
        self._producer = producer
        self._key = key
        self._topic = topic
        self._timeout_s = timeout_s
        self._clock = clock
        self._on_sent = on_sent
        self._after_ack = after_ack  # fault drills: between the broker's ack and the mark
        self._retry_at = 0.0
        self.sent = 0

    async def flush(self) -> None:
        """Send every pending receipt; on failure, back off and leave them pending."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            return
        while True:
            try:
                pending = await self._store.pending_receipts(RECEIPT_BATCH)
            except SinkError as exc:
                self._back_off(loop, "receipts_unread", exc)
                return
            if not pending:
                return
            now = self._clock()
            events = [
                receipt_event(self.agency, p.origin, p.bulletin_id, now=now)
                for p in pending
                if p.origin != self.agency
            ]
            try:
                await publish_events(
                    self._producer, self._topic, events, self._key, timeout_s=self._timeout_s
                )
            except DeliveryError as exc:
                self._back_off(loop, "receipts_failed", exc)
                return
            if self._after_ack is not None:
                self._after_ack(len(events))
            sent = [(str(e.bulletin_id), e.event_id, now) for e in events]
            own = [(p.bulletin_id, SELF_RECEIPT, now) for p in pending if p.origin == self.agency]
            try:
                await self._store.mark_receipts_sent(sent + own)
            except SinkError as exc:
                # Sent but not marked (the store's disk is full): they stay pending and go out
                # again later with the same event ids, which the router counts once.
                self._back_off(loop, "receipts_unmarked", exc)
                return
            self.sent += len(events)
            if self._on_sent is not None:
                self._on_sent(len(events))
            if len(pending) < RECEIPT_BATCH:
                return

    def _back_off(self, loop: asyncio.AbstractEventLoop, event: str, exc: Exception) -> None:
        log.warning(event, agency=self.agency, error=str(exc), retry_in_s=RECEIPT_RETRY_S)
        self._retry_at = loop.time() + RECEIPT_RETRY_S
