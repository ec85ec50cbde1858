"""Scenario 1 of the fault suite: the router kill -9 nemesis (Kafka's transactions_test and
Jepsen are the model). A 3-node cluster (RF 3, min ISR 2); three router processes in one
group, each aborting about a third of its transactions on purpose; a seeded SIGKILL of one
router every 4-8 s, restarted at once; bulletins from four agencies throughout. The checker
(``tests/faults/checker.py``) then requires every anomaly count to be zero.

``make test`` runs it at CI size (2,000 bulletins, 3 kills), ``make faults`` at full size
(``ENLACE_FAULTS_FULL=1``: 20,000 bulletins, 50 kills).
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from enlace.core.topics import AUDIT
from tests.faults.checker import PublishLog, check
from tests.faults.nemesis import (
    FULL,
    SEED,
    Fleet,
    marked_uncommitted,
    publish,
    recovery,
    sized,
)
from tests.faults.report import FaultReport, ScenarioRow, anomalies_of
from tests.support import MiniExchange

pytestmark = [pytest.mark.faults, pytest.mark.slow]

BULLETINS = sized(2_000, 20_000)
KILLS = sized(3, 50)
ROUTERS = 3
ABORT_RATIO = "0.33"
SESSION_TIMEOUT_MS = 6_000
# The target for router faults is the session timeout plus 15 s (21 s).
RECOVERY_TARGET_S = SESSION_TIMEOUT_MS / 1000 + 15
RECOVERY_BOUND_S = RECOVERY_TARGET_S


@pytest.fixture
def fleet_env() -> dict[str, str]:
    return {
        "ENLACE_FAULT_ABORT_RATIO": ABORT_RATIO,
        "ENLACE_ROUTER_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
    }


@pytest.mark.timeout(1800 if FULL else 420)
async def test_router_kill_nemesis_with_aborted_transactions_has_no_anomaly(
    exchange: MiniExchange, fleet: Fleet, fault_report: FaultReport
) -> None:
    ex = exchange
    rng = random.Random(SEED)
    for _ in range(ROUTERS):
        fleet.launch()
    log = PublishLog()
    # Kills every 4-8 s: the stream outlasts them, so the last one lands in traffic.
    duration = KILLS * 6.0 + 30.0
    stream = asyncio.create_task(publish(ex, log, BULLETINS, duration))
    group = ex.router_settings().group_id
    recoveries: list[asyncio.Task[float]] = []
    await fleet.routing(group)
    while fleet.kills < KILLS:
        await asyncio.sleep(rng.uniform(4.0, 8.0))  # the nemesis's schedule, seeded
        await fleet.kill_one(rng)
        recoveries.append(asyncio.create_task(recovery(ex, group, RECOVERY_BOUND_S + 30)))
    await stream
    drained_from = time.monotonic()
    # Recovery first: the checker's decoding holds the event loop for seconds at full size,
    # and a recovery poll starved by it would measure the checker, not the routers.
    resumed = [await task for task in recoveries]
    report = await check(ex, log, within=300.0 if FULL else 180.0)
    drained = time.monotonic() - drained_from
    codes = await fleet.stop()
    aborted_on_purpose = fleet.count_in_logs(b"router_txn_aborted_on_purpose")
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
        f"({marked_uncommitted(uncommitted)} aborted audit records visible to "
        f"read_uncommitted); routing resumed on every partition {resumed[-1]:.1f} s after the "
        f"last kill (target {RECOVERY_TARGET_S:.0f} s; after each: {each} s); checked "
        f"{drained:.1f} s after the stream ended"
        f"\n{report.table()}"
    )
    fault_report.add(
        ScenarioRow(
            "1. router kill -9 nemesis",
            f"SIGKILL one of {ROUTERS} routers every 4-8 s; 1/3 of transactions aborted",
            f"{len(log.acked):,} bulletins, {fleet.kills} kills",
            anomalies_of(report),
            resumed[-1:],
            RECOVERY_BOUND_S,
            f"{aborted_on_purpose} transactions aborted on purpose; recovery after each kill "
            f"{each} s; decisions {dict(report.decisions)}",
            report.ok and not log.failed and resumed[-1] <= RECOVERY_BOUND_S,
        )
    )
    assert not log.failed, f"{len(log.failed)} publishes failed on a healthy cluster"
    assert len(log.acked) == BULLETINS
    assert report.ok, (report.table(), report.examples)
    assert report.decisions["FULL"] > 0
    assert report.decisions["TEARLINE"] > 0
    assert fleet.kills >= KILLS
    assert all(code == 0 for code in codes), codes
    assert aborted_on_purpose > 0
    assert marked_uncommitted(uncommitted) > 0
    # Kills 4-8 s apart overlap each other's recovery; the fault ends with the last one.
    assert resumed[-1] <= RECOVERY_BOUND_S, resumed
