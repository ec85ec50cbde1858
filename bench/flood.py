"""The flood phase (``python -m bench --flood``): what a flood of junk trust events from one
partner costs everyone else.

One partner (``cr-msp`` of the run) writes ``Plan.flood_events`` correctly signed junk trust
events (:mod:`bench.junk`) to its own receipts topic from a child process, as fast as a plain
producer goes. Meanwhile three other agencies publish bulletins at the fixed rate of a
baseline row measured just before, so the two rows compare publish → feed latency without and
with the flood. The router's resident memory is sampled every second; its metrics say what it
made of the junk and when it had read all of it (or that the phase's deadline passed first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cpu import CpuUse, CpuWindow
from bench.junk import Flood, build_flood, dump_records
from bench.memory import RssSampler, rss_mib
from bench.pipeline import end_to_end_fixed, publisher, router_child, warm_up
from bench.procs import Child, tail
from bench.raw import Measured
from bench.report import Row, number
from bench.run import Run, row
from bench.scrape import TrustCounters, metrics_url, read_trust
from bench.tracker import Tracker
from enlace.core.topics import feed, receipts
from producers.publisher import Publisher

FLOOD_PARTNER = "cr-msp"  # writes the junk; receives releases, publishes nothing here
VICTIM = "gt-pnc"  # subject of the duplicated incident; publishes nothing here
ORIGINS = 3
POLL_S = 0.5
STALL_S = 20.0  # counters standing still this long after the writer ended: stop waiting
SETTLE_S = 5.0  # idle time after the fold before the "after" memory reading
STAGE = "Flood: publish → router → feed"


def ratio(during: float | None, baseline: float | None) -> float | None:
    """During over baseline (None when either is missing)."""
    return round(during / baseline, 3) if during is not None and baseline else None


def times(value: float | None) -> str:
    return "—" if value is None else f"x{value:.2f}"


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def mib(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} MiB"


def pct(m: Measured, q: int) -> float | None:
    if m.latency is None:
        return None
    return m.latency.p50_ms if q == 50 else m.latency.p99_ms


def listing(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items() if v) or "none"


def matches(seen: dict[str, int], expected: dict[str, int]) -> bool:
    """The same non-zero counts on both sides."""
    return {k: v for k, v in seen.items() if v} == {k: v for k, v in expected.items() if v}


@dataclass
class Watch:
    """What the router's counters said about the flood (differences from before it)."""

    seen: TrustCounters = field(default_factory=TrustCounters)
    done_at: float | None = None  # time.time() when all the junk was accounted for


