"""Scenario 3 of the fault suite: zombies. A router frozen (SIGSTOP) past its session timeout,
three times: the group moves its partitions on, the new owner's producer fences the frozen
one's transactional ids, and when it thaws it must never commit a batch the new owner also
commits (the checker counts that as a duplicate decision/release). Then the leader broker of
the audit topic frozen for 15 s: its partitions lead elsewhere, and it rejoins.

Recovery: seconds from the thaw until routing has resumed on every input partition with work
waiting (bounds: session timeout + 15 s for a router, 30 s for a broker).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal

import pytest

from enlace.core.topics import AUDIT
from tests.faults.brokers import BrokerFaults, leader_of
from tests.faults.checker import PublishLog, check
from tests.faults.nemesis import FULL, SEED, Fleet, publish, recovery, sized
from tests.faults.report import FaultReport, ScenarioRow, anomalies_of
from tests.support import MiniExchange

pytestmark = [pytest.mark.faults, pytest.mark.slow]

BULLETINS = sized(1_000, 10_000)
ROUTER_FREEZES = sized(2, 15)
SESSION_TIMEOUT_MS = 6_000
FROZEN_S = SESSION_TIMEOUT_MS / 1000 + 4  # past the session timeout: the group moves on
BROKER_FROZEN_S = 15.0
ROUTER_BOUND_S = SESSION_TIMEOUT_MS / 1000 + 15
BROKER_BOUND_S = 30.0


@pytest.fixture
def fleet_env() -> dict[str, str]:
    return {"ENLACE_ROUTER_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS)}


async def freeze(pid: int, seconds: float) -> None:
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)  # the fault's length
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.timeout(1800 if FULL else 420)
async def test_frozen_routers_and_broker_leave_no_anomaly(
    exchange: MiniExchange, broker_faults: BrokerFaults, fleet: Fleet, fault_report: FaultReport
) -> None:
    ex = exchange
    rng = random.Random(SEED)
    routers = [fleet.launch(), fleet.launch()]
    log = PublishLog()
    # Each freeze, its recovery and a pause to let work queue up; then the broker's.
    duration = ROUTER_FREEZES * (FROZEN_S + 8) + BROKER_FROZEN_S + 15
    stream = asyncio.create_task(publish(ex, log, BULLETINS, duration, request_timeout_ms=60_000))
    group = ex.router_settings().group_id
    router_recovery: list[float] = []
    await fleet.routing(group)
    for i in range(ROUTER_FREEZES):
        zombie = routers[i % len(routers)]
        await freeze(zombie.proc.pid, FROZEN_S)
        router_recovery.append(await recovery(ex, group, ROUTER_BOUND_S + 30))
        await asyncio.sleep(rng.uniform(2.0, 5.0))  # the nemesis's schedule, seeded
    victim = await leader_of(ex.settings, AUDIT, rng.randrange(3))
    await broker_faults.pause(victim, BROKER_FROZEN_S)
    broker_recovery = await recovery(ex, group, BROKER_BOUND_S + 30)
    await stream
    report = await check(ex, log, within=300.0 if FULL else 180.0)
    fenced = fleet.count_in_logs(b"router_fenced")
    revoked = fleet.count_in_logs(b"router_revoked")
    codes = await fleet.stop()
    each = ", ".join(f"{r:.1f}" for r in router_recovery)
    print(
        f"\nzombies: {len(log.acked)} acknowledged ({len(log.failed)} failed); "
        f"{ROUTER_FREEZES} router freezes of {FROZEN_S:.0f} s, routing resumed after each "
        f"thaw in {each} s; {fenced} fenced transactions, {revoked} revocations logged; "
        f"broker {victim} frozen {BROKER_FROZEN_S:.0f} s, routing resumed "
        f"{broker_recovery:.1f} s after\n{report.table()}"
    )
    fault_report.add(
        ScenarioRow(
            "3. zombies",
            f"SIGSTOP a router {FROZEN_S:.0f} s (session {SESSION_TIMEOUT_MS // 1000} s) "
            f"x{ROUTER_FREEZES}; SIGSTOP the audit leader broker {BROKER_FROZEN_S:.0f} s",
            f"{len(log.acked):,} bulletins, {ROUTER_FREEZES + 1} freezes",
            anomalies_of(report),
            [*router_recovery, broker_recovery],
            BROKER_BOUND_S,
            f"router thaw → routing resumed {each} s (bound {ROUTER_BOUND_S:.0f} s); broker "
            f"thaw → {broker_recovery:.1f} s (bound {BROKER_BOUND_S:.0f} s); {fenced} "
            f"transactions of thawed zombies fenced; decisions {dict(report.decisions)}",
            report.ok
            and not log.failed
            and max(router_recovery) <= ROUTER_BOUND_S
            and broker_recovery <= BROKER_BOUND_S,
        )
    )
    assert not log.failed, f"{len(log.failed)} publishes failed"
    assert report.ok, (report.table(), report.examples)
    assert all(code == 0 for code in codes), codes
    assert max(router_recovery) <= ROUTER_BOUND_S, router_recovery
    assert broker_recovery <= BROKER_BOUND_S, broker_recovery
