"""Fault scenario 6: a partner offline beyond its feed's retention (issue 13).

Retention deletes releases the partner never read. The consumer must report the gap (log,
metric, ``enlace inbox``), resume with what is left, and never skip anything silently: every
release written to the feed is either stored or inside a reported gap.

The feed is written the router's way (transactions, so commit markers take offsets) on the
3-node cluster. Retention is cut to ~1.5 s (with short segments so they roll and expire) only
while the partner is away, then restored. Three ways to be away:

1. a new partner whose feed's start already expired (the group never committed);
2. a partner stopped mid-way: the gap starts at its committed offset;
3. a partner that lags while running (held in a sink write): aiokafka's next fetch is out of
   range, and the gap starts where it was reading.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from structlog.testing import capture_logs
from typer.testing import CliRunner

from consumers.gaps import FeedGap, total_missed
from consumers.metrics import ConsumerMetrics
from consumers.records import Delivery, Item, Release
from consumers.service import FeedConsumer
from consumers.settings import ConsumerSettings
from consumers.store import BulletinStore
from enlace.cli import app
from enlace.core import clients
from enlace.core.topics import exchange_topics, feed
from schemas.envelope import seal
from tests.faults.conftest import Cluster
from tests.faults.nemesis import FULL, sized
from tests.faults.report import FaultReport, ScenarioRow
from tests.faults.routers import write_config
from tests.feed_records import feed_message
from tests.samples import routed_bulletin
from tests.support import MiniExchange, build_exchange, eventually

pytestmark = [pytest.mark.faults, pytest.mark.slow]

EXPIRED = sized(24, 300)  # releases written while the partner is away, then expired
LIVE = sized(16, 200)  # releases written after retention is restored: all must be stored
PER_TRANSACTION = 4  # the router writes in transactions: a commit marker every 4 offsets
SHORT_RETENTION = {"retention.ms": "1500", "segment.ms": "200"}
RECOVERY_BOUND_S = 30.0
WITHIN = 120.0  # generous: a 2-core machine shared with other clusters


class Feed:
    """The router's side of the partner's feed (partition 0): transactional releases, the
    topic's retention, and its log start offset."""

    def __init__(self, ex: MiniExchange, partner: str, origin: str) -> None:
        self.ex = ex
        self.topic = feed(partner)
        self.tp = TopicPartition(self.topic, 0)
        self.origin = origin
        spec = next(
            s
            for s in exchange_topics([partner], partitions=1, replication=3, min_insync=2)
            if s.name == self.topic
        )
        self.base_configs = dict(spec.configs)
        self.sent: dict[str, int] = {}  # bulletin id -> offset
        self.expiry_s: list[float] = []  # how long each cut of retention took to bite
        self._producer: AIOKafkaProducer | None = None
        self._probe: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def start(self) -> None:
        s = self.ex.settings
        self._producer = clients.producer(s, transactional_id=f"t{self.ex.token}-gap-feed")
        await self._producer.start()
        self._probe = clients.consumer(s, group_id=None)
        await self._probe.start()
        self._admin = AIOKafkaAdminClient(**s.client_kwargs(), request_timeout_ms=30_000)
        await self._admin.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._probe is not None:
            await self._probe.stop()
        if self._admin is not None:
            await self._admin.close()

    async def release(self, n: int) -> list[tuple[str, int]]:
        """Write ``n`` FULL releases in transactions; their (bulletin id, offset)."""
        assert self._producer is not None
        written: list[tuple[str, int]] = []
        key = self.ex.keys[self.origin]
        for start in range(0, n, PER_TRANSACTION):
            batch = [
                feed_message(seal(routed_bulletin(self.origin), key), Release.FULL)
                for _ in range(min(PER_TRANSACTION, n - start))
            ]
            async with self._producer.transaction():
                futures = [
                    await self._producer.send(
                        self.topic, m.value, key=m.key, headers=m.headers, partition=0
                    )
                    for m in batch
                ]
            for m, future in zip(batch, futures, strict=True):
                offset = (await future).offset
                written.append((m.key.decode(), offset))
                self.sent[m.key.decode()] = offset
        return written

    async def log_start(self) -> int:
        assert self._probe is not None
        starts = await self._probe.beginning_offsets([self.tp])
        return int(starts[self.tp])

    async def _configure(self, extra: dict[str, str]) -> None:
        assert self._admin is not None
        # AlterConfigs (non-incremental) replaces the topic's dynamic configs: send them all.
        configs = {**self.base_configs, **extra}
        responses = await self._admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, self.topic, configs)]
        )
        errors = [r[:2] for response in responses for r in response.resources if r[0]]
        assert not errors, errors

    async def expire_through(self, last: int) -> int:
        """Cut retention until the log start is past offset ``last``, then restore it; the
        new log start. Each loop writes one more release: a segment only rolls (and can then
        expire) when something is appended to it after ``segment.ms``; those releases are in
        the ledger like any other (most expire too)."""
        began = time.monotonic()
        await self._configure(SHORT_RETENTION)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WITHIN
        while (start := await self.log_start()) <= last:
            assert loop.time() < deadline, f"log start {start} never passed {last}"
            await self.release(1)
            await asyncio.sleep(0.3)  # pacing the roll releases, not synchronising
        await self._configure({})
        self.expiry_s.append(time.monotonic() - began)
        return start


