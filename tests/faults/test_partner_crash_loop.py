"""Scenario 5 of the fault suite: the partner crash loop. A real ``enlace consumer run`` for
one partner (SQLite store, JSONL and STIX sinks) on the 3-node cluster (RF 3, min ISR 2) is
SIGKILLed by its own drill (``consumers/drills.py``) at the three points where its state is split —
after the sink write (sinks hold, Kafka not committed), mid-batch (one sink holds, the other
is still writing), after the receipt is acknowledged (Kafka has it, the store still says
pending) — and restarted at once, over 1,000 releases, 15 % of them in TEARLINE → FULL
upgrade pairs. At the end the store, read directly, holds every bulletin exactly once (upgraded
ones as FULL); the receipts topic holds exactly one receipt event per (bulletin, partner):
an upgrade does not earn a second receipt (the design: "one receipt per bulletin, whichever
copy came first"; the event id is UUIDv5(reporter, bulletin)), and a receipt re-sent after a
kill between the broker's ack and the store's mark is the same event id, which the router
counts once (``broker/trust_state.py``: by (reporter, event_id)). Recovery per kill: seconds
from the restart until the consumer stores again (its JSONL sink grows).

Folded in from the former ``tests/integration/test_consumer_crash.py``: a kill after the sink
write leaves nothing committed beyond what the sinks hold; JSONL is at-least-once (it repeats
the killed batch's lines) while the store stores once; the STIX sink ends with one bundle per
bulletin (a full one for upgraded bulletins); the delivered counter never counts a bulletin
twice across restarts (a redelivered batch is counted as duplicates).
"""

from __future__ import annotations

import math
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from consumers.drills import KillPoint
from enlace.core import topics
from tests.faults.conftest import Cluster
from tests.faults.nemesis import FULL, SEED, sized
from tests.faults.partners import (
    COUNTRIES,
    PARTNER,
    ConsumerProcess,
    FeedPlan,
    committed_offsets,
    jsonl_lines,
    plan_releases,
    prepare_partner,
    read_receipts,
    stored,
    write_feed,
)
from tests.faults.report import FaultReport, ScenarioRow
from tests.support import MiniExchange, build_exchange, eventually

pytestmark = [pytest.mark.faults, pytest.mark.slow]

RELEASES = sized(1_000, 5_000)
KILLS = sized(6, 30)  # each kill point twice at CI size
BATCH = 10  # records per batch: each drilled run dies within a few batches, work remains
RECOVERY_BOUND_S = 30.0
DETAILS = "Liaison reporting indicates"  # the sample's details: above the tearline
POINTS = (KillPoint.AFTER_SINK_WRITE, KillPoint.MID_BATCH, KillPoint.AFTER_RECEIPT)


@pytest.fixture
async def exchange(cluster: Cluster, tmp_path: Path) -> MiniExchange:
    ex = await build_exchange(
        cluster.settings, countries=COUNTRIES, partitions=3, replication=3, min_insync=2
    )
    prepare_partner(ex, tmp_path)
    return ex


@pytest.fixture
def processes() -> Iterator[list[ConsumerProcess]]:
    started: list[ConsumerProcess] = []
    try:
        yield started
    finally:
        for proc in started:  # pass or fail, every process we started, by pid
            proc.kill_now()


