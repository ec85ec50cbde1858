"""Scenario 1 of the fault suite: the router kill -9 nemesis (Kafka's transactions_test and
Jepsen are the model). A 3-node cluster (RF 3, min ISR 2); three router processes in one
group, each aborting about a third of its transactions on purpose; a seeded SIGKILL of one
router every 4-8 s, restarted at once; bulletins from four agencies throughout. The checker
(``tests/faults/checker.py``) then requires every anomaly count to be zero.

Runs under ``make faults`` (``ENLACE_FAULTS_SUITE=1``): full size (``ENLACE_FAULTS_FULL=1``)
20,000 bulletins and 50 kills, else the CI size, 2,000 and 5. It joins ``make test`` once the
rebalance storm it can leave behind on a loaded 2-core box is fixed (README, "Reliability").
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.structs import TopicPartition

from broker.engine import INJECTED_ABORT_HEADER
from broker.policy import Policy
from deploy.localkafka import DEFAULT_LIBS, LocalKafka
from enlace.core import clients
from enlace.core.settings import KafkaSettings
from enlace.core.topics import AUDIT, outbound, partitions_of
from schemas.envelope import seal
from tests.faults.checker import PublishLog, check
from tests.faults.routers import RouterProcess, write_config
from tests.samples import routed_bulletin
from tests.support import MiniExchange, Record, build_exchange, free_kafka_port

pytestmark = [
    pytest.mark.faults,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("ENLACE_FAULTS_SUITE") != "1",
        reason="the nemesis runs under `make faults` (ENLACE_FAULTS_SUITE=1)",
    ),
]

FULL = os.environ.get("ENLACE_FAULTS_FULL") == "1"
BULLETINS = 20_000 if FULL else 2_000
KILLS = 50 if FULL else 5
ROUTERS = 3
ABORT_RATIO = "0.33"
SEED = int(os.environ.get("ENLACE_FAULTS_SEED", "20261201"))
SESSION_TIMEOUT_MS = 6_000
# The target for router faults is the session timeout plus 15 s (21 s); measured today it is
# ~23 s on 2 cores, because the group settles only after the replacement process has started
# and joined (a second rebalance). Guarded here at a bound that catches a regression; the gap
# to the target is open work (README, "Reliability").
RECOVERY_TARGET_S = SESSION_TIMEOUT_MS / 1000 + 15
RECOVERY_BOUND_S = 60.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSettings]:
    kafka = LocalKafka(tmp_path_factory.mktemp("nemesis-kafka"), DEFAULT_LIBS)
    spec = kafka.up(3, port=free_kafka_port(3))
    try:
        yield KafkaSettings(kafka_bootstrap=spec.bootstrap)
    finally:
        kafka.down()


@pytest.fixture
async def exchange(cluster: KafkaSettings, tmp_path: Path) -> MiniExchange:
    ex = await build_exchange(
        cluster, countries=("PA", "US", "CR", "MX"), partitions=3, replication=3, min_insync=2
    )
    pa, us, cr, mx = (ex.agency(c) for c in ("PA", "US", "CR", "MX"))
    agreements = [
        {"between": [pa, us], "level": "full"},
        {"between": [pa, cr], "level": "standard"},
        {"between": [us, cr], "level": "standard"},
        {"between": [us, mx], "level": "limited"},
    ]
    ex.policy = Policy.model_validate({"agreements": agreements})
    write_config(ex, tmp_path, agreements)
    return ex


class Fleet:
    """The router processes; a killed one is replaced at once by a fresh process."""

    def __init__(self, ex: MiniExchange, workdir: Path) -> None:
        self._ex, self.workdir = ex, workdir
        self.routers: list[RouterProcess] = []
        self.launched = 0
        self.kills = 0

    def launch(self) -> RouterProcess:
        self.launched += 1
        router = RouterProcess(
            self._ex, self.workdir, f"router-{self.launched}",
            ENLACE_FAULT_ABORT_RATIO=ABORT_RATIO,
            ENLACE_FAULT_SEED=str(SEED + self.launched),
            ENLACE_ROUTER_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
        )  # fmt: skip
        self.routers.append(router)
        return router

    async def kill_one(self, rng: random.Random) -> None:
        alive = [r for r in self.routers if r.proc.poll() is None]
        victim = rng.choice(alive)
        await victim.kill()
        self.kills += 1
        self.launch()

    async def stop(self) -> list[int]:
        return [await r.stop() for r in self.routers if r.proc.poll() is None]

    def kill_all_now(self) -> None:
        for router in self.routers:
            if router.proc.poll() is None:
                router.kill_now()


@pytest.fixture
async def fleet(exchange: MiniExchange, tmp_path: Path) -> AsyncIterator[Fleet]:
    routers = Fleet(exchange, tmp_path)
    try:
        yield routers
    finally:
        routers.kill_all_now()


async def positions(
    ex: MiniExchange, group: str
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The router group's committed offsets and the log end offsets of the input partitions."""
    layout = await partitions_of(ex.settings, [outbound(a) for a in ex.registry.ids])
    tps = [TopicPartition(t, p) for t, ids in layout.items() for p in ids]
    reader = clients.consumer(ex.settings, group_id=group)
    await reader.start()
    try:
        committed = {tp: (await reader.committed(tp)) or 0 for tp in tps}
        ends = dict(await reader.end_offsets(tps))
    finally:
        await reader.stop()
    return committed, ends