class Partner:
    """The partner's consumer, embedded, with one metrics registry across its restarts."""

    def __init__(self, ex: MiniExchange, agency: str, workdir: Path) -> None:
        self.ex = ex
        self.agency = agency
        self.db = workdir / "inbox.sqlite3"
        self.metrics = ConsumerMetrics()
        self.settings = ConsumerSettings(
            kafka_bootstrap=ex.settings.kafka_bootstrap,
            agency=agency,
            agencies_file=workdir / "agencies.yaml",
            keys_file=workdir / "keys.yaml",
            sinks=(f"sqlite:{self.db}",),
            receipts=False,
            poll_timeout_ms=100,
            batch_max_records=1,  # so a hold in the sink write keeps the rest buffered
            state_dir=workdir / "state",
        )
        self.first_delivery: float | None = None
        self.hold: asyncio.Event | None = None  # armed: the next batch waits in its sink write
        self.holding = asyncio.Event()
        self.resume = asyncio.Event()

    def _delivered(self, _delivery: Delivery) -> None:
        if self.first_delivery is None:
            self.first_delivery = time.monotonic()

    async def _after_write(self, _items: Sequence[Item]) -> None:
        if self.hold is not None:
            self.hold = None
            self.holding.set()
            await self.resume.wait()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FeedConsumer]:
        consumer = FeedConsumer(
            self.settings,
            directory=self.ex.directory,
            key=self.ex.keys[self.agency],
            metrics=self.metrics,
            on_delivery=self._delivered,
            after_sink_write=self._after_write,
        )
        self.first_delivery = None
        await consumer.start()
        task = asyncio.create_task(consumer.run())
        try:
            yield consumer
        finally:
            await consumer.stop()
            await task

    def stored(self) -> set[str]:
        if not self.db.exists():
            return set()
        store = BulletinStore.open(self.db)
        try:
            return set(store.ids())
        finally:
            store.close()

    def gaps(self) -> list[FeedGap]:
        store = BulletinStore.open(self.db)
        try:
            return sorted(store.gap_rows(), key=lambda g: g.from_offset)
        finally:
            store.close()

    def counter(self, name: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"agency": self.agency})
        return value or 0.0

    async def until_stored(self, ids: set[str], what: str, feed_: Feed) -> None:
        try:
            await eventually(lambda: ids <= self.stored(), what, within=WITHIN)
        except AssertionError as exc:
            offsets = sorted(feed_.sent[b] for b in ids - self.stored())
            spans = [(g.from_offset, g.to_offset) for g in self.gaps()] if self.db.exists() else []
            raise AssertionError(f"{exc}; missing offsets {offsets}; gaps {spans}") from None


