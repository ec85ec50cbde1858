"""Scenario 8 of the fault suite: the partner's disk fills up. A real ``enlace consumer run``
(SQLite store + JSONL sink) runs under a file-size limit (``RLIMIT_FSIZE``, set before exec);
the service ignores SIGXFSZ, so a write past the limit fails with EFBIG, which each sink turns
into a SinkError, retried with backoff. While the disk is "full": the process stays alive,
``/health`` answers 503 naming the failing sink, ``enlace_sink_errors_total`` counts, and the
group's committed offsets (read with a plain client) never pass what both sinks hold. Then
space returns without a restart: the test raises the running process's limit from outside
(``prlimit``), a little at first (the disk fills again), unlimited at the last. At the end
every bulletin is stored exactly once (upgrades as FULL), nothing is lost, one receipt event
per bulletin. Recovery: seconds from the space's return until the consumer stores again.

The JSONL file starts with an earlier megabyte of lines, so the first fill hits the JSONL
sink and later ones the store (its WAL grows faster): both file sinks fill up.
"""

from __future__ import annotations

import json
import random
import resource
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

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
FILLS = sized(3, 10)
# Bytes of room each time space returns (before the last, unlimited). More at full size: the
# store's file catches up with its WAL at a checkpoint, and at 5,000 releases the WAL runs
# ahead of it by more than 192 KiB, so that little room was no room (both files at the limit).
# The store's STIX index (consumers/stix_index) about triples what a bulletin writes: a batch
# of 50 and its checkpoint took more than 192 KiB at CI size after it (storing never resumed).
ROOM = sized(768 * 1024, 3 * 1024 * 1024)
EARLIER = 1024 * 1024  # the JSONL file's earlier lines
RECOVERY_BOUND_S = 30.0
CHECKS_PER_FILL = 3  # commit-vs-sinks checks while full, one per failed retry


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


def _limit(soft: int) -> None:
    # In the child before exec: only the soft limit, so the test (same user) can raise it.
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, resource.RLIM_INFINITY))


def _earlier_lines(path: Path, size: int) -> int:
    """What the JSONL file held before this feed (other bulletins): ``size`` bytes or so."""
    line = {"type": "bulletin", "release": "full", "note": "x" * 400}
    count = 0
    with path.open("w") as out:
        while out.tell() < size:
            out.write(json.dumps({**line, "bulletin_id": str(uuid.uuid4())}) + "\n")
            count += 1
    return count


def _largest(*paths: Path) -> int:
    return max((p.stat().st_size for p in paths if p.exists()), default=0)


