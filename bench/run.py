"""One benchmark run: micro-costs, raw Kafka, transactional copy, Enlace publish and end to end.

Phases run one after the other on the same broker; each uses its own topics under a run token,
all deleted at the end. Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import pstats
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench import machine
from bench.consumer_phase import consumer_phase
from bench.cpu import CpuUse, CpuWindow
from bench.exchange import Exchange
from bench.kafka_env import broker_pid, delete_topics, topic_records
from bench.micro import measure, profile_handler, top_functions
from bench.pipeline import (
    end_to_end_fixed,
    end_to_end_flat,
    publish_only,
    publisher,
    router_child,
    warm_up,
)
from bench.plan import Plan
from bench.procs import Child
from bench.raw import Measured, Payload, fixed_rate, flat_out
from bench.report import BenchResult, Row
from bench.scrape import TxnCounters, read_counters
from bench.taxii_phase import taxii_phase
from bench.tracker import Tracker
from enlace.core import clients
from enlace.core.settings import KafkaSettings
from enlace.core.topics import (
    AUDIT,
    ROUTER_SEEN,
    TopicSpec,
    ensure_topics,
    exchange_topics,
    feed,
    outbound,
    receipts,
)
from schemas.envelope import seal
from tests.samples import sample_bulletin

RAW = "Raw Kafka: produce → consume"
COPY = "Raw transactional copy (router engine, no logic)"
PUBLISH = "Enlace publish only"
E2E = "Enlace end to end: publish → router → feed"
IDLE_S = 3.0


class Progress:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def __call__(self, message: str) -> None:
        print(f"[{self.elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


def bench_topics(token: str) -> dict[str, str]:
    base = f"bench.{token}"
    return {
        "raw": f"{base}.raw",
        "copy_in": f"{base}.copy.in",
        "copy_out": f"{base}.copy.out",
        "fan_in": f"{base}.fanout.in",
        "fan_out": f"{base}.fanout.out",
        "publish": f"{base}.publish",
    }


def payload_of(exchange: Exchange) -> Payload:
    origin = exchange.origins[0]
    sealed = seal(sample_bulletin(origin), exchange.keys[origin])
    return Payload(sealed.value, sealed.headers)


def row(
    stage: str,
    load: str,
    m: Measured,
    unit: str,
    note: str = "",
    *,
    cpu: tuple[CpuUse, str] | None = None,
) -> Row:
    """A table row from a measurement; lost records and CPU use go into the note."""
    notes = [note] if note else []
    if m.count - m.arrived:
        notes.append(f"{m.count - m.arrived} of {m.count} NOT ARRIVED")
    if cpu is not None:
        notes.append(cpu[0].describe(m.count, cpu[1]))
    return Row(stage, load, m.count, m.rate, unit, m.latency, "; ".join(notes),
               cpu[0].as_dict() if cpu else None)  # fmt: skip


class Run:
    def __init__(
        self,
        settings: KafkaSettings,
        plan: Plan,
        *,
        exchange: Exchange,
        workdir: Path,
        result: BenchResult,
        progress: Progress,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.exchange = exchange
        self.workdir = workdir
        self.result = result
        self.progress = progress
        self.topics = bench_topics(exchange.token)
        self.payload = payload_of(exchange)
        self.outputs_per_bulletin = 1.0
        self.broker_pid = broker_pid(settings.kafka_bootstrap)

    def _cpu(self, **pids: int | None) -> CpuWindow:
        return CpuWindow({**pids, "broker": self.broker_pid})

    # -- set-up ----------------------------------------------------------------------------
    def micro(self) -> None:
        self.progress(f"micro-costs ({self.plan.micro_iterations} iterations each)")
        costs, outputs = measure(self.exchange, self.plan.micro_iterations)
        self.result.micro = costs
        self.outputs_per_bulletin = outputs
        self.progress("profiling the router's handler in memory")
        self.result.hotspots["Router handler in memory"] = profile_handler(
            self.exchange, max(200, self.plan.micro_iterations // 2)
        )

    async def provision(self) -> None:
        plan, s = self.plan, self.settings
        common = (("min.insync.replicas", str(s.topic_min_insync)),)
        specs = exchange_topics(
            self.exchange.registry.ids,
            partitions=plan.partitions,
            replication=s.topic_replication,
            min_insync=s.topic_min_insync,
            router_prefix=self.exchange.router_prefix,
        )
        specs += [
            TopicSpec(name, plan.partitions, s.topic_replication, common)
            for name in self.topics.values()
        ]
        self.progress(f"creating {len(specs)} topics ({plan.partitions} partitions each)")
        await ensure_topics(s, specs)

    async def cleanup(self) -> None:
        names = list(self.topics.values())
        for agency in self.exchange.registry.ids:
            names += [outbound(agency), feed(agency), receipts(agency)]
        self.progress(f"deleting the run's {len(names)} topics")
        await delete_topics(self.settings, names)

    @contextlib.asynccontextmanager
    async def _producer(self) -> AsyncIterator[AIOKafkaProducer]:
        producer = clients.producer(self.settings)
        await producer.start()
        try:
            yield producer
        finally:
            await producer.stop()

    # -- phases ----------------------------------------------------------------------------
    async def raw_kafka(self) -> None:
        plan, topic, payload = self.plan, self.topics["raw"], self.payload
        async with self._producer() as producer, Tracker(self.settings, [topic]) as tracker:
            await flat_out(producer, tracker, topic, payload, count=100, drain_s=30)
            self.progress(f"raw Kafka at {plan.rate:g}/s for {plan.seconds:g} s")
            cpu = self._cpu()
            m = await fixed_rate(producer, tracker, topic, payload, per_second=plan.rate,
                                 count=plan.fixed_count, drain_s=plan.drain_s)  # fmt: skip
            self.result.rows.append(
                row(RAW, f"fixed {plan.rate:g}/s", m, "msg/s", cpu=(cpu.stop(), "msg"))
            )
            self.progress(f"raw Kafka flat out, {plan.raw_count} records")
            cpu = self._cpu()
            m = await flat_out(producer, tracker, topic, payload, count=plan.raw_count,
                               drain_s=plan.flat_drain_s(plan.raw_count, 500))  # fmt: skip
            self.result.rows.append(row(RAW, "flat out", m, "msg/s", cpu=(cpu.stop(), "msg")))

    async def publish(self) -> None:
        plan, origin = self.plan, self.exchange.origins[0]
        self.progress(f"Enlace publish only, {plan.bulletins} bulletins")
        async with publisher(self.settings, self.exchange, origin, self.topics["publish"]) as pub:
            await publish_only(pub, origin, 20)
            cpu = self._cpu()
            done, seconds, failed = await publish_only(pub, origin, plan.bulletins)
            use = cpu.stop()
        notes = ["seal + send, acks=all, 250 per publish_many", use.describe(done, "bulletin")]
        if failed:
            notes.append(f"{failed} NOT ACKNOWLEDGED")
        self.result.rows.append(
            Row(PUBLISH, "flat out", plan.bulletins, done / seconds, "bulletin/s", None,
                "; ".join(notes), use.as_dict())
        )  # fmt: skip

    def _copier(self) -> Child:
        t, fanout = self.topics, max(1, round(self.outputs_per_bulletin))
        return Child(
            "copier",
            ["-m", "bench.copier", "--bootstrap", self.settings.kafka_bootstrap,
             "--prefix", f"bench{self.exchange.token}.copy.",
             "--route", f"{t['copy_in']}:{t['copy_out']}:1",
             "--route", f"{t['fan_in']}:{t['fan_out']}:{fanout}"],
            self.workdir / "copier.log",
            {},
        )  # fmt: skip

    async def warm_broker(self) -> None:
        """A freshly started broker runs its transaction paths interpreted until the JIT has
        compiled them: the first few thousand transactions cost it 3-4x what they cost
        later (26 vs 5-8 ms of CPU each on this host). Every row is measured after this
        many transactions through the copier, so rows compare a broker in its steady state."""
        plan, t, payload = self.plan, self.topics, self.payload
        if plan.broker_warm_s <= 0:
            return
        rate = 100.0
        count = max(1, round(rate * plan.broker_warm_s))
        self.progress(f"warming the broker: {count} transactions at {rate:g}/s (not reported)")
        child = self._copier()
        child.start()
        try:
            async with (
                self._producer() as producer,
                Tracker(self.settings, [t["copy_out"]]) as tracker,
            ):
                await flat_out(producer, tracker, t["copy_in"], payload, count=20,
                               drain_s=plan.drain_s)  # fmt: skip
                await fixed_rate(producer, tracker, t["copy_in"], payload, per_second=rate,
                                 count=count, drain_s=plan.drain_s)  # fmt: skip
        finally:
            await child.stop()

    async def copy(self) -> None:
        plan, t, payload = self.plan, self.topics, self.payload
        fanout = max(1, round(self.outputs_per_bulletin))
        child = self._copier()
        self.progress("starting the copier process")
        child.start()
        try:
            async with (
                self._producer() as producer,
                Tracker(self.settings, [t["copy_out"], t["fan_out"]]) as tracker,
            ):
                m = await flat_out(producer, tracker, t["copy_in"], payload, count=20,
                                   drain_s=plan.drain_s)  # fmt: skip
                child.check()
                if m.arrived < m.count:
                    self.result.problems.append("the copier did not start copying in time")
                    return
                self.progress(f"copy at {plan.rate:g}/s for {plan.seconds:g} s")
                cpu = self._cpu(copier=child.pid)
                m = await fixed_rate(producer, tracker, t["copy_in"], payload,
                                     per_second=plan.rate, count=plan.fixed_count,
                                     drain_s=plan.drain_s)  # fmt: skip
                self.result.rows.append(
                    row(COPY, f"fixed {plan.rate:g}/s", m, "msg/s", cpu=(cpu.stop(), "msg"))
                )
                self.progress(f"copy flat out, {plan.copy_count} records")
                cpu = self._cpu(copier=child.pid)
                m = await flat_out(producer, tracker, t["copy_in"], payload,
                                   count=plan.copy_count,
                                   drain_s=plan.flat_drain_s(plan.copy_count, 200))  # fmt: skip
                self.result.rows.append(row(COPY, "flat out", m, "msg/s", cpu=(cpu.stop(), "msg")))
                self.progress(f"copy with fan-out x{fanout}, {plan.bulletins} records")
                cpu = self._cpu(copier=child.pid)
                m = await flat_out(producer, tracker, t["fan_in"], payload, count=plan.bulletins,
                                   drain_s=plan.flat_drain_s(plan.bulletins, 20))  # fmt: skip
                self.result.rows.append(
                    row(f"Raw transactional copy, fan-out x{fanout}", "flat out", m, "in/s",
                        f"{m.record_rate:,.0f} out/s (x{fanout}: the router's records per "
                        "bulletin, all to one topic)", cpu=(cpu.stop(), "in"))
                )  # fmt: skip
        finally:
            await child.stop()

    async def end_to_end(self, workers: int = 1) -> None:
        """The router as ``workers`` processes (``--workers``) in one group: the same
        rows, so the two runs show what a second process buys on this host."""
        plan, ex = self.plan, self.exchange
        profile = self.workdir / "router.prof" if plan.profile_router and workers == 1 else None
        log = self.workdir / f"router-{workers}.log"
        env = {"ENLACE_ROUTER_WORKERS": str(workers)}
        router = router_child(self.settings, ex, log, profile, env)
        stage = E2E if workers == 1 else f"{E2E}, {workers} router processes"
        feeds = [feed(a) for a in ex.registry.ids]
        backlog = {t: await topic_records(self.settings, t) for t in (AUDIT, ROUTER_SEEN)}
        self.progress(
            f"starting the router ({workers} process(es))" + (" (cProfile)" if profile else "")
        )
        launched = time.perf_counter()
        router.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                tracker = await stack.enter_async_context(Tracker(self.settings, feeds))
                pubs = {o: await stack.enter_async_context(publisher(self.settings, ex, o))
                        for o in ex.origins}  # fmt: skip
                self.progress("waiting for the router to route a first batch")
                m = await warm_up(pubs, tracker, router, count=plan.warm_up, within=120)
                if m.arrived < m.count:
                    self.result.problems.append("the router did not route the warm-up in time")
                    return
                if workers == 1:
                    self.result.rows.append(
                        self._startup_row(time.perf_counter() - launched, backlog)
                    )
                self.progress(f"router live: {m.records / m.count:.2f} releases per bulletin")
                if workers == 1:
                    await self._idle(router)
                if profile is not None:
                    router.send(signal.SIGUSR1)
                self.progress(f"end to end at {plan.rate:g}/s for {plan.seconds:g} s")
                cpu, txns = self._cpu(router=router.pid), await read_counters(log)
                m, failed = await end_to_end_fixed(pubs, tracker, router, per_second=plan.rate,
                                                   count=plan.fixed_count,
                                                   drain_s=plan.drain_s)  # fmt: skip
                use, txns = cpu.stop(), await self._txns_since(log, txns)
                self.result.rows.append(
                    self._e2e_row(
                        stage, f"fixed {plan.rate:g}/s", m=m, failed=failed, cpu=use, txns=txns
                    )
                )
                self.progress(f"end to end flat out, {plan.bulletins} bulletins")
                cpu, txns = self._cpu(router=router.pid), await read_counters(log)
                m, failed = await end_to_end_flat(
                    pubs, tracker, router, count=plan.bulletins,
                    drain_s=plan.flat_drain_s(plan.bulletins, 20),
                )  # fmt: skip
                use, txns = cpu.stop(), await self._txns_since(log, txns)
                self.result.rows.append(
                    self._e2e_row(stage, "saturation", m=m, failed=failed, cpu=use, txns=txns)
                )
        finally:
            self.progress("stopping the router")
            await router.stop(within=60)
        if profile is not None and profile.exists():
            stats = pstats.Stats(str(profile))
            title = "Router process, steady state under load"
            self.result.hotspots[title] = top_functions(stats, 20)
            self.result.hotspots[f"{title}, by cumulative time"] = top_functions(
                stats, 25, cumulative=True
            )

    async def consumer(self) -> None:
        """A partner's consumer from the start of a feed of real sealed releases, per sink
        (bench/consumer_phase.py), against a raw read of the same feed."""
        phase = await consumer_phase(
            self.settings,
            self.workdir / "consumer",
            records=self.plan.consumer_records,
            progress=self.progress,
        )
        self.result.rows.extend(phase.rows)
        self.result.problems.extend(phase.problems)

    async def taxii(self) -> None:
        """The TAXII server over a store of ``plan.taxii_objects`` (bench/taxii_phase.py): no
        Kafka, its own processes."""
        phase = await asyncio.to_thread(
            taxii_phase, self.workdir / "taxii", self.plan.taxii_objects, self.progress
        )
        self.result.rows.extend(phase.rows)
        self.result.problems.extend(phase.problems)

    def _startup_row(self, seconds: float, backlog: dict[str, int]) -> Row:
        note = (
            f"{seconds:.1f} s from launch to the warm-up's releases; it first reads "
            f"{AUDIT} ({backlog[AUDIT]:,} records) and {ROUTER_SEEN} ({backlog[ROUTER_SEEN]:,})"
            " from the start (on a shared broker: every earlier run's records)"
        )
        return Row("Router start-up", "launch", self.plan.warm_up, None, "", None, note)

    async def _idle(self, router: Child) -> None:
        """CPU with the router, its clients and the feed reader connected but no traffic: the
        floor every loaded row stands on (polling, heartbeats, trust snapshots)."""
        self.progress(f"router idle for {IDLE_S:g} s")
        cpu = self._cpu(router=router.pid)
        await asyncio.sleep(IDLE_S)
        use = cpu.stop()
        note = use.describe(0)
        self.result.rows.append(Row("Enlace idle: router up, no traffic", f"{IDLE_S:g} s", 0,
                                    None, "", None, note, use.as_dict()))  # fmt: skip

    @staticmethod
    async def _txns_since(log: Path, before: TxnCounters | None) -> TxnCounters | None:
        after = await read_counters(log)
        return after - before if after is not None and before is not None else None

    def _e2e_row(
        self,
        stage: str,
        load: str,
        *,
        m: Measured,
        failed: int,
        cpu: CpuUse,
        txns: TxnCounters | None,
    ) -> Row:
        note = f"{m.record_rate:,.0f} releases/s"
        if txns is not None:
            note += f"; router: {txns.describe()}"
        if self.plan.profile_router:
            note += " (router under cProfile: slower than without)"
        if failed:
            note += f"; {failed} NOT ACKNOWLEDGED"
        return row(stage, load, m, "bulletin/s", note, cpu=(cpu, "bulletin"))


async def run_all(run: Run) -> None:
    run.micro()
    await run.provision()
    try:
        await run.warm_broker()
        await run.raw_kafka()
        await run.publish()
        await run.copy()
        await run.end_to_end(workers=1)
        await run.end_to_end(workers=2)
        await run.consumer()
        await run.taxii()
    finally:
        await run.cleanup()


def describe(
    settings: KafkaSettings, plan: Plan, broker: str, exchange: Exchange
) -> dict[str, object]:
    facts = machine.facts()
    facts["broker"] = broker
    agencies = len(exchange.registry)
    facts["topics"] = (
        f"{plan.partitions} partitions each, replication {settings.topic_replication}; "
        f"{agencies} agencies: the router reads {agencies} outbound topics "
        f"({agencies * plan.partitions} partitions), publishers write to {len(exchange.origins)}"
    )
    return facts