async def committed_offset(ex: MiniExchange, group: str, tp: TopicPartition) -> int:
    admin = AIOKafkaAdminClient(**ex.settings.client_kwargs())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return int(offsets[tp].offset)


def at_or_after(written: dict[str, int], start: int) -> set[str]:
    return {bid for bid, offset in written.items() if offset >= start}


@asynccontextmanager
async def opened(feed_: Feed) -> AsyncIterator[Feed]:
    await feed_.start()
    try:
        yield feed_
    finally:
        await feed_.stop()


@pytest.mark.timeout(900 if FULL else 420)
async def test_offline_partner_beyond_retention_reports_every_gap(
    cluster: Cluster, tmp_path: Path, fault_report: FaultReport
) -> None:
    ex = await build_exchange(
        cluster.settings, countries=("PA", "CR"), partitions=3, replication=3, min_insync=2
    )
    write_config(ex, tmp_path, [])
    pa, cr = ex.agency("PA"), ex.agency("CR")
    partner = Partner(ex, cr, tmp_path)
    run = Run()
    recovery, expected_gaps = run.recovery, run.expected_gaps

    with capture_logs() as logs:
        async with opened(Feed(ex, cr, pa)) as the_feed:
            # 1. A new partner whose feed's start expired before its first read.
            run.marks.append(time.monotonic())
            first = await the_feed.release(EXPIRED)
            start1 = await the_feed.expire_through(first[-1][1])
            await the_feed.release(LIVE)
            began = time.monotonic()
            async with partner.running():
                await partner.until_stored(
                    at_or_after(the_feed.sent, start1), "phase 1: what retention left", the_feed
                )
                assert partner.first_delivery is not None
                recovery.append(partner.first_delivery - began)
            expected_gaps.append((0, start1))
            assert [(g.from_offset, g.to_offset) for g in partner.gaps()] == expected_gaps

            # 2. The partner stops mid-way; retention expires what follows; it restarts.
            run.marks.append(time.monotonic())
            group = partner.settings.consumer_group()
            resume_at = await committed_offset(ex, group, the_feed.tp)
            second = await the_feed.release(EXPIRED)
            assert resume_at <= second[0][1]
            start2 = await the_feed.expire_through(second[-1][1])
            await the_feed.release(LIVE)
            began = time.monotonic()
            async with partner.running() as consumer:
                await partner.until_stored(
                    at_or_after(the_feed.sent, start2), "phase 2: what retention left", the_feed
                )
                assert partner.first_delivery is not None
                recovery.append(partner.first_delivery - began)

                run.marks.append(time.monotonic())
                # 3. The same consumer lags while running: held in a sink write with the
                # rest of its fetch buffered while retention deletes what follows.
                partner.hold = asyncio.Event()
                run.trigger = await the_feed.release(2)  # one transaction, one fetch
                await eventually(partner.holding.is_set, "phase 3: held", within=WITHIN)
                run.third = third = await the_feed.release(EXPIRED)
                run.start3 = start3 = await the_feed.expire_through(third[-1][1])
                await the_feed.release(LIVE)
                # The held transaction's second record is normally buffered in the fetch and
                # stored; if the client drops its buffer it is refetched, found expired, and
                # the gap starts there instead: either way never skipped silently (checked
                # below), so only what retention left must be stored.
                left = at_or_after(the_feed.sent, start3)
                released = time.monotonic()
                partner.resume.set()
                await partner.until_stored(left, "phase 3: what retention left", the_feed)
                # An upper bound: until all it could still get is stored, not the first one.
                recovery.append(time.monotonic() - released)
                assert consumer.health()[1]["feed_gaps"] == 2
            expected_gaps.append((resume_at, start2))
    run.marks.append(time.monotonic())
    check_and_report(run, the_feed, partner, logs, fault_report)