class FloodPhase:
    def __init__(
        self, run: Run, router: Child, tracker: Tracker, pubs: dict[str, Publisher], url: str
    ) -> None:
        self.run, self.plan = run, run.plan
        self.router, self.tracker, self.pubs, self.url = router, tracker, pubs, url
        self.rate = run.plan.flood_rate
        self.figures: dict[str, Any] = {}

    def _cpu(self) -> CpuWindow:
        return CpuWindow({"router": self.router.pid, "broker": self.run.broker_pid})

    async def _fixed(self, count: int, stop: asyncio.Event | None = None) -> tuple[Measured, int]:
        return await end_to_end_fixed(
            self.pubs, self.tracker, self.router, per_second=self.rate, count=count,
            drain_s=self.plan.drain_s, stop=stop,
        )  # fmt: skip

    def _row(self, load: str, m: Measured, failed: int, use: CpuUse, note: str) -> Row:
        if failed:
            note += f"; {failed} NOT ACKNOWLEDGED"
        load = f"fixed {self.rate:g}/s, {load}"
        return row(STAGE, load, m, "bulletin/s", note, cpu=(use, "bulletin"))

    async def measure(self, junk: Flood, records_file: Path) -> None:
        run, plan = self.run, self.plan
        run.progress(f"flood baseline: end to end at {self.rate:g}/s for {plan.flood_seconds:g} s")
        cpu = self._cpu()
        base, failed = await self._fixed(plan.flood_fixed_count)
        use, rss_base = cpu.stop(), rss_mib(self.router.pid)
        run.result.rows.append(self._row("baseline", base, failed, use, f"RSS {mib(rss_base)}"))
        before = await read_trust(self.url)
        if before is None:
            run.result.problems.append("flood: the router's metrics did not answer")
            return
        sampler = RssSampler(self.router.pid)
        sampler.start()
        topic = receipts(junk.reporter)
        writer = Child(
            "flood-writer",
            ["-m", "bench.flood_writer", "--bootstrap", run.settings.kafka_bootstrap,
             "--topic", topic, "--records", str(records_file)],
            run.workdir / "flood.log",
            {},
        )  # fmt: skip
        run.progress(f"flood: {len(junk.records):,} junk events to {topic} while publishing")
        launched = time.time()
        writer.start()
        cpu, stop = self._cpu(), asyncio.Event()
        watching = asyncio.create_task(self._watch(before, len(junk.records), writer, stop))
        try:
            # At most what the deadline allows: the watch stops it once the junk is all read.
            most = math.ceil(self.rate * (plan.flood_deadline_s + plan.flood_seconds))
            during, failed = await self._fixed(most, stop)
        finally:
            stop.set()
            watch = await watching
        use = cpu.stop()
        written = await self._writer_result(writer)
        run.progress(f"flood over; {SETTLE_S:g} s idle, then the router's memory again")
        await asyncio.sleep(SETTLE_S)
        rss_after, peak = rss_mib(self.router.pid), await sampler.stop()
        final = await read_trust(self.url)
        seen = final - before if final is not None else watch.seen
        first_write = float(written.get("first_send", launched))
        fold_s = watch.done_at - first_write if watch.done_at is not None else None
        p50, p99 = ratio(pct(during, 50), pct(base, 50)), ratio(pct(during, 99), pct(base, 99))
        note = (
            f"p50 {times(p50)}, p99 {times(p99)} of the baseline; offered from the first junk "
            f"write until all was read ({plan.flood_seconds:g} s at least)"
        )
        run.result.rows.append(
            self._row(f"during {len(junk.records):,} junk events", during, failed, use, note)
        )
        self._report(junk, written, fold_s, seen)
        self.figures.update(
            baseline=measured_dict(base), during=measured_dict(during),
            p50_ratio=p50, p99_ratio=p99,
            rss_mib={"baseline": rounded(rss_base), "peak": rounded(peak),
                     "after": rounded(rss_after), "samples": len(sampler.samples)},
        )  # fmt: skip
        run.result.rows.append(
            Row("Flood: router RSS", "baseline / peak / after", len(sampler.samples), None, "",
                None, f"{mib(rss_base)} / {mib(peak)} / {mib(rss_after)} (peak of samples "
                f"every second; after: {SETTLE_S:g} s past the flood)")
        )  # fmt: skip
        run.result.flood = self.figures

    async def _watch(
        self, before: TrustCounters, count: int, writer: Child, stop: asyncio.Event
    ) -> Watch:
        """Scrape until the router accounted for all ``count`` events, its counters stood
        still for ``STALL_S`` after the writer ended, or the deadline; then set ``stop``
        (not before ``flood_seconds``)."""
        loop = asyncio.get_running_loop()
        started = moved_at = loop.time()
        watch, last = Watch(), -1.0
        try:
            while loop.time() - started < self.plan.flood_deadline_s and not stop.is_set():
                await asyncio.sleep(POLL_S)
                now = await read_trust(self.url)
                if now is None:
                    continue
                watch.seen = now - before
                if watch.seen.read >= count:
                    watch.done_at = time.time()
                    break
                if watch.seen.read != last or writer.running:
                    moved_at, last = loop.time(), watch.seen.read
                elif loop.time() - moved_at > STALL_S:
                    break
            await asyncio.sleep(max(0.0, started + self.plan.flood_seconds - loop.time()))
        finally:
            stop.set()
        return watch

    async def _writer_result(self, writer: Child) -> dict[str, Any]:
        code = await writer.wait(within=60)
        if code is None:
            await writer.stop()
        lines = [ln for ln in tail(writer.log_path, 5).splitlines() if ln.startswith("{")]
        if code != 0 or not lines:
            self.run.result.problems.append(
                f"flood writer ended with {code}: {tail(writer.log_path, 5)}"
            )
            return {}
        result: dict[str, Any] = json.loads(lines[-1])
        if result.get("failed"):
            self.run.result.problems.append(
                f"flood writer: {result['failed']} records not acknowledged ({result['error']})"
            )
        return result

    def _report(
        self, junk: Flood, written: dict[str, Any], fold_s: float | None, seen: TrustCounters
    ) -> None:
        rows, count = self.run.result.rows, len(junk.records)
        done, write_s = int(written.get("written", 0)), written.get("seconds")
        rows.append(
            Row("Flood: junk trust events written", "flat out", done,
                done / write_s if write_s else None, "event/s", None,
                f"by {junk.reporter} to its receipts topic, plain acks=all producer in its own "
                f"process, {number(write_s, 1)} s")
        )  # fmt: skip
        if fold_s is not None:
            fold_note = f"all {count:,} read {fold_s:.1f} s after the first write"
        else:
            fold_note = f"only {seen.read:,.0f} of {count:,} accounted for by the deadline"
            self.run.result.problems.append(f"flood: {fold_note}")
        rows.append(
            Row("Flood: router folds the junk", "live, throttled", round(seen.read),
                count / fold_s if fold_s else None, "event/s", None, fold_note)
        )  # fmt: skip
        outcomes = seen.outcomes()
        bounds = {b: round(n) for b, n in seen.bounds.items()}
        text = f"{listing(outcomes)}; bounds hit: {listing(bounds)}"
        text += "; as the mix predicts" if matches(outcomes, junk.expected) else (
            f"; the mix predicts {listing(junk.expected)}"
        )  # fmt: skip
        rows.append(Row("Flood: outcomes by reason", "metrics", round(seen.read), None, "", None,
                        text))  # fmt: skip
        self.figures.update(
            events=count, written=done, write_seconds=rounded(write_s, 3),
            fold_seconds=rounded(fold_s, 3),
            outcomes=outcomes, expected=junk.expected, bounds_hit=bounds,
        )  # fmt: skip


