"""``enlace ops exporter``: every feed's lag as the broker sees it, for Prometheus.

Runs as the operator principal (Describe on feeds and partner groups, nothing else, see
``deploy/acl_plan.py``). Every ``interval_s`` it reads each feed's log start and last stable
offset and each partner group's committed offsets, and exports per agency
``enlace_feed_lag_records`` and ``enlace_feed_lag_seconds`` (``deploy/feed_lag.py``), so a
partner whose consumer died shows as lag that grows, and ``EnlaceFeedNotConsumed`` fires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import Field

from deploy.feed_lag import FeedLag, LagTracker, PartitionOffsets
from enlace.core import clients, topics
from enlace.core.closing import close_consumer
from enlace.core.errors import BrokerError, NotStarted
from enlace.core.http import ServiceHttp
from enlace.core.logs import get_logger
from enlace.core.registry import Registry
from enlace.core.settings import KafkaSettings

log = get_logger("enlace.ops.exporter")
DEFAULT_PORT = 9340
STOP_TIMEOUT_S = 10.0


class ExporterSettings(KafkaSettings):
    """The feed lag exporter. Environment: ``ENLACE_EXPORTER_HTTP_PORT``..."""

    exporter_http_port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    exporter_interval_s: float = Field(default=15.0, ge=0.2, le=3600)
    topic_prefix: str = ""


class ExporterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.records = Gauge(
            "enlace_feed_lag_records",
            "Releases in an agency's feed its consumer group has not committed (broker side).",
            ["agency"],
            registry=self.registry,
        )
        self.seconds = Gauge(
            "enlace_feed_lag_seconds",
            "How long the oldest uncommitted release has waited, as far as observed.",
            ["agency"],
            registry=self.registry,
        )
        self.observations = Counter(
            "enlace_feed_lag_observations",
            "Lag observations of every feed, by outcome (ok or failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.last_ok = Gauge(
            "enlace_feed_lag_last_observed_timestamp_seconds",
            "When every feed's lag was last observed.",
            registry=self.registry,
        )


class FeedLagExporter:
    """``start()`` connects, ``run()`` observes until ``request_stop()``, ``stop()`` closes."""

    def __init__(
        self,
        settings: ExporterSettings,
        agencies: Sequence[str],
        *,
        metrics: ExporterMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.agencies = tuple(agencies)
        self.metrics = metrics or ExporterMetrics()
        self._clock = clock
        self._tracker = LagTracker()
        self._stop = asyncio.Event()
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: Any = None
        self._last_ok: float | None = None
        self.http = ServiceHttp(
            self.metrics.registry, port=settings.exporter_http_port, health=self.health
        )

    def feed(self, agency: str) -> str:
        return f"{self.settings.topic_prefix}{topics.feed(agency)}"

    def group(self, agency: str) -> str:
        return topics.consumer_group(agency, self.settings.topic_prefix)

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(**self.settings.client_kwargs())
        consumer = clients.consumer(self.settings, group_id=None)
        try:
            await admin.start()
            await consumer.start()
        except KafkaError as exc:
            await admin.close()
            await close_consumer(consumer)
            raise BrokerError(f"the feed lag exporter cannot reach Kafka: {exc!r}") from exc
        self._admin, self._consumer = admin, consumer
        await self.http.start()
        log.info("exporter_listening", url=self.http.url, agencies=len(self.agencies))

    async def stop(self) -> None:
        await self.http.stop()
        if self._consumer is not None:
            await close_consumer(self._consumer, STOP_TIMEOUT_S)
            self._consumer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def __aenter__(self) -> FeedLagExporter:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def health(self) -> tuple[bool, dict[str, object]]:
        now = self._clock()
        fresh = (
            self._last_ok is not None
            and now - self._last_ok < 3 * self.settings.exporter_interval_s
        )
        return fresh, {
            "last_observed_s_ago": None if self._last_ok is None else now - self._last_ok
        }

    async def _offsets(self, agency: str) -> dict[int, PartitionOffsets]:
        if self._admin is None or self._consumer is None:
            raise NotStarted("the feed lag exporter is not started")
        topic = self.feed(agency)
        described = await self._admin.describe_topics([topic])
        partitions = sorted(
            int(part["partition"])
            for found in described
            if found.get("topic") == topic and not found.get("error_code")
            for part in found.get("partitions", ())
        )
        if not partitions:
            return {}  # no such feed (yet): nothing waits in it
        tps = [TopicPartition(topic, p) for p in partitions]
        starts = await self._consumer.beginning_offsets(tps)
        ends = await self._consumer.end_offsets(tps)
        committed = await self._admin.list_consumer_group_offsets(self.group(agency))
        out: dict[int, PartitionOffsets] = {}
        for tp in tps:
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else None
            out[tp.partition] = PartitionOffsets(int(starts[tp]), int(ends[tp]), offset)
        return out

    async def observe(self) -> list[FeedLag]:
        """One observation of every feed; the gauges move only when all of it succeeded."""
        try:
            offsets = {agency: await self._offsets(agency) for agency in self.agencies}
        except KafkaError as exc:
            self.metrics.observations.labels("failed").inc()
            raise BrokerError(f"reading feed offsets failed: {exc!r}") from exc
        now = self._clock()
        lags = [self._tracker.observe(now, agency, parts) for agency, parts in offsets.items()]
        for lag in lags:
            self.metrics.records.labels(lag.agency).set(lag.records)
            self.metrics.seconds.labels(lag.agency).set(lag.seconds)
        self.metrics.observations.labels("ok").inc()
        self.metrics.last_ok.set(now)
        self._last_ok = now
        return lags

    async def run(self) -> None:
        """Observe every ``interval_s`` until :meth:`request_stop`; a failed observation is
        logged and counted, and the next one tried (the gauges keep their last values)."""
        async with self:
            while not self._stop.is_set():
                try:
                    await self.observe()
                except BrokerError as exc:
                    log.warning("feed_lag_observation_failed", error=str(exc))
                try:
                    await asyncio.wait_for(self._stop.wait(), self.settings.exporter_interval_s)
                except TimeoutError:
                    continue

    def request_stop(self) -> None:
        self._stop.set()


def exporter_for(settings: ExporterSettings) -> FeedLagExporter:
    """The exporter over every agency of the registry (no network until started)."""
    return FeedLagExporter(settings, Registry.load(settings.agencies_file).ids)
