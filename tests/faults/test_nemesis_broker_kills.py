"""Scenario 2 of the fault suite: a broker kill -9 loop while routing. On the 3-node cluster
(RF 3, min ISR 2), each round SIGKILLs the leader of an audit partition, then the transaction
coordinator of a router transactional id, then the node left, each restarted after a few
seconds (one node down at a time: the cluster stays available, every client must fail over).
Publishers retry within their delivery timeout; the checker then requires every anomaly
count zero and no acknowledged publish lost.

Recovery per kill: seconds from the node's restart until routing has resumed on every input
partition with work waiting (bound: 30 s for broker faults).
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from enlace.core.topics import AUDIT, exchange_topics, outbound, router_transactional_id
from tests.faults.brokers import (
    BrokerFaults,
    fully_replicated,
    leader_of,
    transaction_coordinator,
)
from tests.faults.checker import PublishLog, check
from tests.faults.conftest import Cluster
from tests.faults.nemesis import FULL, SEED, Fleet, publish, recovery, sized
from tests.faults.report import FaultReport, ScenarioRow, anomalies_of
from tests.support import MiniExchange

pytestmark = [pytest.mark.faults, pytest.mark.slow]

BULLETINS = sized(2_000, 20_000)
ROUNDS = sized(1, 17)  # three kills a round: 3 at CI size, 51 at full size
ROUTERS = 2
DOWN_S = 3.0
RECOVERY_BOUND_S = 30.0
# A kill cycle is the node down, its start-up, routing resumed and the replicas caught up.
CYCLE_S = 15.0


async def round_victims(ex: MiniExchange, rng: random.Random, nodes: list[int]) -> list[int]:
    """This round's order: an audit partition's leader, a router transactional id's
    coordinator (another node if one is), the node left."""
    first = await leader_of(ex.settings, AUDIT, rng.randrange(3))
    prefix = f"t{ex.token}.router."
    ids = [
        router_transactional_id(outbound(a), p, prefix) for a in ex.registry.ids for p in range(3)
    ]
    rng.shuffle(ids)
    second = None
    for txn_id in ids:
        coordinator = await transaction_coordinator(ex.settings, txn_id)
        if coordinator != first:
            second = coordinator
            break
    rest = [n for n in nodes if n not in (first, second)]
    return [first, *([second] if second is not None else []), *rest]


@pytest.mark.timeout(2400 if FULL else 600)
async def test_broker_kill_loop_while_routing_has_no_anomaly(
    cluster: Cluster,
    exchange: MiniExchange,
    broker_faults: BrokerFaults,
    fleet: Fleet,
    fault_report: FaultReport,
) -> None:
    ex = exchange
    rng = random.Random(SEED)
    nodes = [s.node_id for s in cluster.kafka.status()]
    layout = exchange_topics(ex.registry.ids, partitions=3, replication=3, min_insync=2)
    topics = [spec.name for spec in layout] + ["__consumer_offsets", "__transaction_state"]
    for _ in range(ROUTERS):
        fleet.launch()
    log = PublishLog()
    stream = asyncio.create_task(
        publish(ex, log, BULLETINS, ROUNDS * len(nodes) * CYCLE_S, request_timeout_ms=60_000)
    )
    group = ex.router_settings().group_id
    resumed: list[float] = []
    caught_up: list[float] = []
    await fleet.routing(group)
    for _ in range(ROUNDS):
        for victim in await round_victims(ex, rng, nodes):
            await broker_faults.kill(victim, DOWN_S)
            resumed.append(await recovery(ex, group, RECOVERY_BOUND_S + 30))
            caught_up.append(await fully_replicated(ex.settings, topics, within=120))
    await stream
    drained_from = time.monotonic()
    report = await check(ex, log, within=300.0 if FULL else 180.0)
    drained = time.monotonic() - drained_from
    codes = await fleet.stop()
    each = ", ".join(f"{r:.1f}" for r in resumed)
    print(
        f"\nbroker kills: {len(log.acked)} acknowledged ({len(log.failed)} failed) over "
        f"{len(broker_faults.kills)} SIGKILLs (nodes {broker_faults.kills}); routing resumed "
        f"after each restart in {each} s; replicas back in sync after {max(caught_up):.1f} s "
        f"at worst; checked {drained:.1f} s after the stream ended\n{report.table()}"
    )
    fault_report.add(
        ScenarioRow(
            "2. broker kill -9 loop",
            "SIGKILL an audit leader, a transaction coordinator, the node left; "
            f"{DOWN_S:.0f} s down each",
            f"{len(log.acked):,} bulletins, {len(broker_faults.kills)} kills",
            anomalies_of(report),
            resumed,
            RECOVERY_BOUND_S,
            f"{len(log.failed)} publishes failed; routers exited {codes}; replicas in sync "
            f"again within {max(caught_up):.1f} s; decisions {dict(report.decisions)}",
            report.ok and not log.failed and max(resumed) <= RECOVERY_BOUND_S,
        )
    )
    assert not log.failed, f"{len(log.failed)} publishes failed although a retrying producer"
    assert len(log.acked) == BULLETINS
    assert report.ok, (report.table(), report.examples)
    assert len(broker_faults.kills) >= sized(3, 50)
    assert all(code == 0 for code in codes), codes
    assert max(resumed) <= RECOVERY_BOUND_S, resumed
