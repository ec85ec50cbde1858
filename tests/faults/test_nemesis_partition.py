"""Scenario 4 of the fault suite: partition and latency between the routers and the brokers.

A 3-node cluster (RF 3, min ISR 2) whose nodes each have a PROXIED listener advertised at the
port of a :class:`~tests.faults.proxy.FaultProxy` (``deploy/localkafka.py``): the routers
bootstrap through the proxies, so the metadata they get names the proxies and every one of
their connections crosses them; publishers, the checker and replication go direct. While a
paced stream of bulletins flows:

1. a 20 s cut of all router <-> broker traffic: first 10 s a blackhole (nothing crosses; open
   connections stall, new ones are accepted and reach nothing: a partition as TCP sees it),
   then 10 s of refusal (every connection reset, new ones reset at once: the far side gone);
2. 30 s of 300 ± 200 ms latency per chunk each way, with random connection resets;
3. heal.

Pass = the checker's anomaly counts all zero, every acknowledged bulletin decided for every
partner, no router process exits, routing stops during the cut (proof that the routers had
no way around the proxies), resumes on every partition while the latency still lasts (the
cut's end is no fault's end: that recovery is a figure, bounded by the latency phase plus the
session timeout + 15 s), and within the session timeout + 15 s of the heal, the fault's end.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka.structs import TopicPartition

from tests.faults.checker import PublishLog, check
from tests.faults.conftest import Cluster
from tests.faults.nemesis import FULL, SEED, Fleet, positions, publish, sized
from tests.faults.nemesis import recovery as measure_recovery
from tests.faults.proxy import FaultProxy, total
from tests.faults.report import FaultReport, ScenarioRow, anomalies_of
from tests.faults.routers import RouterProcess
from tests.support import MiniExchange

pytestmark = [pytest.mark.faults, pytest.mark.slow]

BULLETINS = sized(2_000, 20_000)
ROUTERS = 2
SESSION_TIMEOUT_MS = 6_000
RECOVERY_BOUND_S = SESSION_TIMEOUT_MS / 1000 + 15
IN_FLIGHT_S = 3.0  # within the blackhole: what was already sent settles, nothing new
BLACKHOLE_S = 10.0
REFUSE_S = 10.0
LATENCY_S = 30.0
# Measured from the cut's end, under latency and resets: it may run past the latency phase.
UNDER_LATENCY_BOUND_S = LATENCY_S + RECOVERY_BOUND_S
LATENCY_MEAN_S, LATENCY_JITTER_S = 0.3, 0.2
# Per chunk forwarded; with the routers' request rate under latency, about one reset every
# second or two across all their connections.
RESET_P = 0.01
# The stream covers the warm-up, both faults and a tail after the heal.
STREAM_S = sized(75, 150)


@pytest.fixture
async def proxies(cluster: Cluster) -> AsyncIterator[list[FaultProxy]]:
    spec = cluster.kafka.spec()
    assert spec is not None
    assert spec.proxy_ports, "the cluster fixture starts the nodes with PROXIED listeners"
    started: list[FaultProxy] = []
    try:
        for node in spec.node_ids:
            proxy = FaultProxy(
                spec.proxied_port(node),
                listen_port=spec.proxy_port(node),
                seed=SEED + node,
                name=f"node-{node}",
            )
            started.append(await proxy.start())
        yield started
    finally:
        await asyncio.gather(*(p.stop() for p in started))


@pytest.fixture
async def fleet(
    cluster: Cluster, exchange: MiniExchange, proxies: list[FaultProxy], tmp_path: Path
) -> AsyncIterator[Fleet]:
    spec = cluster.kafka.spec()
    assert spec is not None
    routers = Fleet(
        exchange, tmp_path,
        # The routers only: their bootstrap (and so their metadata) is the proxies'.
        ENLACE_KAFKA_BOOTSTRAP=spec.proxied_bootstrap,
        ENLACE_ROUTER_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
    )  # fmt: skip
    try:
        yield routers
    finally:
        routers.kill_all_now()


class Supervisor:
    """What systemd or Kubernetes would do: a router that exits is noted and started again,
    so the checker still judges the data; the exits themselves fail the scenario."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.exits: list[tuple[str, int]] = []
        self._seen: set[RouterProcess] = set()

    async def watch(self) -> None:
        while True:
            for router in list(self.fleet.routers):
                code = router.proc.poll()
                if code is not None and router not in self._seen:
                    self._seen.add(router)
                    self.exits.append((router.name, code))
                    self.fleet.launch()
            await asyncio.sleep(0.5)  # polling the processes


async def stop_all(fleet: Fleet) -> list[int | str]:
    """SIGTERM every live router; one that does not stop in time is killed and named."""
    codes: list[int | str] = []
    for router in fleet.alive():
        try:
            codes.append(await router.stop())
        except subprocess.TimeoutExpired:
            await router.kill()
            codes.append(f"{router.name} ignored SIGTERM")
    return codes


async def at(moment: float) -> None:
    """Wait for a point of the fault schedule (a schedule, not a synchronisation)."""
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


def utc_now() -> str:
    """Wall-clock time as the routers' logs stamp it, to find the phases in them."""
    return datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]


def committed_total(committed: dict[TopicPartition, int]) -> int:
    return sum(committed.values())