async def recovery(ex: MiniExchange, group: str, within: float) -> float:
    """Seconds from now (a kill) until every input partition that had work waiting has
    committed past where it stood: routing has resumed everywhere, the victim's share too."""
    started = time.monotonic()
    before, ends = await positions(ex, group)
    waiting = {tp for tp, offset in before.items() if ends[tp] > offset}
    while time.monotonic() - started < within:
        now, _ = await positions(ex, group)
        if all(now[tp] > before[tp] for tp in waiting):
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    return float("inf")


def marked_uncommitted(ex: MiniExchange, records: list[Record]) -> int:
    return sum(any(k == INJECTED_ABORT_HEADER for k, _ in r.headers or ()) for r in records)


async def publish(ex: MiniExchange, log: PublishLog, total: int, seconds: float) -> None:
    """``total`` bulletins from four agencies, paced over ``seconds``; each send logged as
    acknowledged (partition, offset) or failed."""
    origins = [ex.agency(c) for c in ("PA", "US", "CR", "MX")]
    producer = clients.producer(ex.settings, request_timeout_ms=15_000)
    await producer.start()
    pending: list[asyncio.Future[object]] = []
    try:
        started = time.monotonic()
        for i in range(total):
            origin = origins[i % len(origins)]
            sealed = seal(
                routed_bulletin(origin),
                ex.keys[origin],
            )
            bulletin_id = sealed.key.decode()
            future = await producer.send(
                outbound(origin), sealed.value, key=sealed.key, headers=sealed.headers
            )

            def logged(f: asyncio.Future[object], bulletin_id: str = bulletin_id) -> None:
                if f.cancelled() or f.exception() is not None:
                    log.failed.add(bulletin_id)
                else:
                    meta = f.result()
                    log.ack(bulletin_id, meta.partition, meta.offset)  # type: ignore[attr-defined]  # aiokafka RecordMetadata

            future.add_done_callback(logged)
            pending.append(future)
            ahead = (i + 1) * seconds / total - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)  # pacing the stream the kills land in
        await producer.flush()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        await producer.stop()


@pytest.mark.timeout(1800 if FULL else 420)
async def test_router_kill_nemesis_with_aborted_transactions_has_no_anomaly(
    exchange: MiniExchange, fleet: Fleet
) -> None:
    ex = exchange
    rng = random.Random(SEED)
    for _ in range(ROUTERS):
        fleet.launch()
    log = PublishLog()
    # Kills every 4-8 s: the stream lasts as long as the kills need.
    duration = KILLS * 6.0 + 10.0
    stream = asyncio.create_task(publish(ex, log, BULLETINS, duration))
    group = ex.router_settings().group_id
    recoveries: list[asyncio.Task[float]] = []
    await asyncio.sleep(5.0)  # the routers start and the stream flows before the first kill
    while fleet.kills < KILLS:
        await asyncio.sleep(rng.uniform(4.0, 8.0))  # the nemesis's schedule, seeded
        await fleet.kill_one(rng)
        recoveries.append(asyncio.create_task(recovery(ex, group, RECOVERY_BOUND_S + 30)))
    await stream
    drained_from = time.monotonic()
    report = await check(ex, log, within=300.0 if FULL else 180.0)
    drained = time.monotonic() - drained_from
    resumed = [await task for task in recoveries]
    codes = await fleet.stop()
    aborted_on_purpose = sum(
        path.read_bytes().count(b"router_txn_aborted_on_purpose")
        for path in fleet.workdir.glob("router-*.log")
    )
    # The aborted transactions' records are in the log: a read_uncommitted reader sees them,
    # so the checker's zero aborted reads is a real read_committed result.
    each = ", ".join(f"{r:.0f}" for r in resumed)
    uncommitted = await ex.read(
        AUDIT, until=lambda _f: False, within=3.0, isolation_level="read_uncommitted"
    )
    print(
        f"\nnemesis: {len(log.acked)} acknowledged ({len(log.failed)} failed) over "
        f"{fleet.kills} SIGKILLs of {fleet.launched} router processes; "
        f"{aborted_on_purpose} transactions aborted on purpose "
        f"({marked_uncommitted(ex, uncommitted)} aborted audit records visible to "
        f"read_uncommitted); routing resumed on every partition {resumed[-1]:.1f} s after the "
        f"last kill (target {RECOVERY_TARGET_S:.0f} s; after each: {each} s); checked "
        f"{drained:.1f} s after the stream ended"
        f"\n{report.table()}"
    )
    assert not log.failed, f"{len(log.failed)} publishes failed on a healthy cluster"
    assert len(log.acked) == BULLETINS
    assert report.ok, (report.table(), report.examples)
    assert report.decisions["FULL"] > 0
    assert report.decisions["TEARLINE"] > 0
    assert fleet.kills >= KILLS
    assert all(code == 0 for code in codes), codes
    assert aborted_on_purpose > 0
    assert marked_uncommitted(ex, uncommitted) > 0
    # Kills 4-8 s apart overlap each other's recovery; the fault ends with the last one.
    assert resumed[-1] <= RECOVERY_BOUND_S, resumed
