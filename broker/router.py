"""The router service: verified, trust-gated, exactly-once fan-out from outbound to feeds.

Assembles the pieces: :class:`TrustFeed` (live trust state from receipts and audit),
:class:`SeenLoader` (replay index), :class:`TransactionalEngine` driving
:class:`RouterHandler`, the trust-score snapshot publisher and the HTTP endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import timedelta

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from broker.admission import Limits
from broker.catch_up import CatchUpLog
from broker.engine import TransactionalEngine
from broker.metrics import RouterMetrics
from broker.outbound_reader import OutboundReader
from broker.outputs import Source, dead_letter
from broker.policy import Policy
from broker.replay import SeenIndex, SeenLoader
from broker.routing import RouterHandler, RoutingContext
from broker.settings import RouterSettings
from broker.trust_snapshots import TrustSnapshots
from broker.trust_state import Folded, Outcome, TrustLimits, TrustState
from broker.trust_view import RejectedEvent, TrustFeed
from enlace.core import clients
from enlace.core.clock import Clock, offset_clock, utc_now
from enlace.core.closing import close_producer
from enlace.core.errors import BrokerError, KafkaUnavailable
from enlace.core.http import ServiceHttp
from enlace.core.logs import get_logger
from enlace.core.registry import Registry
from enlace.core.runtime import freeze_heap
from enlace.core.topics import DEADLETTER, TRUST_SCORES, outbound, receipts
from schemas.key_directory import KeyDirectory

log = get_logger(__name__)


class Router:
    def __init__(
        self,
        settings: RouterSettings,
        registry: Registry,
        policy: Policy,
        keys: KeyDirectory,
        *,
        clock: Clock = utc_now,
        metrics: RouterMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.policy = policy
        self.metrics = metrics or RouterMetrics()
        # The drill's offset (zero outside drills) shifts every reading of "now" the router
        # makes: admission window, trust decay, audit and replay-index times.
        clock = offset_clock(clock, settings.fault_clock_offset_s)
        if settings.fault_clock_offset_s:
            log.warning("router_clock_offset_drill", offset_s=settings.fault_clock_offset_s)
        self._clock = clock
        limits = Limits(
            max_record_bytes=settings.max_record_bytes,
            max_future=timedelta(seconds=settings.max_future_seconds),
            max_past=timedelta(seconds=settings.max_past_seconds),
        )
        self.context = RoutingContext(registry, policy, keys, limits)
        trust_limits = TrustLimits(
            max_past=timedelta(seconds=settings.trust_event_max_past_seconds),
            max_future=limits.max_future,
            orphans_per_reporter=settings.trust_orphans_per_reporter,
            event_ids_per_reporter=settings.trust_event_ids_per_reporter,
            release_memory=timedelta(days=settings.trust_release_memory_days),
            releases_per_partner=settings.trust_releases_per_partner,
        )
        self.trust = TrustState(
            policy,
            registry.ids,
            trust_limits,
            on_bound=lambda bound: self.metrics.trust_bounds_hit.labels(bound).inc(),
        )
        self._trust_feed = TrustFeed(
            settings,
            self.trust,
            keys,
            receipt_topics=[receipts(a) for a in registry.ids],
            on_reject=self._reject_event,
            on_folded=self._count_event,
            on_skipped=lambda reason: self.metrics.trust_records_skipped.labels(reason).inc(),
            # Six reciprocity half-lives: older releases weigh under 2 %.
            audit_horizon=timedelta(days=6 * policy.evidence.reciprocity.half_life_days),
            clock=clock,
            live_share=settings.trust_live_share,
        )
        # Rejected trust events wait here for the one task that dead-letters them: a flood
        # of junk costs a bounded queue, never a task per record.
        self._rejected: asyncio.Queue[RejectedEvent] = asyncio.Queue(
            settings.trust_deadletter_queue
        )
        self.seen = SeenIndex(limits.max_past + limits.max_future)
        self._seen_loader = SeenLoader(
            settings,
            self.seen,
            on_skipped=lambda reason: self.metrics.trust_records_skipped.labels(reason).inc(),
        )
        # Releases when trust is earned re-read what was withheld: only if the policy switches
        # them on for some originator (otherwise no reader, and no due work at all).
        rereleasing = any(policy.rerelease_enabled(a) for a in registry.ids)
        self._outbound_reader = OutboundReader(settings) if rereleasing else None
        self.handler = RouterHandler(
            self.context,
            self.trust,
            self.seen,
            self._seen_loader,
            self.metrics,
            clock=clock,
            # The engine is built below: bind late.
            partitions=lambda topic: self.engine.partition_count(topic),  # noqa: PLW0108
            reader=self._outbound_reader,
        )
        self.engine = TransactionalEngine(
            settings,
            self.handler,
            self.metrics,
            topics=[outbound(a) for a in registry.ids],
            group_id=settings.group_id,
            transactional_prefix=settings.router_prefix,
            max_batch=settings.router_max_batch,
            poll_ms=settings.router_poll_ms,
            session_timeout_ms=settings.router_session_timeout_ms,
            metadata_max_age_ms=settings.router_metadata_max_age_ms,
            abort_ratio=settings.fault_abort_ratio,
            abort_seed=settings.fault_seed,
            due=self.handler if rereleasing else None,
            due_interval_s=settings.rerelease_interval_seconds,
        )
        # The snapshot writer's partition: the router group gives it to one instance at a time.
        writer_partition = TopicPartition(outbound(min(registry.ids)), 0)
        self.snapshots = TrustSnapshots(
            settings,
            self.trust,
            self._trust_feed,
            keys=keys,
            registry=registry,
            metrics=self.metrics,
            is_writer=lambda: writer_partition in self.engine.assignment,
            clock=clock,
        )
        self.http = ServiceHttp(
            self.metrics.registry,
            host=settings.http_host,
            port=settings.http_port,
            health=self._health,
        )
        self._side_producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = False
        self._stop_requested = asyncio.Event()
        self._deadline: asyncio.Timeout | None = None

    async def start(self) -> None:
        """Start everything; the start-up timeout bounds each step, and while the trust state
        is read from history it restarts at every fetch that makes progress (a long history
        is slow, not stuck)."""
        limit = self.settings.startup_timeout_seconds
        try:
            async with asyncio.timeout(limit) as self._deadline:
                await self._start()
        except TimeoutError as exc:
            await self.stop()
            raise KafkaUnavailable(
                f"router not ready: no progress within {limit:.0f}s; "
                f"is Kafka up at {self.settings.kafka_bootstrap} and are topics created?"
            ) from exc
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        await self.http.start()
        self._side_producer = clients.producer(self.settings)
        try:
            await self._side_producer.start()
        except KafkaError as exc:
            raise KafkaUnavailable(f"cannot reach Kafka: {exc!r}") from exc
        began = time.perf_counter()
        resume = await self.snapshots.restore()
        await self._trust_feed.start(resume)
        await self._trust_feed.catch_up(CatchUpLog(self._deadline, self.settings))
        self.metrics.trust_start_seconds.set(time.perf_counter() - began)
        log.info(
            "router_trust_ready",
            seconds=round(time.perf_counter() - began, 3),
            from_snapshot=resume is not None,
            records=self._trust_feed.records_folded,
            releases=self.trust.remembered_releases(),
        )
        await self._seen_loader.start()
        if self._outbound_reader is not None:
            await self._outbound_reader.start()
        await self.engine.start()
        self._tasks = [
            asyncio.create_task(self.engine.run(), name="router-engine"),
            asyncio.create_task(self._follow_trust(), name="router-trust"),
            asyncio.create_task(self._publish_scores(), name="router-scores"),
            asyncio.create_task(self._send_rejected(), name="router-trust-deadletters"),
            asyncio.create_task(self.snapshots.run(), name="router-trust-snapshots"),
        ]
        self._ready = True
        log.info(
            "router_started",
            agencies=len(self.registry),
            group=self.settings.group_id,
            metrics=f"{self.http.url}/metrics",
        )

    async def stop(self) -> None:
        """Finish or abort the transaction in flight, then close everything."""
        self._ready = False
        await self.engine.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._trust_feed.stop()
        await self._seen_loader.stop()
        if self._outbound_reader is not None:
            await self._outbound_reader.stop()
        if self._side_producer is not None:
            await close_producer(self._side_producer)
            self._side_producer = None
        await self.http.stop()
        log.info("router_stopped")

    async def __aenter__(self) -> Router:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Start, route until :meth:`request_stop` or a background task fails, and stop
        (always); a failure is raised after the stop."""
        self._stop_requested.clear()
        async with self:
            freeze_heap()
            stopped = asyncio.create_task(self._stop_requested.wait())
            failed = asyncio.create_task(self.wait())
            done, pending = await asyncio.wait(
                {stopped, failed}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            for task in done:
                task.result()
            log.info("router_stop_requested")

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop (safe from a signal handler)."""
        self._stop_requested.set()

    async def wait(self) -> None:
        """Return when a background task ends (which only happens on failure or stop)."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and (exc := task.exception()) is not None:
                # Logged here, before the stop: what stops the router must be in its log even
                # if the process cannot get as far as printing the traceback.
                log.error("router_task_failed", task=task.get_name(), exc_info=exc)
                raise BrokerError(f"router task {task.get_name()} failed") from exc

    def _health(self) -> tuple[bool, dict[str, object]]:
        return self._ready, {
            "assigned_partitions": len(self.engine.assignment),
            "replay_ids": len(self.seen),
            "trust_events": self.trust.events_applied,
            "trust_orphans": self.trust.orphans(),
            "trust_event_ids": self.trust.remembered_ids(),
            "trust_releases": self.trust.remembered_releases(),
        }

    async def _follow_trust(self) -> None:
        while True:
            await self._trust_feed.poll(timeout_ms=500)
            self._trust_feed.sweep(self._clock())
            self.metrics.assigned.set(len(self.engine.assignment))
            remembered = self.metrics.trust_remembered
            remembered.labels("releases").set(self.trust.remembered_releases())
            remembered.labels("orphans").set(self.trust.orphans())
            remembered.labels("event_ids").set(self.trust.remembered_ids())

    async def _publish_scores(self) -> None:
        """Write the current matrix to the compacted trust-scores topic and the gauges."""
        while True:
            await asyncio.sleep(self.settings.trust_snapshot_seconds)
            now = self._clock()
            producer = self._side_producer
            assert producer is not None
            futures = []
            for originator in self.registry.ids:
                for partner in self.registry.ids:
                    if partner == originator:
                        continue
                    score = self.trust.score(originator, partner, self.policy, now)
                    self.metrics.trust_score.labels(originator, partner).set(score.value)
                    reached = self.policy.reached(score.value)
                    body = {
                        "originator": originator,
                        "partner": partner,
                        "score": round(score.value, 6),
                        "reaches": reached.value if reached else None,
                        "at": now.isoformat(),
                        "factors": [
                            {"name": f.name, "value": round(f.value, 6), "note": f.note}
                            for f in score.factors
                        ],
                    }
                    futures.append(
                        await producer.send(
                            TRUST_SCORES,
                            json.dumps(body).encode(),
                            key=f"{originator}->{partner}".encode(),
                        )
                    )
            with contextlib.suppress(KafkaError):
                await asyncio.gather(*futures)

    def _count_event(self, folded: Folded) -> None:
        if folded.outcome is Outcome.COUNTED and folded.kind is not None:
            self.metrics.trust_events.labels(folded.kind.value).inc()
        elif folded.outcome is Outcome.IGNORED:
            self.metrics.trust_events_ignored.labels(folded.reason).inc()

    def _reject_event(self, rejected: RejectedEvent) -> None:
        """A bad trust event: counted, and queued for the dead-letter topic once per router
        instance (each instance reads every receipts topic, so with N instances it may be
        dead-lettered N times; its key names its source, for de-duplication downstream)."""
        if rejected.replayed:
            return  # dead-lettered when it first arrived; history is re-read at every start
        self.metrics.trust_events_rejected.labels(rejected.reason).inc()
        record = rejected.record
        log.warning("trust_event_rejected", reason=rejected.reason, topic=record.topic)
        try:
            self._rejected.put_nowait(rejected)
        except asyncio.QueueFull:
            # The record stays in the receipts topic (kept forever) and is counted above.
            self.metrics.trust_bounds_hit.labels("deadletter_queue").inc()

    async def _send_rejected(self) -> None:
        """Dead-letter rejected trust events, a bounded batch at a time."""
        while True:
            batch = [await self._rejected.get()]
            while len(batch) < 500 and not self._rejected.empty():
                batch.append(self._rejected.get_nowait())
            producer = self._side_producer
            if producer is None:
                continue
            futures = []
            for rejected in batch:
                record = rejected.record
                out = dead_letter(
                    key=f"{record.topic}/{record.partition}/{record.offset}".encode(),
                    value=record.value,
                    headers=record.headers,
                    source=Source(record.topic, record.partition, record.offset),
                    reason=rejected.reason,
                    message=rejected.message,
                )
                try:
                    futures.append(
                        await producer.send(
                            DEADLETTER, out.value, key=out.key, headers=list(out.headers)
                        )
                    )
                except KafkaError as exc:  # e.g. too large even for the dead letters
                    log.warning("trust_deadletter_refused", reason=rejected.reason, error=repr(exc))
            for result in await asyncio.gather(*futures, return_exceptions=True):
                if isinstance(result, Exception):
                    log.warning("trust_deadletter_failed", error=repr(result))