async def faults(
    ex: MiniExchange, group: str, proxies: list[FaultProxy]
) -> tuple[int, list[float]]:
    """The fault schedule; returns the offsets the routers committed while cut (must be
    none) and the recovery after the cut's end and after the latency's end."""
    # 1. The cut: a blackhole, then refusal.
    print(f"\npartition: cut at {utc_now()}")
    cut_at = time.monotonic()
    for proxy in proxies:
        proxy.cut("blackhole")
    # A transaction whose EndTxn reached its coordinator before the cut still completes (the
    # coordinator writes the markers, then its offsets show): read the baseline after that.
    await at(cut_at + IN_FLIGHT_S)
    first = (await positions(ex, group))[0]
    await at(cut_at + BLACKHOLE_S)
    for proxy in proxies:
        proxy.cut("refuse")
    await at(cut_at + BLACKHOLE_S + REFUSE_S - 2.0)
    last = (await positions(ex, group))[0]
    await at(cut_at + BLACKHOLE_S + REFUSE_S)

    # 2. Latency with resets; routing must resume under it.
    for proxy in proxies:
        proxy.heal()
        proxy.latency(LATENCY_MEAN_S, LATENCY_JITTER_S)
        proxy.reset_probability(RESET_P)
    latency_at = time.monotonic()
    print(f"partition: latency from {utc_now()}")
    after_cut = asyncio.create_task(measure_recovery(ex, group, UNDER_LATENCY_BOUND_S + 10))
    await at(latency_at + LATENCY_S)

    # 3. Heal.
    for proxy in proxies:
        proxy.heal()
    print(f"partition: healed at {utc_now()}")
    after_latency = await measure_recovery(ex, group, RECOVERY_BOUND_S + 30)
    return committed_total(last) - committed_total(first), [await after_cut, after_latency]


@pytest.mark.timeout(1200 if FULL else 420)
async def test_partition_then_latency_with_resets_has_no_anomaly(
    exchange: MiniExchange,
    proxies: list[FaultProxy],
    fleet: Fleet,
    fault_report: FaultReport,
) -> None:
    ex = exchange
    group = ex.router_settings().group_id
    for _ in range(ROUTERS):
        fleet.launch()
    supervisor = Supervisor(fleet)
    watching = asyncio.create_task(supervisor.watch())
    log = PublishLog()
    stream = asyncio.create_task(publish(ex, log, BULLETINS, STREAM_S))
    try:
        await fleet.routing(group)  # every router joined and committing, via the proxies
        assert all(p.stats.connections > 0 for p in proxies), [p.stats for p in proxies]

        moved_during_cut, resumed = await faults(ex, group, proxies)
        await stream
        drained_from = time.monotonic()
        report = await check(ex, log, within=300.0 if FULL else 180.0)
        drained = time.monotonic() - drained_from
    finally:
        watching.cancel()
        stream.cancel()
        await asyncio.gather(watching, stream, return_exceptions=True)
    alive_at_end = len(fleet.alive())
    codes = await stop_all(fleet)
    stats = total(proxies)
    aborted = fleet.count_in_logs(b'"router_txn_aborted"')
    recovery_failed = fleet.count_in_logs(b"router_recovery_failed")
    each = ", ".join("did not resume" if math.isinf(r) else f"{r:.1f} s" for r in resumed)
    figures = (
        f"{stats.connections} router connections through the proxies, "
        f"{stats.bytes_up / 1e6:.1f} MB up / {stats.bytes_down / 1e6:.1f} MB down; "
        f"{stats.dropped} connections reset when the refusal began, {stats.refused} refused, "
        f"{stats.resets} random resets under latency; routing resumed on every partition "
        f"{each} after the cut (under latency) and after the heal; {aborted} transactions "
        f"aborted, {recovery_failed} partition recoveries retried; "
        f"router exits {supervisor.exits or 'none'}; decisions {dict(report.decisions)}"
    )
    print(
        f"\npartition: {len(log.acked)} acknowledged ({len(log.failed)} failed); {figures}; "
        f"{moved_during_cut} offsets committed during the cut; checked {drained:.1f} s after "
        f"the stream ended\n{report.table()}"
    )
    passed = (
        report.ok
        and not log.failed
        and not supervisor.exits
        and moved_during_cut == 0
        and resumed[0] <= UNDER_LATENCY_BOUND_S
        and resumed[1] <= RECOVERY_BOUND_S
    )
    fault_report.add(
        ScenarioRow(
            "4. partition and latency",
            f"{ROUTERS} routers behind a TCP proxy per node: cut {BLACKHOLE_S + REFUSE_S:.0f} s "
            f"(blackhole, then refusal), then {LATENCY_MEAN_S * 1000:.0f} ± "
            f"{LATENCY_JITTER_S * 1000:.0f} ms latency with random resets for {LATENCY_S:.0f} s",
            f"{len(log.acked):,} bulletins",
            anomalies_of(report),
            resumed[1:],  # from the fault's end; the recovery under latency is in the figures
            RECOVERY_BOUND_S,
            figures,
            passed,
        )
    )
    assert not log.failed, f"{len(log.failed)} publishes failed (publishers go direct)"
    assert len(log.acked) == BULLETINS
    assert report.ok, (report.table(), report.examples)
    assert report.decisions["FULL"] > 0
    assert report.decisions["TEARLINE"] > 0
    assert moved_during_cut == 0, "routing went on during the cut: a way around the proxies"
    assert stats.dropped + stats.refused > 0
    assert stats.resets > 0
    assert not supervisor.exits, f"routers exited under the fault: {supervisor.exits}"
    assert alive_at_end == ROUTERS
    assert all(code == 0 for code in codes), codes
    assert resumed[0] <= UNDER_LATENCY_BOUND_S, f"no routing under latency: {resumed}"
    assert resumed[1] <= RECOVERY_BOUND_S, resumed
