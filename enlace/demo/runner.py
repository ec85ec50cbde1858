"""Runs the demo: the router process, a publisher and a consumer per agency, the story.

Publishers and consumers are the real services (``producers.Publisher``,
``consumers.FeedConsumer``) running as tasks in this process, each with its own ``/metrics``;
the router is a separate ``enlace router run`` process. Kafka is whatever the settings point
at (the CLI starts a local one when none is configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from broker.policy import Policy
from consumers.receipts import feedback_event, incident_event, publish_events
from consumers.service import Delivery, FeedConsumer
from consumers.settings import ConsumerSettings
from deploy.prometheus_targets import host_port, write_prometheus_dir
from enlace.core import clients, topics
from enlace.core.errors import EnlaceError
from enlace.core.http import ServiceHttp
from enlace.core.logs import get_logger
from enlace.core.registry import Registry
from enlace.core.settings import KafkaSettings
from enlace.core.topics import ensure_topics, exchange_topics, outbound, receipts
from enlace.demo.accounting import RERELEASE_RULES, Books, Verdict
from enlace.demo.lifecycle import LifecycleWatch
from enlace.demo.setup import (
    RouterProcess,
    agency_keys,
    free_port,
    write_demo_policy,
    write_key_directory,
)
from enlace.demo.stats import LeakWatch, Rate, percentile
from enlace.demo.story import IMPOSTOR_REASON, RECALL_REASON, Arrival, Story, feedback_for, plan
from enlace.demo.tails import ScoreSnapshot, Tails
from producers.publisher import DeliveryResult, Publisher
from producers.settings import PublisherSettings
from producers.synthetic import BulletinGenerator
from schemas.agency_key import AgencyKey
from schemas.envelope import Sealed
from schemas.models import AuditRecord, ThreatBulletin, validate_bulletin
from schemas.vocab import Category, Classification

log = get_logger(__name__)
TAMPERED_BYTE = 20

FEEDBACK_FLUSH_S = 0.5
CATEGORY_TRIES = 25


@dataclass(frozen=True)
class DemoOptions:
    seconds: float
    rate: float
    seed: int
    state_dir: Path
    agencies_file: Path
    policy_file: Path
    metrics_port_base: int = 0  # 0: any free ports
    kafka_metrics: tuple[str, ...] = ()  # host:port of the local broker's JMX exporter agent
    drain_seconds: float = 120.0
    router_prefix: str = topics.ROUTER_PREFIX


@dataclass
class DemoState:
    """Everything the view shows; mutated by the run's tasks, read by the renderer."""

    options: DemoOptions
    story: Story
    books: Books
    started: float = field(default_factory=time.monotonic)
    phase: str = "starting"
    published: Rate = field(default_factory=Rate)
    routed: Rate = field(default_factory=Rate)
    delivered: Rate = field(default_factory=Rate)
    latencies: list[float] = field(default_factory=list)
    dead_reasons: Counter[str] = field(default_factory=Counter)
    scores: dict[tuple[str, str], ScoreSnapshot] = field(default_factory=dict)
    endpoints: list[tuple[str, str]] = field(default_factory=list)
    leak: LeakWatch | None = None
    lifecycle: LifecycleWatch | None = None
    publish_failures: int = 0
    feedback_sent: Counter[str] = field(default_factory=Counter)
    events: list[str] = field(default_factory=list)
    prometheus_config: Path | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def latency_ms(self, q: float) -> float | None:
        value = percentile(self.latencies[-5000:], q)
        return None if value is None else value * 1000


