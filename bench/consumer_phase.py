"""The partner consumer's throughput: a feed of N real sealed releases, read from its start.

:func:`consumer_phase` fills a partner's feed (``bench.consumer_feed``: sealed, admitted and
released as the router does), reads it once with a plain consumer (the raw Kafka ceiling of
this feed on this machine, measured in the same run), then runs the real
:class:`~consumers.service.FeedConsumer` (verify and unseal, sinks, offset commits, signed
receipts) from the beginning of the topic once per sink until all N are stored. Each sink run
gets a fresh consumer group and store. Lost, duplicated or quarantined records are reported
in the row's note and in :attr:`PhaseResult.problems`: they are failures, not noise.

CPU per record is this process's CPU time (the consumer, its SQLite thread and its receipts
producer all run here) over the records stored; the broker's share is listed too when it is a
local one (``bench.kafka_env.broker_pid``).

Standalone: ``python -m bench.consumer_phase --records 20000`` starts a private broker on
127.0.0.1:9392 (its own data directory, so a main bench run on 9292 is not disturbed) and
prints the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bench.consumer_feed import Filled, fill_feed
from bench.cpu import CpuUse, CpuWindow
from bench.exchange import Exchange, build_exchange, new_token
from bench.kafka_env import BENCH_KAFKA_DIR, broker_pid, kafka_for_bench
from bench.report import Row, rows_table
from consumers.records import StoreOutcome
from consumers.service import Delivery, FeedConsumer
from consumers.settings import ConsumerSettings
from enlace.core import clients
from enlace.core.logs import configure_logging
from enlace.core.settings import KafkaSettings
from enlace.core.topics import TopicSpec, ensure_topics

PARTNER = "cr-msp"  # the seed agency whose feed is read
ORIGINS = ("us-jiatfs", "pa-senafront", "co-ponal")  # originators, in turn
SINKS = ("sqlite", "stix")
STANDALONE_PORT = 9392
STANDALONE_DIR = BENCH_KAFKA_DIR.with_name("bench-kafka-consumer")
MIN_WAIT_S = 60.0
MIN_RATE = 50.0  # records/s below which a run is given up as stuck

Progress = Callable[[str], None]

__all__ = ["PhaseResult", "SinkRun", "consumer_phase", "main"]


@dataclass(frozen=True)
class SinkRun:
    """One consumer run over the whole feed with one sink (pure data)."""

    sink: str
    offered: int
    stored: int
    delivered: int
    duplicates: int
    quarantined: int
    receipts: int
    seconds: float
    cpu: CpuUse

    @property
    def rate(self) -> float:
        return self.stored / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_record(self) -> float:
        return self.cpu.bench_s / self.stored * 1e3 if self.stored else 0.0

    def failures(self) -> list[str]:
        out = []
        if self.stored != self.offered:
            out.append(f"{self.offered - self.stored} of {self.offered} NOT STORED")
        if self.duplicates:
            out.append(f"{self.duplicates} DUPLICATED")
        if self.quarantined:
            out.append(f"{self.quarantined} QUARANTINED")
        return out

    def row(self, baseline: float | None) -> Row:
        notes = [*self.failures(), f"consumer CPU {self.cpu_ms_per_record:.3f} ms/record"]
        if baseline:
            notes.append(f"{self.rate / baseline:.1%} of the raw read")
        notes.append(f"receipts sent {self.receipts:,}")
        notes.append(self.cpu.describe(self.stored, "record"))
        cpu = {
            **self.cpu.as_dict(),
            "cpu_ms_per_record": round(self.cpu_ms_per_record, 4),
            "stored": self.stored,
        }
        return Row(
            f"Consumer: feed → {self.sink}",
            "from the start of the feed",
            self.offered,
            self.rate,
            "records/s",
            None,
            "; ".join(notes),
            cpu,
        )


@dataclass
class PhaseResult:
    """The phase's rows (fill, raw read, one per sink), its failures and the figures."""

    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    runs: list[SinkRun] = field(default_factory=list)
    raw_rate: float | None = None


def fill_row(filled: Filled) -> Row:
    note = (
        f"build (seal + admit + release, 2 processes) {filled.build_s:.1f} s, "
        f"{filled.value_bytes} bytes a value"
    )
    return Row(
        "Consumer: fill the feed",
        "flat out",
        filled.records,
        filled.records / filled.send_s if filled.send_s > 0 else None,
        "msg/s",
        None,
        note,
    )


async def raw_read(settings: KafkaSettings, topic: str, count: int) -> tuple[int, float]:
    """Read the whole feed with a plain read_committed consumer, no processing: (records,
    seconds). The consumer's own fetch settings, so only the per-record work differs."""
    consumer = clients.consumer(
        settings, topic, group_id=None, max_partition_fetch_bytes=clients.MAX_REQUEST_BYTES
    )
    await consumer.start()
    try:
        seen = 0
        started = time.perf_counter()
        deadline = started + max(MIN_WAIT_S, count / MIN_RATE)
        while seen < count and time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
        return seen, time.perf_counter() - started
    finally:
        await consumer.stop()


def consumer_settings(
    kafka: KafkaSettings, exchange: Exchange, prefix: str, sink_uri: str, state_dir: Path
) -> ConsumerSettings:
    return ConsumerSettings(
        kafka_bootstrap=kafka.kafka_bootstrap,
        agency=exchange.agency(PARTNER),
        agencies_file=exchange.agencies_file,
        keys_file=exchange.keys_file,
        topic_prefix=prefix,
        sinks=(sink_uri,),
        state_dir=state_dir,
    )


def count_held(sink: str, target: Path, stored: set[str]) -> int:
    """What the sink holds: the bulletins its store reported new (the SQLite store's primary
    key makes a second copy impossible), or the bundle files of the STIX directory."""
    if sink == "stix":
        return sum(1 for _ in target.glob("*.json"))
    return len(stored)


