"""The drop-folder service loop: claim stable files, publish them whole, finish or retry.

A file is all-or-nothing for validation: if any line is invalid nothing of it is sent and it
goes to ``failed/`` with its ``.error``; the agency fixes it and drops it again. (Publishing
the valid lines of a refused file would give them ids derived from the old content, and the
fixed file would re-publish them under new ids.) A file whose bulletins are not all
acknowledged stays in ``processing/`` and is re-sent with backoff until they are; meanwhile
no new file is claimed, so an outage leaves new files untouched in the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from enlace.core.clock import Clock, utc_now
from enlace.core.errors import BulletinRefused, CodecError, SignatureError, ValidationError
from enlace.core.logs import get_logger
from producers.dropfolder import Claim, DropFolder, stable
from producers.inputs import Problem, iter_chunks, parse_input
from producers.prepare import prepare_items
from producers.publisher import DeliveryResult, Publisher
from producers.settings import PublisherSettings
from schemas.envelope import Sealed
from schemas.models import ThreatBulletin

log = get_logger(__name__)

FileResult = Literal["done", "failed", "retry"]
FIRST_RETRY_S = 1.0


@dataclass
class _Retry:
    claim: Claim
    attempts: int = 0
    due: float = 0.0
    acked: set[str] = field(default_factory=set)


def sealed_file(
    publisher: Publisher, claim: Claim, data: bytes
) -> tuple[list[tuple[ThreatBulletin, Sealed]], list[Problem]]:
    """Every bulletin of a claimed file, sealed, or the problems that refuse the file."""
    parsed = parse_input(data, name=claim.path.name)
    ready, problems = prepare_items(
        parsed.items, publisher.agency, claim.claimed_at, digest=parsed.digest
    )
    problems = [*parsed.problems, *problems]
    records: list[tuple[ThreatBulletin, Sealed]] = []
    for item, bulletin in ready:
        try:
            records.append(publisher.seal(bulletin, claim.claimed_at))
        except (CodecError, ValidationError, SignatureError, BulletinRefused) as exc:
            problems.append(Problem(item.line, "(record)", str(exc), bulletin.bulletin_id))
    return records, problems


class FolderWatcher:
    def __init__(
        self, settings: PublisherSettings, publisher: Publisher, *, clock: Clock = utc_now
    ) -> None:
        if settings.watch_dir is None:
            raise ValueError("watch_dir is not set")
        self.folder = DropFolder(settings.watch_dir)
        self.settings = settings
        self.publisher = publisher
        self._clock = clock
        self._retries: dict[Path, _Retry] = {}

    @property
    def awaiting(self) -> int:
        """Claimed files whose bulletins are not all acknowledged yet."""
        return len(self._retries)

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set; a file being published is finished first."""
        self.folder.ensure()
        for claim in self.folder.pending(self._clock()):
            log.info("file_resumed", file=claim.path.name)
            self._retries[claim.path] = _Retry(claim)
        log.info("watching", folder=str(self.folder.root), resumed=len(self._retries))
        previous: dict[str, tuple[int, int]] = {}
        while not stop.is_set():
            await self._retry_due(stop)
            current = self.folder.snapshot()
            if not self._retries:
                for name in stable(previous, current):
                    if stop.is_set() or self._retries:
                        break
                    claimed = self.folder.claim(name, self._clock())
                    current.pop(name)
                    if claimed is not None:
                        await self._handle(_Retry(claimed))
            previous = current
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.watch_interval_s)

    async def _retry_due(self, stop: asyncio.Event) -> None:
        now = time.monotonic()
        for state in sorted(self._retries.values(), key=lambda r: r.claim.path.name):
            if stop.is_set():
                return
            if state.due <= now:
                await self._handle(state)

    async def _handle(self, state: _Retry) -> FileResult:
        result = await self.process(state)
        metrics = self.publisher.metrics
        metrics.files[result].inc()
        if result == "retry":
            state.attempts += 1
            delay = min(FIRST_RETRY_S * 2 ** (state.attempts - 1), self.settings.watch_retry_max_s)
            state.due = time.monotonic() + delay
            self._retries[state.claim.path] = state
            log.warning(
                "file_not_acknowledged",
                file=state.claim.path.name,
                attempts=state.attempts,
                retry_in_s=delay,
                acknowledged=len(state.acked),
            )
        else:
            self._retries.pop(state.claim.path, None)
        return result

    async def process(self, state: _Retry) -> FileResult:
        """Publish one claimed file; ``acked`` carries ids acknowledged by earlier attempts."""
        claim = state.claim
        try:
            data = claim.path.read_bytes()
        except OSError as exc:
            self.folder.finish_failed(claim, [f"(file): cannot read: {exc.strerror}"])
            log.warning("file_failed", file=claim.path.name, problems=1)
            return "failed"
        # Parsing, validating and signing a large file is CPU work: keep the loop (HTTP
        # intake, health) responsive while it runs.
        records, problems = await asyncio.to_thread(sealed_file, self.publisher, claim, data)
        if problems:
            rejected = len({p.line for p in problems})
            self.publisher.metrics.reject("invalid", rejected)
            target = self.folder.finish_failed(claim, [p.describe() for p in problems])
            log.warning("file_failed", file=target.name, problems=len(problems))
            return "failed"
        todo = [rec for rec in records if rec[0].bulletin_id not in state.acked]
        missing = 0
        for chunk in iter_chunks(todo, self.settings.max_batch):
            for outcome in await self.publisher.send_sealed(chunk):
                if isinstance(outcome, DeliveryResult):
                    state.acked.add(outcome.bulletin_id)
                else:
                    missing += 1
        if missing:
            return "retry"
        target = self.folder.finish_done(claim)
        log.info("file_done", file=target.name, bulletins=len(records))
        return "done"
