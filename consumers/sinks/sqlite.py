"""``sqlite:PATH`` — the embedded store as a sink; all SQLite calls on one worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from consumers.gaps import FeedGap
from consumers.records import Item
from consumers.sinks.base import Sink, WriteResult
from consumers.store import BulletinStore, PendingReceipt
from enlace.core.errors import NotStarted

T = TypeVar("T")


class SqliteSink(Sink):
    kind = "sqlite"

    def __init__(self, target: str, *, agency_names: Mapping[str, str] | None = None) -> None:
        super().__init__(target)
        self.path = Path(target)
        self._names = dict(agency_names or {})
        self._executor: ThreadPoolExecutor | None = None
        self._store: BulletinStore | None = None

    async def _call(self, fn: Callable[[BulletinStore], T]) -> T:
        if self._executor is None or self._store is None:
            raise NotStarted(f"sink {self.name} is not started")
        store = self._store
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, store)

    async def start(self) -> None:
        # One thread owns the connection: sqlite3 objects must stay on the thread that made them.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="enlace-sqlite")
        loop = asyncio.get_running_loop()
        self._store = await loop.run_in_executor(
            self._executor, lambda: BulletinStore.open(self.path, agency_names=self._names)
        )

    async def stop(self) -> None:
        if self._executor is None:
            return
        if self._store is not None:
            await self._call(BulletinStore.close)
            self._store = None
        self._executor.shutdown(wait=True)
        self._executor = None

    async def write(self, items: Sequence[Item]) -> WriteResult:
        def work(store: BulletinStore) -> WriteResult:
            # One transaction for the whole poll: one fsync, not one per kind of record.
            done = store.write_poll(items)
            return WriteResult(done.stored, recalls=done.recalls, links=done.links)

        return await self._call(work)

    async def origins_of(self, ids: Sequence[str]) -> dict[str, str]:
        """The origin of each of ``ids`` the store holds (to screen recalls)."""
        return await self._call(lambda store: store.origins_of(ids))

    async def pending_receipts(self, limit: int) -> list[PendingReceipt]:
        return await self._call(lambda store: store.pending_receipts(limit))

    async def mark_receipts_sent(self, sent: Sequence[tuple[str, str, datetime]]) -> None:
        await self._call(lambda store: store.mark_receipts_sent(sent))

    async def record_gaps(self, gaps: Sequence[FeedGap]) -> list[FeedGap]:
        """Keep feed gaps; the parts not recorded before (see BulletinStore.record_gaps)."""
        return await self._call(lambda store: store.record_gaps(gaps))