@pytest.mark.timeout(1200 if FULL else 300)
async def test_partner_crash_loop_stores_once_and_receipts_once(
    exchange: MiniExchange,
    processes: list[ConsumerProcess],
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    ex = exchange
    rng = random.Random(SEED)
    plan = plan_releases(ex, RELEASES, rng)
    await write_feed(ex, plan)
    expected = plan.bulletins
    db, jsonl = tmp_path / "inbox.sqlite3", tmp_path / "feed.jsonl"
    stix = tmp_path / "stix"
    sinks = [f"sqlite:{db}", f"jsonl:{jsonl}", f"stix:{stix}"]
    group = topics.consumer_group(ex.agency(PARTNER))

    loop = await _crash_loop(ex, plan, tmp_path, sinks, processes=processes, rng=rng)
    recoveries, kills_at = loop.recoveries, loop.kills_at

    final = processes[-1]
    await eventually(
        lambda: _settled(stored(db), expected), "every bulletin stored and receipted", within=120
    )
    assert await final.stop() == 0

    # The store, read directly.
    held = stored(db)
    lost = sum(1 for b, r in expected.items() if held.get(b, ("",))[0] != r)
    stored_twice = sum(1 for _, _, rows in held.values() if rows > 1)
    unexpected = len(held.keys() - expected.keys())
    # JSONL is at-least-once: every release that reached the store is there, some twice.
    lines = jsonl_lines(jsonl)
    assert {b for b, _ in lines} == expected.keys()
    assert Counter(lines).keys() >= set(expected.items())
    # STIX: one bundle per bulletin, full where the store is full (details only in those).
    bundles = {b.stem: b.read_text() for b in stix.glob("*.json")}
    assert bundles.keys() == expected.keys()
    not_upgraded = [b for b, r in expected.items() if (DETAILS in bundles[b]) != (r == "full")]
    assert not not_upgraded, f"{len(not_upgraded)} STIX bundles at the wrong release"
    # The delivered counter (new or upgraded only) never counted a bulletin twice.
    outcomes = Counter(
        str(line.get("outcome"))
        for proc in processes
        for line in proc.lines()
        if line.get("event") == "delivered"
    )
    assert outcomes["inserted"] <= len(expected)
    assert outcomes["upgraded"] <= plan.upgrades
    # Kafka: everything committed.
    upto = await committed_offsets(ex, group)
    assert sum(upto.values()) == RELEASES

    receipts = await read_receipts(ex, len(expected))
    missing_receipt = len(expected.keys() - receipts.per_bulletin.keys())
    duplicate_receipt = sum(len(ids) - 1 for ids in receipts.per_bulletin.values())
    foreign = len(receipts.per_bulletin.keys() - expected.keys())

    anomalies = {
        "lost": lost,
        "stored_twice": stored_twice,
        "duplicate_receipt": duplicate_receipt,
        "missing_receipt": missing_receipt,
        "unexpected": unexpected + foreign,
    }
    bounded = all(r <= RECOVERY_BOUND_S for r in recoveries)
    passed = not any(anomalies.values()) and bounded and sum(kills_at.values()) == KILLS
    upgraded = sum(1 for b, r in expected.items() if r == "full" and held[b][0] == "full")
    fault_report.add(
        ScenarioRow(
            scenario="5. partner crash loop",
            fault=(
                f"{KILLS} SIGKILLs of `enlace consumer run` by its drill "
                f"({', '.join(f'{n} {p}' for p, n in sorted(kills_at.items()))}), restart at once"
            ),
            scale=f"{RELEASES:,} releases, {plan.upgrades} TEARLINE→FULL upgrades, 3 nodes",
            anomalies=anomalies,
            recovery_s=recoveries,
            recovery_bound_s=RECOVERY_BOUND_S,
            figures=(
                f"{len(expected):,} bulletins stored once ({upgraded:,} FULL, "
                f"{len(expected) - upgraded:,} TEARLINE; {plan.upgrades} upgraded in place); "
                f"{len(receipts.per_bulletin):,} receipt event ids for {len(expected):,} "
                f"bulletins, {receipts.records:,} receipt records ({receipts.repeats} repeats "
                f"of an id after an after_receipt kill, counted once by the router); JSONL "
                f"{len(lines):,} lines ({len(lines) - len(set(lines)):,} repeated, at-least-"
                f"once); {len(bundles):,} STIX bundles; delivered log: {outcomes['inserted']:,} "
                f"inserted, {outcomes['upgraded']} upgraded, {outcomes['duplicate']} "
                f"duplicates; {loop.uncommitted_held} bulletins held beyond the commit at "
                "the kills"
            ),
            passed=passed,
        )
    )
    assert not any(anomalies.values()), anomalies
    assert bounded, f"recovery over {RECOVERY_BOUND_S} s: {recoveries}"
    assert not any(math.isinf(r) for r in recoveries)


@dataclass
class _Loop:
    recoveries: list[float] = field(default_factory=list)
    kills_at: Counter[str] = field(default_factory=Counter)
    uncommitted_held: int = 0  # bulletins the store held beyond the commit when a run died


async def _crash_loop(
    ex: MiniExchange,
    plan: FeedPlan,
    workdir: Path,
    sinks: list[str],
    *,
    processes: list[ConsumerProcess],
    rng: random.Random,
) -> _Loop:
    """Start a consumer whose drill kills it, check what it left, start the next at once;
    after the last kill, one without a drill (left running)."""
    db, jsonl = workdir / "inbox.sqlite3", workdir / "feed.jsonl"
    group = topics.consumer_group(ex.agency(PARTNER))
    loop = _Loop()
    schedule = [POINTS[k % len(POINTS)] for k in range(KILLS)]
    rng.shuffle(schedule)
    for k, point in enumerate([*schedule, None]):
        lines_before = len(jsonl_lines(jsonl))
        drill = (
            {
                "ENLACE_FAULT_KILL_AT": point.value,
                # From the second arrival on: each run stores at least one batch whole
                # before it dies, so its recovery is measured on a fresh store.
                "ENLACE_FAULT_KILL_AFTER": str(rng.randint(2, 4)),
            }
            if point is not None
            else {}
        )
        started = time.monotonic()
        proc = ConsumerProcess(
            ex,
            workdir,
            f"consumer-{k}",
            sinks,
            env={"ENLACE_BATCH_MAX_RECORDS": str(BATCH), **drill},
        )
        processes.append(proc)

        def grew(before: int = lines_before) -> bool:
            return len(jsonl_lines(jsonl)) > before

        await eventually(grew, f"consumer-{k} stores", within=90)
        if k > 0:  # the start after a kill: recovery from that kill
            loop.recoveries.append(time.monotonic() - started)
        if point is None:
            return loop
        code = await proc.wait(within=90)
        assert code == -signal.SIGKILL, f"consumer-{k} exited {code}, not by its drill"
        assert proc.count("consumer_killed_on_purpose") == 1
        loop.kills_at[point.value] += 1
        # Nothing committed beyond what the sinks hold, at the moment of death.
        upto = await committed_offsets(ex, group)
        held = stored(db)
        must = plan.expected_held(upto)
        assert all(held.get(b, ("",))[0] in (r, "full") for b, r in must.items())
        assert set(jsonl_lines(jsonl)) >= set(must.items())
        loop.uncommitted_held += len(held.keys() - must.keys())
    raise AssertionError("unreachable: the last run has no drill")


def _settled(held: dict[str, tuple[str, str, int]], expected: dict[str, str]) -> bool:
    return all(held.get(b, ("", ""))[:2] == (r, "sent") for b, r in expected.items())
