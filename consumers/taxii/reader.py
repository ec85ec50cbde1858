"""Reads of the store for the TAXII server: a few threads, each with its own connection.

SQLite connections belong to the thread that made them, and a page read must not block the
event loop; WAL lets these readers run while the consumer writes. Connections are
``query_only``: the server never writes the store.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from enlace.core.errors import NotStarted, SinkError

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5_000
CACHE_KIB = 64 * 1024
MMAP_BYTES = 1 << 30


class StoreReader:
    def __init__(self, path: Path, *, threads: int = 4) -> None:
        self.path = path
        self._threads = threads
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                # check_same_thread off only so stop() can close it: one thread uses each.
                conn = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
                )
                conn.execute("PRAGMA query_only = ON")
                # Bodies are keyed by object id (random UUIDs): a page's lookups land on
                # scattered pages, so a larger cache (and mmap) keeps a page's cost from
                # growing with the store's size.
                conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
                conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
            except sqlite3.Error as exc:
                raise SinkError(f"cannot read store {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="enlace-taxii")

    async def stop(self) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        await asyncio.to_thread(pool.shutdown, wait=True)
        with self._lock:
            for conn in self._connections:
                # A connection made on another thread: closing it is safe once its thread
                # has finished (the pool is shut down).
                conn.close()
            self._connections.clear()

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None:
            raise NotStarted("the TAXII store reader is not started")

        def run() -> T:
            try:
                return fn(self._connection())
            except sqlite3.Error as exc:
                raise SinkError(f"store {self.path}: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._pool, run)