def measured_dict(m: Measured) -> dict[str, Any]:
    latency = m.latency.as_dict() if m.latency else None
    return {"count": m.count, "arrived": m.arrived, "latency": latency}


async def flood(run: Run) -> None:
    plan, ex = run.plan, run.exchange
    reporter = ex.agency(FLOOD_PARTNER)
    origins = tuple(o for o in ex.origins if o != reporter)[:ORIGINS]
    run.progress(f"sealing {plan.flood_events:,} junk trust events as {reporter}")
    junk = build_flood(ex, reporter, plan.flood_events, origins, ex.agency(VICTIM))
    records_file = run.workdir / "flood.jsonl"
    dump_records(junk.records, records_file)
    log = run.workdir / "router.log"
    router = router_child(run.settings, ex, log, None, {"ENLACE_ROUTER_WORKERS": "1"})
    run.progress("starting the router process")
    router.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            feeds = [feed(a) for a in ex.registry.ids]
            tracker = await stack.enter_async_context(Tracker(run.settings, feeds))
            pubs = {o: await stack.enter_async_context(publisher(run.settings, ex, o))
                    for o in origins}  # fmt: skip
            run.progress("waiting for the router to route a first batch")
            m = await warm_up(pubs, tracker, router, count=plan.warm_up, within=120)
            url = metrics_url(log.read_text(encoding="utf-8", errors="replace"))
            if m.arrived < m.count or url is None:
                run.result.problems.append("the router did not route the warm-up in time")
                return
            await FloodPhase(run, router, tracker, pubs, url).measure(junk, records_file)
    finally:
        run.progress("stopping the router")
        await router.stop(within=60)


async def run_flood(run: Run) -> None:
    await run.provision()
    try:
        await flood(run)
    finally:
        await run.cleanup()