async def one_sink(  # noqa: PLR0917 - one step of consumer_phase
    kafka: KafkaSettings,
    exchange: Exchange,
    prefix: str,
    sink: str,
    workdir: Path,
    count: int,
    pids: dict[str, int | None],
) -> SinkRun:
    target = workdir / (f"{sink}.sqlite3" if sink == "sqlite" else sink)
    settings = consumer_settings(
        kafka, exchange, prefix, f"{sink}:{target}", workdir / f"state-{sink}"
    )
    # A fresh group per sink: each run reads the feed from its start.
    settings = settings.model_copy(update={"group_id": f"{prefix}bench-consumer-{sink}"})
    stored: set[str] = set()
    done = asyncio.Event()

    def on_delivery(delivery: Delivery) -> None:
        if delivery.outcome is not StoreOutcome.DUPLICATE:
            stored.add(delivery.bulletin.bulletin_id)
        if len(stored) >= count:
            done.set()

    partner = exchange.agency(PARTNER)
    consumer = FeedConsumer(
        settings, directory=exchange.directory, key=exchange.keys[partner], on_delivery=on_delivery
    )
    await consumer.start()
    window = CpuWindow(pids)
    task = asyncio.create_task(consumer.run())
    waiter = asyncio.create_task(done.wait())
    try:
        # Ends early if run() fails (awaited below, so its error is raised) or stalls.
        await asyncio.wait(
            {task, waiter},
            timeout=max(MIN_WAIT_S, count / MIN_RATE),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        waiter.cancel()
    cpu = window.stop()
    await consumer.stop()
    await task
    return SinkRun(
        sink,
        count,
        count_held(sink, target, stored),
        consumer.delivered,
        consumer.duplicates,
        consumer.quarantined,
        consumer.receipts_sent,
        cpu.seconds,
        cpu,
    )


async def consumer_phase(
    settings: KafkaSettings,
    workdir: Path,
    *,
    records: int = 20_000,
    sinks: Sequence[str] = SINKS,
    progress: Progress | None = None,
) -> PhaseResult:
    """Fill a private partner feed on ``settings``' broker with ``records`` sealed releases,
    then run the real consumer over it once per sink in ``sinks`` (``sqlite``, ``stix``).

    Everything (exchange files, stores, bundles) goes under ``workdir``; the topics are
    private to the run (a fresh token). Returns the rows (fill, raw read, one per sink: rate
    in records/s, CPU per record and the count stored in ``Row.cpu``), the failures, and the
    per-sink figures."""
    say = progress or (lambda _message: None)
    token = new_token()
    exchange = build_exchange(workdir / "exchange", token)
    prefix = f"bench{token}."
    partner = exchange.agency(PARTNER)
    feed, receipts = f"{prefix}enlace.feed.{partner}", f"{prefix}enlace.receipts.{partner}"
    await ensure_topics(
        settings,
        [
            TopicSpec(feed, settings.topic_partitions, 1),
            TopicSpec(receipts, settings.topic_partitions, 1),
        ],
    )
    result = PhaseResult()
    say(f"consumer phase: building and writing {records:,} sealed releases to {feed}")
    filled = await fill_feed(
        settings,
        feed,
        keys=exchange.keys,
        partner=partner,
        origins=[exchange.agency(o) for o in ORIGINS],
        count=records,
    )
    result.rows.append(fill_row(filled))
    seen, seconds = await raw_read(settings, feed, records)
    result.raw_rate = seen / seconds if seconds > 0 else None
    result.rows.append(
        Row(
            "Consumer: raw read of the feed",
            "plain consumer, no processing",
            records,
            result.raw_rate,
            "msg/s",
            None,
            "" if seen == records else f"{records - seen} NOT READ",
        )
    )
    pids = {"broker": broker_pid(settings.kafka_bootstrap, extra=(STANDALONE_DIR,))}
    for sink in sinks:
        say(f"consumer phase: the consumer with the {sink} sink")
        run = await one_sink(settings, exchange, prefix, sink, workdir, records, pids)
        result.runs.append(run)
        result.rows.append(run.row(result.raw_rate))
        result.problems += [f"consumer → {sink}: {f}" for f in run.failures()]
    return result


def _progress(message: str) -> None:
    print(f"[consumer phase] {message}", file=sys.stderr, flush=True)


def _log_to(file: TextIO) -> None:
    # The consumer's production logging (INFO, JSON: its per-record line is part of its
    # cost), into a file so that the table on stdout stays readable.
    configure_logging("INFO", "json", file=file)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.consumer_phase", description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--sinks", default=",".join(SINKS), help="comma-separated: sqlite,stix")
    args = parser.parse_args(argv)
    sinks = [s for s in args.sinks.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="enlace-bench-consumer-") as tmp:
        workdir = Path(tmp)
        with (workdir / "consumer.log").open("w", encoding="utf-8") as log_file:
            _log_to(log_file)
            try:
                with kafka_for_bench(
                    KafkaSettings(),
                    _progress,
                    private=True,
                    port=STANDALONE_PORT,
                    data_dir=STANDALONE_DIR,
                ) as (kafka, broker):
                    _progress(f"on {broker}; consumer log: {log_file.name} (removed at exit)")
                    result = asyncio.run(
                        consumer_phase(
                            kafka, workdir, records=args.records, sinks=sinks, progress=_progress
                        )
                    )
            finally:
                configure_logging("INFO")  # back to stderr before the log file closes
    sys.stdout.write(rows_table(result.rows) + "\n")
    for problem in result.problems:
        sys.stdout.write(f"- PROBLEM: {problem}\n")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