@dataclass
class Run:
    recovery: list[float] = field(default_factory=list)
    expected_gaps: list[tuple[int, int]] = field(default_factory=list)
    trigger: list[tuple[str, int]] = field(default_factory=list)
    third: list[tuple[str, int]] = field(default_factory=list)
    start3: int = -1
    marks: list[float] = field(default_factory=list)  # monotonic time at each phase's start

    def phases(self) -> str:
        return "/".join(f"{b - a:.0f}" for a, b in itertools.pairwise(self.marks))


def check_and_report(
    run: Run,
    the_feed: Feed,
    partner: Partner,
    logs: Sequence[MutableMapping[str, Any]],
    fault_report: FaultReport,
) -> None:
    trigger, third, start3 = run.trigger, run.third, run.start3
    expected_gaps, recovery, cr = run.expected_gaps, run.recovery, partner.agency
    gaps = partner.gaps()
    spans = [(g.from_offset, g.to_offset) for g in gaps]
    stored = partner.stored()
    # Phases 1 and 2: the gap is exactly [committed offset (0 for a new group), log start).
    assert spans[:2] == expected_gaps, spans
    # Phase 3: from where the lagging consumer was reading (after the held record: past the
    # buffered one, or at it when the client dropped its buffer) to the log start it found.
    assert len(spans) == 3, spans
    lag_from, lag_to = spans[2]
    assert trigger[0][1] < lag_from <= third[0][1], (trigger, spans)
    assert lag_to == start3

    def in_gap(offset: int) -> bool:
        return any(g.from_offset <= offset < g.to_offset for g in gaps)

    skipped = [bid for bid, off in the_feed.sent.items() if bid not in stored and not in_gap(off)]
    expired = [bid for bid in the_feed.sent if bid not in stored]
    missed = total_missed(gaps)
    assert not skipped, f"{len(skipped)} releases neither stored nor in a reported gap"
    assert len(stored) + len(expired) == len(the_feed.sent)
    assert len(expired) <= missed  # offsets count commit markers: an upper bound

    # Reported: the metric, the log (offsets, never bulletin content), enlace inbox.
    assert partner.counter("enlace_consumer_feed_gaps_total") == 3
    assert partner.counter("enlace_consumer_feed_gap_offsets_total") == missed
    logged = [e for e in logs if e["event"] == "feed_gap"]
    assert [(e["from_offset"], e["to_offset"], e["missed"]) for e in logged] == [
        (g.from_offset, g.to_offset, g.missed) for g in gaps
    ]
    assert all(e["topic"] == the_feed.topic and e["partition"] == 0 for e in logged)
    assert not any("title" in e or "summary" in e or "details" in e for e in logged)
    result = CliRunner().invoke(
        app, ["inbox", "--agency", cr, "--db", str(partner.db)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert f"3 gaps: {missed} feed offsets expired unread" in result.output
    for gap in gaps:
        assert gap.describe() in result.output

    worst = max(recovery)
    fault_report.add(
        ScenarioRow(
            "6. offline partner beyond retention",
            "feed retention cut to 1.5 s while the partner is away: new partner, stopped "
            "partner, partner lagging mid-run",
            f"{len(the_feed.sent)} releases, {len(expired)} expired unread",
            {"skipped_silently": len(skipped), "unreported_gaps": max(0, 3 - len(logged))},
            recovery,
            RECOVERY_BOUND_S,
            f"gaps {', '.join(f'{a}-{b}' for a, b in spans)} ({missed} offsets for "
            f"{len(expired)} releases: commit markers included); {len(stored)} stored; "
            f"retention took {', '.join(f'{t:.1f}' for t in the_feed.expiry_s)} s to expire "
            f"each offline period; phases took {run.phases()} s",
            not skipped and worst <= RECOVERY_BOUND_S,
        )
    )
    assert worst <= RECOVERY_BOUND_S, recovery
