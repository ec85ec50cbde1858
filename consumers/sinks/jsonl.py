"""``jsonl:PATH`` — one JSON object per line, appended, fsynced once per batch.

At-least-once: a consumer killed after the append and before the offset commit appends the
same bulletins again on restart (the ``bulletin_id`` field lets readers dedupe; the SQLite
store is the exactly-once record). A recall is a ``{"type": "recall", ...}`` line after the
bulletin's (readers dedupe on ``recall_id``). Quarantined records go to ``<stem>.quarantine.jsonl``
next to it, with their bytes in base64.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from consumers.records import Item, Quarantined
from consumers.sinks.base import Sink, WriteResult
from enlace.core.errors import SinkError


def quarantine_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.quarantine.jsonl")


class JsonlSink(Sink):
    kind = "jsonl"

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.path = Path(target)
        self.quarantine_path = quarantine_path(self.path)
        self._files: dict[Path, IO[bytes]] = {}
        self._ends: dict[Path, int] = {}  # where the last whole batch ends, per file

    async def start(self) -> None:
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)

    async def stop(self) -> None:
        files, self._files = self._files, {}
        self._ends.clear()
        for handle in files.values():
            await asyncio.to_thread(handle.close)

    def _append(self, path: Path, lines: list[bytes]) -> None:
        handle = self._files.get(path)
        if handle is None:
            # Unbuffered: after a failed write (disk full, EFBIG past RLIMIT_FSIZE) no buffer is
            # left holding part of the batch, to be flushed ahead of the retry.
            handle = path.open("ab", buffering=0)
            self._files[path] = handle
            self._ends[path] = handle.seek(0, os.SEEK_END)
        start = self._ends[path]
        if handle.seek(0, os.SEEK_END) != start:
            # A failed batch left a torn tail that its truncate could not remove: cut it first.
            handle.truncate(start)
        data = memoryview(b"".join(lines))
        try:
            while data:
                data = data[handle.write(data) or 0 :]  # raw writes may be short
            os.fsync(handle.fileno())
        except OSError:
            # Cut a half-written batch off so a retry does not leave a torn line behind.
            handle.truncate(start)
            raise
        self._ends[path] = start + sum(map(len, lines))

    def _write_sync(self, items: Sequence[Item]) -> None:
        good: list[bytes] = []
        bad: list[bytes] = []
        for item in items:
            line = json.dumps(item.summary_json(), ensure_ascii=False, separators=(",", ":"))
            # Bulletins and recalls ({"type": "recall"}) in the feed's order in one file.
            (bad if isinstance(item, Quarantined) else good).append(line.encode("utf-8") + b"\n")
        try:
            if good:
                self._append(self.path, good)
            if bad:
                self._append(self.quarantine_path, bad)
        except OSError as exc:
            raise SinkError(f"sink {self.name}: {exc}") from exc

    async def write(self, items: Sequence[Item]) -> WriteResult:
        await asyncio.to_thread(self._write_sync, items)
        return WriteResult()
