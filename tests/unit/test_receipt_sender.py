"""The receipt sender when the store cannot mark receipts sent (its disk is full): the
consumer keeps running, the receipts stay pending and go out again with the same ids."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from consumers.receipt_sender import ReceiptSender
from consumers.sinks import SqliteSink
from consumers.store import PendingReceipt
from enlace.core.errors import SinkError
from schemas.signing import AgencyKey

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
CR = AgencyKey.generate("cr-msp", valid_from=datetime(2026, 1, 1, tzinfo=UTC))


class FullStore:
    """Pending receipts that cannot be marked sent until ``space`` returns."""

    def __init__(self) -> None:
        self.pending = [PendingReceipt("6f1c7d2e-8b3a-4c5d-9e0f-1a2b3c4d5e6f", "pa-senafront")]
        self.space = False

    async def pending_receipts(self, limit: int) -> list[PendingReceipt]:
        return self.pending[:limit]

    async def mark_receipts_sent(self, sent: Sequence[tuple[str, str, datetime]]) -> None:
        if not self.space:
            raise SinkError("store inbox.sqlite3: disk I/O error")
        done = {bulletin_id for bulletin_id, _, _ in sent}
        self.pending = [p for p in self.pending if p.bulletin_id not in done]


class Producer:
    def __init__(self) -> None:
        self.keys: list[bytes] = []

    async def send(self, _topic: str, *, value: bytes, key: bytes, headers: Any) -> Any:
        del value, headers
        self.keys.append(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_unmarked_receipts_back_off_and_repeat_with_the_same_id() -> None:
    store, producer = FullStore(), Producer()
    sender = ReceiptSender(
        agency="cr-msp",
        store=cast("SqliteSink", store),  # the two store calls the sender makes, faked
        producer=cast("Any", producer),
        key=CR,
        topic="enlace.receipts.cr-msp",
        timeout_s=5,
        clock=lambda: NOW,
    )
    await sender.flush()  # sent, not marked: no exception, nothing counted
    assert len(producer.keys) == 1
    assert sender.sent == 0
    assert store.pending
    await sender.flush()  # backing off: nothing sent again at once
    assert len(producer.keys) == 1

    store.space = True
    sender._retry_at = 0.0  # the back-off elapsed
    await sender.flush()
    assert producer.keys == [producer.keys[0]] * 2  # the same event id, sent again
    assert sender.sent == 1
    assert not store.pending