class Demo:
    def __init__(self, settings: KafkaSettings, options: DemoOptions) -> None:
        self.settings = settings
        self.options = options
        self.registry = Registry.load(options.agencies_file)
        self.policy = Policy.load(options.policy_file)
        story = plan(
            self.registry.ids, seconds=options.seconds, rate=options.rate, seed=options.seed
        )
        self.state = DemoState(options, story, Books(len(self.registry) - 1))
        self.state.leak = LeakWatch(story.leak_originator, story.leak_partner)
        self.state.lifecycle = LifecycleWatch(
            story.rerelease_originator, story.recall_originator, story.recall_impostor
        )
        self._rng = random.Random(options.seed + 1)  # noqa: S311 - story dice, not secrets
        self._generator = BulletinGenerator(options.seed, self.registry)
        self._keys: dict[str, AgencyKey] = {}
        self._publishers: dict[str, Publisher] = {}
        self._consumers: list[FeedConsumer] = []
        self._http: list[ServiceHttp] = []
        self._router: RouterProcess | None = None
        self._raw: AIOKafkaProducer | None = None
        self._tails: Tails | None = None
        self._published_at: dict[str, float] = {}
        self._classification: dict[str, Classification] = {}
        self._feedback: list[tuple[str, str, str, str]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self, on_tick: Callable[[DemoState], None] | None = None) -> Verdict:
        try:
            await self._start()
            ticker = asyncio.create_task(self._tick(on_tick))
            self._tasks.append(ticker)
            await self._play()
            await self._drain()
        finally:
            await self._stop()
            if on_tick is not None:
                on_tick(self.state)
        return self.state.books.verdict()

    async def _start(self) -> None:
        state_dir = self.options.state_dir
        self.state.phase = "preparing"
        await ensure_topics(
            self.settings,
            exchange_topics(
                self.registry.ids,
                partitions=self.settings.topic_partitions,
                replication=self.settings.topic_replication,
                min_insync=self.settings.topic_min_insync,
                router_prefix=self.options.router_prefix,
            ),
        )
        self._keys = agency_keys(self.registry, state_dir / "keys")
        keys_file = state_dir / "keys.yaml"
        write_key_directory(self._keys, keys_file)
        self._tails = Tails(
            self.settings, on_audit=self._on_audit, on_dead=self._on_dead, on_score=self._on_score
        )
        await self._tails.start()
        self._tasks.append(asyncio.create_task(self._follow_tails()))
        self.state.phase = "starting the router"
        policy = write_demo_policy(
            self.options.policy_file,
            state_dir / "policy.yaml",
            self.state.story.rerelease_originator,
        )
        port = self._port(0) or free_port()
        self._router = RouterProcess.spawn(
            self.settings,
            agencies=self.options.agencies_file,
            policy=policy,
            keys=keys_file,
            log_path=state_dir / "logs" / "router.log",
            prefix=self.options.router_prefix,
            port=port,
        )
        self.state.endpoints.append(("router", self._router.metrics_url))
        await self._router.wait_ready()
        self.state.phase = "starting 11 publishers and 11 consumers"
        self._raw = clients.producer(self.settings)
        await self._raw.start()
        for index, agency in enumerate(self.registry.ids):
            await self._start_agency(index, agency, keys_file)
        self._tasks.append(asyncio.create_task(self._send_feedback()))
        self._write_prometheus()

    def _write_prometheus(self) -> None:
        """A Prometheus config for this run (``prometheus --config.file=<state
        dir>/prometheus/prometheus.yml``): every endpoint the demo started, nothing else."""
        by_role: dict[str, list[str]] = {"router": [], "producer": [], "consumer": []}
        for name, url in self.state.endpoints:
            by_role[name.split(" ", 1)[0]].append(host_port(url))
        config = write_prometheus_dir(
            self.options.state_dir / "prometheus",
            {
                "enlace-router": by_role["router"],
                "enlace-producers": by_role["producer"],
                "enlace-consumers": by_role["consumer"],
                "kafka": list(self.options.kafka_metrics),
            },
        )
        self.state.prometheus_config = config

    async def _start_agency(self, index: int, agency: str, keys: Path) -> None:
        publisher = Publisher(
            PublisherSettings(**self._kafka_fields(), agency=agency, keys_file=keys),
            key=self._keys[agency],
            registry=self.registry,
        )
        await publisher.start()
        self._publishers[agency] = publisher
        store = self.options.state_dir / "stores" / f"{agency}.sqlite"
        store.parent.mkdir(parents=True, exist_ok=True)
        consumer = FeedConsumer(
            ConsumerSettings(
                **self._kafka_fields(),
                agency=agency,
                sinks=(f"sqlite:{store}",),
                keys_file=keys,
                state_dir=self.options.state_dir,
            ),
            key=self._keys[agency],
            on_delivery=self._on_delivery,
            on_recall=lambda item, _outcome: self.state.books.on_recall_delivery(
                item.bulletin_id, agency
            ),
        )
        await consumer.start()
        self._consumers.append(consumer)
        self._tasks.append(asyncio.create_task(consumer.run()))
        for role, registry, offset in (
            ("producer", publisher.metrics.registry, 1 + index),
            ("consumer", consumer.metrics.registry, 21 + index),
        ):
            http = ServiceHttp(registry, port=self._port(offset))
            await http.start()
            self._http.append(http)
            self.state.endpoints.append((f"{role} {agency}", f"{http.url}/metrics"))

    def _kafka_fields(self) -> dict[str, Any]:
        """The run's Kafka connection and layout, handed to every service it starts."""
        fields = set(KafkaSettings.model_fields) - {"agencies_file"}
        return {
            **self.settings.model_dump(include=fields),
            "agencies_file": self.options.agencies_file,
        }

    def _port(self, offset: int) -> int:
        base = self.options.metrics_port_base
        return base + offset if base else 0

    async def _stop(self) -> None:
        self.state.phase = "stopping"
        for consumer in self._consumers:
            consumer.request_stop()
        for task in self._tasks:
            task.cancel()
        for task in [*self._tasks, *self._inflight]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for consumer in self._consumers:
            with contextlib.suppress(Exception):
                await consumer.stop()
        for publisher in self._publishers.values():
            with contextlib.suppress(Exception):
                await publisher.stop()
        if self._raw is not None:
            await self._raw.stop()
        if self._tails is not None:
            await self._tails.stop()
        for http in self._http:
            await http.stop()
        if self._router is not None:
            code = await asyncio.to_thread(self._router.stop)
            log.info("demo_router_stopped", exit_code=code)
        self.state.phase = "done"

    async def _tick(self, on_tick: Callable[[DemoState], None] | None) -> None:
        while True:
            await asyncio.sleep(0.5)
            if on_tick is not None:
                on_tick(self.state)

    # -- the story -------------------------------------------------------------------------
    async def _play(self) -> None:
        story = self.state.story
        self.state.phase = "exchanging"
        self.state.started = time.monotonic()
        leaked = showcased = recalled = False
        for index, arrival in enumerate(story.arrivals):
            if not leaked and arrival.at >= story.leak_at:
                await self._leak()
                leaked = True
            if not showcased and arrival.at >= story.showcase_at:
                self._spawn(self._publish_showcase())
                showcased = True
            if not recalled and arrival.at >= story.recall_at:
                self._spawn(self._recall())
                recalled = True
            delay = arrival.at - self.state.elapsed()
            if delay > 0:
                await asyncio.sleep(delay)
            self._spawn(self._publish(arrival, index))
        if not leaked:
            await self._leak()
        if not showcased:
            self._spawn(self._publish_showcase())
        if not recalled:
            self._spawn(self._recall())
        remaining = self.options.seconds - self.state.elapsed()
        if remaining > 0:
            await asyncio.sleep(remaining)
        await asyncio.gather(*self._inflight, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _bulletin(self, arrival: Arrival) -> ThreatBulletin:
        now = datetime.now(UTC)
        bulletin = self._generator.next(now, origin=arrival.origin)
        if arrival.category is not None:
            for _ in range(CATEGORY_TRIES):
                if bulletin.category is arrival.category:
                    break
                bulletin = self._generator.next(now, origin=arrival.origin)
        # Fresh ids: the seed fixes the story's content, not identities across runs.
        return bulletin.model_copy(update={"bulletin_id": str(uuid.uuid4())})

    def _showcase(self, origin: str) -> ThreatBulletin:
        """A CONFIDENTIAL bulletin with a RESTRICTED tearline in a category every agreement
        level above none shares, for every partner, valid for a week: a partner scoring
        between 0.35 and 0.6 gets its tearline (rule score_tearline) and, once its score
        reaches 0.6, the full text again."""
        now = datetime.now(UTC)
        fields = self._generator.fields(now, origin=origin)
        fields.update(
            bulletin_id=str(uuid.uuid4()),
            issued_at=now.isoformat(),
            valid_until=(now + timedelta(days=7)).isoformat(),
            category=Category.DRUG_TRAFFICKING.value,
            classification=Classification.CONFIDENTIAL.value,
            tearline_classification=Classification.RESTRICTED.value,
            tlp="AMBER",
            releasable_to=[],
            caveats=[],
        )
        return validate_bulletin(fields)

    async def _publish_showcase(self) -> None:
        lifecycle = self.state.lifecycle
        assert lifecycle is not None
        bulletin = self._showcase(lifecycle.rerelease_originator)
        if await self._send(lifecycle.rerelease_originator, bulletin) is not None:
            lifecycle.showcase_id = bulletin.bulletin_id

    async def _send(
        self, origin: str, bulletin: ThreatBulletin
    ) -> tuple[ThreatBulletin, Sealed] | None:
        """Seal and publish one bulletin into the books; the sealed record, or None if it was
        not acknowledged (then it is out of the books again)."""
        publisher = self._publishers[origin]
        sealed_bulletin, sealed = publisher.seal(bulletin, datetime.now(UTC))
        bid = sealed_bulletin.bulletin_id
        # Books first: the router may decide before our acknowledgement arrives.
        self.state.books.on_published(bid, origin, sealed_bulletin.classification)
        self._classification[bid] = sealed_bulletin.classification
        self._published_at[bid] = time.time()
        (outcome,) = await publisher.send_sealed([(sealed_bulletin, sealed)])
        if not isinstance(outcome, DeliveryResult):
            self.state.publish_failures += 1
            del self.state.books.published[bid]
            log.warning("demo_publish_failed", bulletin_id=bid, origin=origin)
            return None
        self.state.published.add(time.monotonic())
        return sealed_bulletin, sealed

    async def _publish(self, arrival: Arrival, index: int) -> None:
        publisher = self._publishers[arrival.origin]
        sent = await self._send(arrival.origin, self._bulletin(arrival))
        if sent is None:
            return
        sealed_bulletin, sealed = sent
        bid = sealed_bulletin.bulletin_id
        story = self.state.story
        if index % story.resend_every == story.resend_every - 1:
            self.state.books.on_resent(bid)
            await publisher.send_sealed([(sealed_bulletin, sealed)])  # a publisher's retry
        if index % story.bad_every == story.bad_every - 1:
            await self._inject_tampered(arrival.origin, sealed)

    async def _inject_tampered(self, origin: str, sealed: Sealed) -> None:
        """A record altered after signing (a broken relay, or worse): must be dead-lettered."""
        assert self._raw is not None
        key = f"tampered-{uuid.uuid4()}".encode()
        value = bytearray(sealed.value)
        # A byte of what the originator signed (just past the Avro header: the bulletin, or
        # a sealed record's envelope). The router cannot check a sealed record's key wraps,
        # only their recipient can (it quarantines a tampered one), so a flip there would
        # reach the partner instead of the dead letters.
        value[TAMPERED_BYTE] ^= 0x20
        self.state.books.on_injected_bad(key)
        await (await self._raw.send(outbound(origin), bytes(value), key=key,
                                    headers=sealed.headers))  # fmt: skip

    async def _leak(self) -> None:
        assert self._raw is not None
        leak = self.state.leak
        assert leak is not None
        event = incident_event(
            leak.originator,
            leak.partner,
            "leak",
            None,
            note="demo: partner reported for leaking a shared bulletin",
            now=datetime.now(UTC),
        )
        await publish_events(
            self._raw, receipts(leak.originator), [event], self._keys[leak.originator],
            timeout_s=30,
        )  # fmt: skip
        leak.leaked_at = time.time()
        self.state.events.append(
            f"{self.state.elapsed():5.1f}s  {leak.originator} reports a LEAK by {leak.partner}"
        )
        log.info("demo_leak_reported", originator=leak.originator, partner=leak.partner)

    def _recallable(self, origin: str) -> str | None:
        """The first bulletin of ``origin`` in the books routed to every partner and released
        to at least one (a recall of it then reaches someone)."""
        books = self.state.books
        held = {bid for bid, _ in books.released}
        partners = Counter(bid for bid, _ in books.decisions)
        for bid, (published_by, _) in books.published.items():
            routed = partners[bid] >= books.partners_per_bulletin
            if published_by == origin and bid in held and routed:
                return bid
        return None

    async def _recall(self) -> None:
        """The story's recall (Publisher.recall), then the impostor's of the same bulletin on
        its own outbound topic, which the router must dead-letter (recall_not_originator)."""
        lifecycle = self.state.lifecycle
        assert lifecycle is not None
        origin, impostor = lifecycle.recall_originator, lifecycle.impostor
        loop = asyncio.get_running_loop()
        # A loaded machine routes seconds behind; the drain's bound is the run's patience.
        wait = self.options.drain_seconds
        deadline = loop.time() + wait
        bid = self._recallable(origin)
        while bid is None and loop.time() < deadline:
            await asyncio.sleep(0.25)
            bid = self._recallable(origin)
        if bid is None:
            lifecycle.recall_failed = f"no bulletin of {origin} was routed in {wait:g} s"
            return
        try:
            receipt = await self._publishers[origin].recall(bid, RECALL_REASON)
        except EnlaceError as exc:
            lifecycle.recall_failed = str(exc)
            log.warning("demo_recall_failed", bulletin_id=bid, origin=origin, error=str(exc))
            return
        self.state.books.on_recall(bid)
        lifecycle.on_recall_sent(self.state.elapsed(), bid, receipt.recall_id)
        log.info("demo_recalled", bulletin_id=bid, origin=origin, recall_id=receipt.recall_id)
        impostor_pub = self._publishers[impostor]
        # Books first, as for bulletins: the dead letter may come before the acknowledgement.
        self.state.books.on_refused_recall(
            impostor_pub.topic, bid.encode("ascii"), "recall_not_originator"
        )
        try:
            await impostor_pub.recall(bid, IMPOSTOR_REASON)
        except EnlaceError as exc:
            del self.state.books.refused_recalls[impostor_pub.topic, bid.encode("ascii")]
            log.warning("demo_impostor_recall_failed", bulletin_id=bid, error=str(exc))
            return
        lifecycle.impostor_sent = True

    async def _drain(self) -> None:
        """Stop publishing; wait until everything published is accounted for (bounded)."""
        self.state.phase = "draining"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.drain_seconds
        # The books change from several callbacks; a poll with a deadline is the simple join.
        while loop.time() < deadline and not self.state.books.settled():  # noqa: ASYNC110
            await asyncio.sleep(0.25)

    # -- observations ----------------------------------------------------------------------
    def _on_delivery(self, delivery: Delivery) -> None:
        bid = delivery.bulletin.bulletin_id
        self.state.books.on_delivery(bid, delivery.agency, delivery.release.value)
        published = self._published_at.get(bid)
        if published is not None:
            self.state.latencies.append(max(0.0, time.time() - published))
            self.state.delivered.add(time.monotonic())
        verdict = feedback_for(delivery.agency, self._rng.random())
        leak = self.state.leak
        if (
            leak is not None
            and leak.leaked_at is not None
            and (delivery.bulletin.origin, delivery.agency) == (leak.originator, leak.partner)
        ):
            verdict = None  # the story: under investigation, it stops answering that originator
        if verdict is not None and bid in self.state.books.published:
            self._feedback.append((delivery.agency, delivery.bulletin.origin, bid, verdict))

    async def _send_feedback(self) -> None:
        while True:
            await asyncio.sleep(FEEDBACK_FLUSH_S)
            pending, self._feedback = self._feedback, []
            by_partner: dict[str, list[tuple[str, str, str]]] = {}
            for partner, origin, bid, verdict in pending:
                by_partner.setdefault(partner, []).append((origin, bid, verdict))
            for partner, items in by_partner.items():
                now = datetime.now(UTC)
                events = [feedback_event(partner, o, b, v, note=None, now=now) for o, b, v in items]
                assert self._raw is not None
                await publish_events(
                    self._raw, receipts(partner), events, self._keys[partner], timeout_s=30
                )
                self.state.feedback_sent.update(v for _, _, v in items)

    async def _follow_tails(self) -> None:
        assert self._tails is not None
        while True:
            await self._tails.poll()

    def _on_audit(self, audit: AuditRecord) -> None:
        books = self.state.books
        known = audit.bulletin_id in books.published
        books.on_audit(audit.bulletin_id, audit.partner, audit.decision, audit.rule)
        if not known or audit.decision in ("DUPLICATE", "RECALLED"):
            return
        if audit.rule in RERELEASE_RULES:
            lifecycle = self.state.lifecycle
            assert lifecycle is not None
            lifecycle.on_rerelease(
                self.state.elapsed(),
                (audit.origin, audit.partner),
                audit.bulletin_id,
                audit.decision,
                audit.score,
            )
            return
        leak = self.state.leak
        if leak and (audit.origin, audit.partner) == (leak.originator, leak.partner):
            leak.observe(
                audit.decided_at.timestamp(),
                audit.decision,
                audit.score,
                self._classification.get(audit.bulletin_id),
                leak_weight=sum(-f.value for f in audit.factors if f.name == "incident_leak"),
            )
        routed_now = sum(1 for (b, _p) in books.decisions if b == audit.bulletin_id)
        if routed_now == books.partners_per_bulletin:
            self.state.routed.add(time.monotonic())

    def _on_dead(self, key: bytes | None, reason: str, source: str) -> None:
        if source.startswith(("enlace.outbound.", "enlace.receipts.")):
            self.state.dead_reasons[reason] += 1
        self.state.books.on_dead_letter(key, reason, source)

    def _on_score(self, snapshot: ScoreSnapshot) -> None:
        self.state.scores[snapshot.originator, snapshot.partner] = snapshot
