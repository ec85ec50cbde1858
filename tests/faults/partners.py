"""What the partner-side fault scenarios (crash loop, disk full) share: a real ``enlace
consumer run`` process, the feed of releases written to one partner (with TEARLINE → FULL
upgrades), and readers of what the partner ended up with (its SQLite store read directly, its
JSONL lines, its receipts on Kafka, its group's committed offsets).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from aiokafka.structs import TopicPartition

from enlace.core import clients
from enlace.core.topics import feed, partitions_of, receipts
from schemas.envelope import open_event, seal
from schemas.vocab import TrustEventKind
from tests.faults.routers import write_config
from tests.feed_records import feed_message
from tests.samples import sample_bulletin
from tests.support import MiniExchange

COUNTRIES = ("PA", "US", "CR")
PARTNER = "CR"


@dataclass(frozen=True)
class Release:
    bulletin_id: str
    origin: str
    release: str  # "full" | "tearline"


@dataclass
class FeedPlan:
    """The releases written to the partner's feed, in order, and where each landed."""

    releases: list[Release]
    offsets: dict[tuple[int, int], Release] = field(default_factory=dict)  # (partition, offset)

    @property
    def bulletins(self) -> dict[str, str]:
        """Bulletin id -> the release the store must end with (FULL wins over TEARLINE)."""
        final: dict[str, str] = {}
        for r in self.releases:
            if final.get(r.bulletin_id) != "full":
                final[r.bulletin_id] = r.release
        return final

    @property
    def upgrades(self) -> int:
        kinds = Counter(r.bulletin_id for r in self.releases)
        return sum(1 for n in kinds.values() if n > 1)

    def expected_held(self, upto: dict[int, int]) -> dict[str, str]:
        """What the sinks must hold once partition ``p`` is committed up to ``upto[p]``."""
        final: dict[str, str] = {}
        for (partition, offset), r in self.offsets.items():
            if offset < upto.get(partition, 0) and final.get(r.bulletin_id) != "full":
                final[r.bulletin_id] = r.release
        return final


def plan_releases(ex: MiniExchange, total: int, rng: random.Random) -> FeedPlan:
    """``total`` releases from two originators: 15 % of them pairs (a TEARLINE, later the
    FULL copy of the same bulletin: an upgrade after a trust rise), the rest single releases,
    two FULL for one TEARLINE."""
    origins = [ex.agency(c) for c in COUNTRIES if c != PARTNER]
    pairs = total * 15 // 200
    singles = total - 2 * pairs
    ids = [sample_bulletin_id(rng) for _ in range(pairs + singles)]
    early: list[Release] = []
    late: list[Release] = []
    for i, bulletin_id in enumerate(ids):
        origin = origins[i % len(origins)]
        if i < pairs:
            early.append(Release(bulletin_id, origin, "tearline"))
            late.append(Release(bulletin_id, origin, "full"))
        else:
            kind = "tearline" if i % 3 == 0 else "full"
            (early if i % 2 else late).append(Release(bulletin_id, origin, kind))
    rng.shuffle(early)
    rng.shuffle(late)
    return FeedPlan(early + late)  # every upgrade's FULL comes after its TEARLINE


def sample_bulletin_id(rng: random.Random) -> str:
    # Seeded ids: a replayed seed writes the same feed.
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


async def write_feed(ex: MiniExchange, plan: FeedPlan) -> None:
    """Write the plan's releases to the partner's feed as the router does (key = bulletin id,
    the originator's signature over the released bytes), recording each one's offset."""
    partner = ex.agency(PARTNER)
    issued = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    sealed = {}
    for r in plan.releases:
        if r.bulletin_id not in sealed:
            bulletin = sample_bulletin(r.origin, bulletin_id=r.bulletin_id, issued_at=issued)
            sealed[r.bulletin_id] = seal(bulletin, ex.keys[r.origin])
    producer = clients.producer(ex.settings)
    await producer.start()
    try:
        futures = []
        for r in plan.releases:
            msg = feed_message(sealed[r.bulletin_id], r.release)
            futures.append(
                await producer.send(feed(partner), msg.value, key=msg.key, headers=msg.headers)
            )
        for r, meta in zip(plan.releases, await asyncio.gather(*futures), strict=True):
            plan.offsets[(meta.partition, meta.offset)] = r
    finally:
        await producer.stop()