def _health(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=10) as response:  # noqa: S310 - our loopback endpoint
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _sink_errors(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # noqa: S310 - our loopback endpoint
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("enlace_sink_errors_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('sink="')[1].split('"')[0]] = float(value)
    return out


async def _commit_within_sinks(
    ex: MiniExchange, plan: FeedPlan, group: str, db: Path, jsonl: Path
) -> int:
    """Every record below a committed offset is held by both sinks; returns the records
    committed."""
    upto = await committed_offsets(ex, group)
    must = plan.expected_held(upto)
    held = stored(db)
    lines = set(jsonl_lines(jsonl))
    beyond_store = [b for b, r in must.items() if held.get(b, ("",))[0] not in (r, "full")]
    beyond_jsonl = [b for b, r in must.items() if (b, r) not in lines]
    assert not beyond_store, f"{len(beyond_store)} committed records not in the store"
    assert not beyond_jsonl, f"{len(beyond_jsonl)} committed records not in the JSONL"
    return sum(upto.values())


@pytest.mark.timeout(1200 if FULL else 300)
async def test_partner_disk_full_commits_nothing_beyond_the_sinks(  # noqa: PLR0915 - one scenario, told in order
    exchange: MiniExchange,
    processes: list[ConsumerProcess],
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    ex = exchange
    plan = plan_releases(ex, RELEASES, random.Random(SEED + 8))
    await write_feed(ex, plan)
    expected = plan.bulletins
    db, jsonl = tmp_path / "inbox.sqlite3", tmp_path / "feed.jsonl"
    files = (db, Path(f"{db}-wal"), jsonl)
    earlier = _earlier_lines(jsonl, EARLIER)
    group = topics.consumer_group(ex.agency(PARTNER))

    limit = EARLIER + ROOM
    proc = ConsumerProcess(
        ex, tmp_path, "consumer", [f"sqlite:{db}", f"jsonl:{jsonl}"],
        env={"ENLACE_BATCH_MAX_RECORDS": "50", "ENLACE_SINK_RETRY_MAX_S": "1"},
        preexec_fn=lambda: _limit(limit),
    )  # fmt: skip
    processes.append(proc)
    await eventually(lambda: proc.count("http_listening") == 1, "consumer listening", within=90)
    url = str(next(line["url"] for line in proc.lines() if line.get("event") == "http_listening"))

    recoveries: list[float] = []
    failing: Counter[str] = Counter()  # fills, by the sink that failed
    committed_while_full: list[int] = []
    for fill in range(FILLS):
        failed_before = proc.count("sink_failed")
        await eventually(
            lambda n=failed_before: proc.count("sink_failed") > n,  # type: ignore[misc]  # bind now
            f"fill {fill}: the disk fills",
            within=120,
        )
        assert proc.proc.poll() is None, "the consumer died of a full disk"
        status, health = _health(url)
        assert status == 503, health
        sinks_failing = health["sinks_failing"]
        assert isinstance(sinks_failing, dict)
        assert sinks_failing
        for name in sinks_failing:
            failing[str(name).split(":", 1)[0]] += 1
        for check in range(CHECKS_PER_FILL):
            # Each check after one more failed retry: the consumer is still full, and what
            # Kafka has committed is still within what the sinks hold.
            seen = proc.count("sink_failed")
            await eventually(
                lambda n=seen: proc.count("sink_failed") > n,  # type: ignore[misc]  # bind now
                f"fill {fill}: retry {check}",
                within=60,
            )
            committed = await _commit_within_sinks(ex, plan, group, db, jsonl)
        committed_while_full.append(committed)
        assert sum(_sink_errors(url).values()) > 0

        # Space returns, without a restart.
        last = fill == FILLS - 1
        limit = resource.RLIM_INFINITY if last else _largest(*files) + ROOM
        stored_before, lines_before = len(stored(db)), len(jsonl_lines(jsonl))
        returned = time.monotonic()
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        await eventually(
            lambda s=stored_before, j=lines_before: (  # type: ignore[misc]  # bind now
                len(stored(db)) > s or len(jsonl_lines(jsonl)) > j
            ),
            f"fill {fill}: storing again",
            within=60,
        )
        recoveries.append(time.monotonic() - returned)

    await eventually(
        lambda: all(stored(db).get(b, ("", ""))[:2] == (r, "sent") for b, r in expected.items()),
        "every bulletin stored and receipted",
        within=120,
    )
    assert proc.proc.poll() is None
    status, health = _health(url)
    assert status == 200, health
    errors = _sink_errors(url)
    assert await proc.stop() == 0

    held = stored(db)
    lost = sum(1 for b, r in expected.items() if held.get(b, ("",))[0] != r)
    stored_twice = sum(1 for _, _, rows in held.values() if rows > 1)
    lines = [line for line in jsonl_lines(jsonl) if line[0] in expected]
    assert len(jsonl_lines(jsonl)) - len(lines) == earlier  # the earlier lines untouched
    jsonl_lost = len(set(expected.items()) - set(lines))
    jsonl_twice = len(lines) - len(set(lines))
    upto = await committed_offsets(ex, group)
    assert sum(upto.values()) == RELEASES
    receipts = await read_receipts(ex, len(expected))
    anomalies = {
        "lost": lost + jsonl_lost,
        "stored_twice": stored_twice + jsonl_twice,
        "duplicate_receipt": sum(len(ids) - 1 for ids in receipts.per_bulletin.values()),
        "missing_receipt": len(expected.keys() - receipts.per_bulletin.keys()),
        "unexpected": len(held.keys() - expected.keys())
        + len(receipts.per_bulletin.keys() - expected.keys()),
    }
    bounded = all(r <= RECOVERY_BOUND_S for r in recoveries)
    fault_report.add(
        ScenarioRow(
            scenario="8. disk full at the partner",
            fault=(
                f"RLIMIT_FSIZE on `enlace consumer run`, filled {FILLS} times "
                f"({', '.join(f'{s} {n}x' for s, n in sorted(failing.items()))}); space "
                "returned by prlimit, no restart"
            ),
            scale=f"{RELEASES:,} releases, {plan.upgrades} TEARLINE→FULL upgrades, 3 nodes",
            anomalies=anomalies,
            recovery_s=recoveries,
            recovery_bound_s=RECOVERY_BOUND_S,
            figures=(
                f"{len(expected):,} bulletins stored once; committed while full "
                f"{', '.join(f'{c:,}' for c in committed_while_full)} of {RELEASES:,} "
                f"records, never past the sinks ({FILLS * CHECKS_PER_FILL} checks); sink "
                f"errors {', '.join(f'{k} {v:.0f}' for k, v in sorted(errors.items()))}; "
                f"/health 503 while full; {len(receipts.per_bulletin):,} receipt ids, "
                f"{receipts.repeats} repeats of an id"
            ),
            passed=not any(anomalies.values()) and bounded,
        )
    )
    assert not any(anomalies.values()), anomalies
    assert bounded, f"recovery over {RECOVERY_BOUND_S} s: {recoveries}"
