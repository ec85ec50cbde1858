"""The router's trust snapshots: start from the newest, and write new ones while it is the writer.

Start-up (:meth:`TrustSnapshots.restore`) reads the newest snapshot (``broker.snapshots``),
checks that this router may continue it (``broker.trust_image.refusal``), fills the state and
returns the offsets the trust feed resumes from; anything else (no snapshot, a refused or
unreadable one) returns None and the feed replays history, with the reason logged and counted
(``enlace_router_trust_starts_total{source}``).

Writing (:meth:`TrustSnapshots.run`): every router instance holds the whole trust state, so any
of them could write; exactly one does, the owner of the writer partition (the first outbound
topic's partition 0, which the router group gives to one instance at a time), with a
transactional id that fences the previous writer. A snapshot is due when the interval has
passed or enough records were folded since the last one, and only if something was folded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from broker import trust_image
from broker.metrics import RouterMetrics
from broker.settings import RouterSettings
from broker.snapshots import SnapshotWriter, out_of_range, read_newest
from broker.trust_state import TrustState
from broker.trust_view import TrustFeed
from enlace.core.clock import Clock
from enlace.core.errors import BrokerError, EnlaceError, ValidationError
from enlace.core.logs import get_logger
from enlace.core.registry import Registry
from enlace.core.settings import KafkaSettings
from enlace.core.topics import trust_snapshot_transactional_id, trust_snapshots_topic
from schemas.key_directory import KeyDirectory

log = get_logger(__name__)

CHECK_S = 1.0  # how often the writer looks whether a snapshot is due
DEFAULT_TOPIC = trust_snapshots_topic()
REFUSED_OFFSETS = "offsets"  # the records after the snapshot are not all there any more


async def load_newest(
    settings: KafkaSettings,
    state: TrustState,
    keys: KeyDirectory,
    registry: Registry,
    topic: str = DEFAULT_TOPIC,
) -> tuple[trust_image.Offsets | None, str]:
    """Fill ``state`` from the newest usable snapshot: (offsets to resume from, source), where
    source is ``snapshot`` or why history must be replayed instead."""
    try:
        stored = await read_newest(settings, topic)
    except ValidationError as exc:
        log.warning("trust_snapshot_unreadable", error=str(exc))
        return None, "unreadable"
    if stored is None:
        return None, "none"
    try:
        image = await asyncio.to_thread(trust_image.decode, stored.blob)
    except ValidationError as exc:
        log.warning("trust_snapshot_unreadable", error=str(exc))
        return None, "unreadable"
    refused = trust_image.refusal(image, state, keys)
    gone = await out_of_range(settings, image.offsets) if refused is None else ""
    if gone:
        refused = (REFUSED_OFFSETS, gone)
    if refused is not None:
        reason, why = refused
        log.warning("trust_snapshot_refused", reason=reason, why=why, fix="replaying history")
        return None, reason
    trust_image.restore(state, image, registry.ids)
    log.info(
        "trust_snapshot_loaded",
        snapshot=stored.manifest.snapshot_id,
        created_at=image.created_at.isoformat(),
        bytes=len(stored.blob),
        releases=state.remembered_releases(),
    )
    return image.offsets, "snapshot"


class TrustSnapshots:
    def __init__(
        self,
        settings: RouterSettings,
        state: TrustState,
        feed: TrustFeed,
        *,
        keys: KeyDirectory,
        registry: Registry,
        metrics: RouterMetrics,
        is_writer: Callable[[], bool],
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._state = state
        self._feed = feed
        self._keys = keys
        self._registry = registry
        self._metrics = metrics
        self._is_writer = is_writer
        self._clock = clock
        self._topic = trust_snapshots_topic(settings.router_prefix)
        self._writer: SnapshotWriter | None = None
        self._folded_at_last = 0
        self._last_at = time.monotonic()

    @property
    def is_writer(self) -> bool:
        return self._is_writer()

    @property
    def covered(self) -> int:
        """Records folded when the last snapshot this instance wrote was captured."""
        return self._folded_at_last

    async def restore(self) -> trust_image.Offsets | None:
        if not self._settings.trust_state_snapshots:
            self._metrics.trust_start.labels("disabled").inc()
            return None
        try:
            offsets, source = await load_newest(
                self._settings, self._state, self._keys, self._registry, self._topic
            )
        except BrokerError as exc:
            # The topic may be missing (an exchange provisioned before snapshots existed).
            log.warning("trust_snapshot_unavailable", error=str(exc), fix="enlace topics create")
            offsets, source = None, "unreadable"
        self._metrics.trust_start.labels(source).inc()
        return offsets

    async def run(self) -> None:
        if not self._settings.trust_state_snapshots:
            return
        try:
            while True:
                await asyncio.sleep(CHECK_S)
                if not self._is_writer():
                    await self._resign()
                elif self._due():
                    await self._write()
        finally:
            await asyncio.shield(self._resign())

    def _due(self) -> bool:
        folded = self._feed.records_folded - self._folded_at_last
        if folded <= 0:
            return False
        settings = self._settings
        elapsed = time.monotonic() - self._last_at
        return (
            elapsed >= settings.trust_state_snapshot_seconds
            or folded >= settings.trust_state_snapshot_records
        )

    async def _write(self) -> None:
        began = time.perf_counter()
        folded = self._feed.records_folded
        now = self._clock()
        # Captured synchronously: the state and the offsets it covers stay in step.
        image = trust_image.capture(self._state, self._feed.positions(), self._keys, now)
        try:
            if self._writer is None:
                prefix = self._settings.router_prefix
                self._writer = SnapshotWriter(
                    self._settings, trust_snapshot_transactional_id(prefix), self._topic
                )
                await self._writer.start()
            blob = await asyncio.to_thread(trust_image.encode, image)
            note = f"{image.releases} releases, {len(image.offsets)} partitions"
            manifest = await self._writer.write(blob, now, note)
        except EnlaceError as exc:
            self._metrics.trust_snapshots.labels("failed").inc()
            log.warning("trust_snapshot_failed", error=str(exc))
            await self._resign()  # a fenced or broken producer: start over next time
            self._last_at = time.monotonic()
            return
        self._folded_at_last, self._last_at = folded, time.monotonic()
        seconds = time.perf_counter() - began
        self._metrics.trust_snapshots.labels("written").inc()
        self._metrics.trust_snapshot_bytes.set(len(blob))
        self._metrics.trust_snapshot_seconds.observe(seconds)
        log.info("trust_snapshot_written", snapshot=manifest.snapshot_id, bytes=len(blob),
                 chunks=manifest.chunks, releases=image.releases,
                 seconds=round(seconds, 3))  # fmt: skip

    async def _resign(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with contextlib.suppress(Exception):
                await writer.stop()