class ConsumerProcess:
    """``enlace consumer run`` for the partner, as its own process. Its log goes through a
    pipe to a file written by the test process, so a file-size limit on the consumer never
    applies to its log."""

    def __init__(
        self,
        ex: MiniExchange,
        workdir: Path,
        name: str,
        sinks: list[str],
        *,
        env: Mapping[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        partner = ex.agency(PARTNER)
        self.name = name
        self.log_path = workdir / f"{name}.log"
        full_env = {
            **os.environ,
            "ENLACE_KAFKA_BOOTSTRAP": ex.settings.kafka_bootstrap,
            "ENLACE_AGENCY": partner,
            "ENLACE_AGENCIES_FILE": str(workdir / "agencies.yaml"),
            "ENLACE_KEYS_FILE": str(workdir / "keys.yaml"),
            "ENLACE_KEY_FILE": str(workdir / "private" / ex.keys[partner].file_name()),
            "ENLACE_STATE_DIR": str(workdir / "state"),
            "ENLACE_SINKS": json.dumps(sinks),
            # The broker's minimum: a killed member's partitions move on sooner.
            "ENLACE_SESSION_TIMEOUT_MS": "6000",
            "ENLACE_POLL_TIMEOUT_MS": "100",
            "ENLACE_HTTP_PORT": "0",
            "ENLACE_LOG_FORMAT": "json",
            **(env or {}),
        }
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "enlace.cli", "consumer", "run"],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,  # noqa: PLW1509 - only setrlimit, async-signal-safe after fork
        )
        assert self.proc.stdout is not None
        self._drain = threading.Thread(target=_copy, args=(self.proc.stdout, self._log))
        self._drain.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self) -> Iterator[dict[str, object]]:
        for line in self.log_path.read_bytes().splitlines():
            if line.startswith(b"{"):
                yield json.loads(line)

    def count(self, event: str) -> int:
        return sum(1 for line in self.lines() if line.get("event") == event)

    async def wait(self, within: float) -> int:
        code = await asyncio.to_thread(self.proc.wait, within)
        await asyncio.to_thread(self._drain.join, 10)
        self._close()
        return code

    async def stop(self) -> int:
        """SIGTERM (a clean stop: the batch in flight finishes, held offsets commit)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return await self.wait(60)

    def kill_now(self) -> None:
        """For teardown, pass or fail: SIGKILL by pid, then reap."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._drain.join(10)
        self._close()

    def _close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def _copy(source: IO[bytes], target: IO[bytes]) -> None:
    for line in iter(source.readline, b""):
        target.write(line)
        target.flush()


def prepare_partner(ex: MiniExchange, workdir: Path) -> None:
    """The consumer's files: the registry, the key directory and the partner's private key."""
    write_config(ex, workdir, [])
    ex.keys[ex.agency(PARTNER)].save(workdir / "private")


def stored(db: Path) -> dict[str, tuple[str, str, int]]:
    """The store read directly: bulletin id -> (release, receipt state, rows with that id)."""
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT bulletin_id, release, receipt_state FROM bulletins").fetchall()
    finally:
        conn.close()
    per_id = Counter(r[0] for r in rows)
    return {r[0]: (r[1], r[2], per_id[r[0]]) for r in rows}


def jsonl_lines(path: Path) -> list[tuple[str, str]]:
    """(bulletin id, release) of every JSONL line; a torn last line would fail here."""
    if not path.exists():
        return []
    return [
        (line["bulletin_id"], line["release"])
        for line in map(json.loads, path.read_text().splitlines())
    ]


async def committed_offsets(ex: MiniExchange, group: str) -> dict[int, int]:
    """The partner group's committed offset per feed partition (0: nothing committed)."""
    topic = feed(ex.agency(PARTNER))
    layout = await partitions_of(ex.settings, [topic])
    reader = clients.consumer(ex.settings, group_id=group, request_timeout_ms=10_000)
    await reader.start()
    try:
        return {p: (await reader.committed(TopicPartition(topic, p))) or 0 for p in layout[topic]}
    finally:
        await reader.stop()


@dataclass(frozen=True)
class Receipts:
    per_bulletin: dict[str, set[str]]  # bulletin id -> distinct receipt event ids
    records: int  # receipt records on the topic, repeats (same event id) included
    repeats: int  # records beyond the first of their event id


async def read_receipts(ex: MiniExchange, want: int, *, within: float = 90.0) -> Receipts:
    """Every receipt the partner sent, verified with the key directory: read until ``want``
    bulletins are covered, then two quiet seconds more to catch any extras."""
    topic = receipts(ex.agency(PARTNER))
    layout = await partitions_of(ex.settings, [topic])
    reader = clients.consumer(ex.settings, group_id=None)
    await reader.start()
    per_bulletin: dict[str, set[str]] = {}
    ids: Counter[str] = Counter()
    try:
        reader.assign([TopicPartition(topic, p) for p in layout[topic]])
        await reader.seek_to_beginning()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        quiet_until: float | None = None
        while loop.time() < deadline:
            if quiet_until is None and len(per_bulletin) >= want:
                quiet_until = loop.time() + 2.0
            if quiet_until is not None and loop.time() > quiet_until:
                break
            batch = await reader.getmany(timeout_ms=200)
            for rec in (r for recs in batch.values() for r in recs):
                event, _ = open_event(ex.directory, rec.value, rec.headers, at=datetime.now(UTC))
                assert event.kind is TrustEventKind.RECEIPT
                ids[event.event_id] += 1
                per_bulletin.setdefault(str(event.bulletin_id), set()).add(event.event_id)
    finally:
        await reader.stop()
    return Receipts(per_bulletin, sum(ids.values()), sum(n - 1 for n in ids.values()))
