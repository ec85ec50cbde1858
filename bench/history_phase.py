"""The history phase (``python -m bench --history``): how long a router takes to start, and
how much memory it needs, against a large trust history.

A router rebuilds its trust state at every start from Kafka alone: every receipts topic from
offset 0 and the audit topic from a 180-day horizon (``broker.trust_view.TrustFeed``). For
each size (and an empty broker first, the baseline) the phase starts a fresh private broker,
writes a 90-day history of that many audit releases and trust events
(:mod:`bench.history`, :mod:`bench.history_writer`), then launches the router process as the
end-to-end phase does, publishes one bulletin at once and times launch → its first feed
record. The router's log says when it had caught up (``router_started`` comes after the trust
feed's catch-up) and got its partitions; /proc gives its resident memory.
"""

from __future__ import annotations

import asyncio
import gc
import json
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import machine
from bench.exchange import Exchange, build_exchange, new_token
from bench.history import DAYS, History, plan_history
from bench.history_writer import WORKERS, Written, write_history
from bench.kafka_env import kafka_for_bench, topic_records
from bench.memory import RssSampler, peak_rss_mib, rss_mib
from bench.pipeline import Failures, publisher, router_child
from bench.procs import Child, tail
from bench.report import BenchResult, Row
from bench.run import Progress
from bench.scrape import TrustCounters, fetch, metrics_url, read_trust
from bench.tracker import Tracker
from enlace.core.settings import KafkaSettings
from enlace.core.topics import AUDIT, ensure_topics, exchange_topics, feed
from tests.samples import sample_bulletin

SIZES = (100_000, 1_000_000)
PARTITIONS = 3
STARTUP_LIMIT_S = 3_600.0  # the router's own start-up timeout (default 120 s) for this phase
SETTLE_S = 6.0  # after the first release: the first sweep and trust snapshot have run
# Router log events worth a time since launch, in the order they happen.
MARKS = ("router_revoked", "trust_snapshot_loaded", "trust_snapshot_refused",
         "router_trust_ready", "router_started", "replay_index_ready", "router_assigned",
         "bulletin_routed", "trust_snapshot_written")  # fmt: skip
SNAPSHOT_WAIT_S = 600.0  # after the first start: until its first trust snapshot is written
ROUTER_ENV = {
    "ENLACE_STARTUP_TIMEOUT_SECONDS": str(STARTUP_LIMIT_S),
    # A snapshot a few seconds after the start (the default waits 300 s, or 200,000 records).
    "ENLACE_TRUST_STATE_SNAPSHOT_SECONDS": "5",
    # The per-bulletin ``bulletin_routed`` line (the first release's time) is at DEBUG.
    "ENLACE_LOG_LEVEL": "DEBUG",
    "ENLACE_ROUTER_WORKERS": "1",  # start-up of one router process
}


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"100000,1000000"`` → (100000, 1000000); every size at least 1."""
    sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError("--history-sizes takes positive integers separated by commas")
    return sizes


def log_marks(log_text: str, launched: float) -> dict[str, float]:
    """Seconds from ``launched`` (epoch seconds) to the first log line of each of ``MARKS``."""
    found: dict[str, float] = {}
    for line in log_text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            item = json.loads(line)
            event, stamp = item["event"], item["timestamp"]
        except (ValueError, KeyError, TypeError):
            continue
        if event in MARKS and event not in found:
            at = datetime.fromisoformat(stamp).timestamp()
            found[event] = round(at - launched, 3)
    return found


def routed_line(log_text: str, bulletin_id: str) -> dict[str, Any] | None:
    """The router's ``bulletin_routed`` log line for ``bulletin_id`` (its full / tearline /
    withheld counts), or None before it was decided."""
    for line in log_text.splitlines():
        if bulletin_id in line and '"bulletin_routed"' in line:
            try:
                item: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            return item
    return None


def scores_of(metrics_text: str, origin: str) -> dict[str, float]:
    """``enlace_trust_score`` towards each partner of ``origin``, from a /metrics body."""
    return {
        sample.labels["partner"]: round(sample.value, 3)
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "enlace_trust_score" and sample.labels.get("originator") == origin
    }


def label(size: int) -> str:
    return f"history {size:,} receipts + {size:,} audit" if size else "empty broker"


def mib(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} MiB"


@dataclass
class Startup:
    first_release_s: float | None
    decision: dict[str, int]  # the bulletin's full / tearline / withheld partners
    scores: dict[str, float]  # the origin's trust in each partner after the start-up
    marks: dict[str, float]
    rss_peak: float | None  # VmHWM
    rss_sampled_peak: float | None
    rss_at_release: float | None
    rss_settled: float | None
    trust: dict[str, int]
    bounds: dict[str, int]
    snapshot: dict[str, Any] | None = None  # the trust_snapshot_written log line, if waited

    def note(self) -> str:
        marks = self.marks
        if self.first_release_s is not None:
            text = f"first release {self.first_release_s:.1f} s after launch"
        else:
            text = "NO RELEASE"
        if "trust_snapshot_loaded" in marks:
            text += f"; snapshot loaded at {marks['trust_snapshot_loaded']:.1f} s"
        if "router_trust_ready" in marks:
            text += f", trust ready at {marks['router_trust_ready']:.1f} s"
        if self.decision:
            text += " (bulletin: " + ", ".join(f"{k} {v}" for k, v in self.decision.items())
            if "bulletin_routed" in marks:
                text += f", decided at {marks['bulletin_routed']:.1f} s"
            text += ")"
        if "router_started" in marks:
            text += f"; log: router_started (trust caught up) at {marks['router_started']:.1f} s"
        if "router_assigned" in marks:
            text += f", partitions assigned at {marks['router_assigned']:.1f} s"
        text += (f"; RSS peak {mib(self.rss_peak)} (VmHWM), {mib(self.rss_at_release)} at the "
                 f"first release, {mib(self.rss_settled)} {SETTLE_S:g} s later")  # fmt: skip
        if self.trust:
            folded = ", ".join(f"{k} {v:,}" for k, v in self.trust.items() if v)
            text += f"; trust feed: {folded or 'nothing'}"
        if self.bounds:
            text += "; bounds hit: " + ", ".join(f"{k} {v:,}" for k, v in self.bounds.items())
        if self.scores:
            values = sorted(self.scores.values())
            text += (f"; origin's scores after start: min {values[0]:.3f}, "
                     f"max {values[-1]:.3f}")  # fmt: skip
        if self.snapshot:
            snap = self.snapshot
            text += (f"; then wrote a trust snapshot: {snap.get('bytes', 0):,} bytes, "
                     f"{snap.get('releases', 0):,} releases, "
                     f"{snap.get('seconds', 0):.2f} s")  # fmt: skip
        return text


async def wait_decided(
    tracker: Tracker, key: bytes, log: Path, router: Child, within: float
) -> dict[str, Any] | None:
    """Until the bulletin's release reaches a feed, or the router decided it and released it
    to nobody (its log line says so: nothing will arrive); the log line, or None in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    bulletin_id = key.decode("ascii")
    while loop.time() < deadline:
        router.check()
        if await tracker.wait_for({key}, 0.5):
            break
        routed = await asyncio.to_thread(_routed, log, bulletin_id)
        if routed is not None and not (routed.get("full") or routed.get("tearline")):
            return routed
    return await asyncio.to_thread(_routed, log, bulletin_id)


def _routed(log: Path, bulletin_id: str) -> dict[str, Any] | None:
    return routed_line(log.read_text(encoding="utf-8", errors="replace"), bulletin_id)


def snapshot_line(log_text: str) -> dict[str, Any] | None:
    """The router's first ``trust_snapshot_written`` log line, or None."""
    for line in log_text.splitlines():
        if '"trust_snapshot_written"' in line:
            try:
                item: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            return item
    return None


async def wait_snapshot(log: Path, router: Child, within: float) -> dict[str, Any] | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        router.check()
        text = await asyncio.to_thread(log.read_text, encoding="utf-8", errors="replace")
        found = snapshot_line(text)
        if found is not None:
            return found
        await asyncio.sleep(0.5)
    return None


async def measure_startup(
    settings: KafkaSettings,
    exchange: Exchange,
    workdir: Path,
    progress: Progress,
    *,
    name: str = "router.log",
    then_snapshot: bool = False,
) -> Startup:
    origin = exchange.origins[0]  # has "full" partners: its bulletin makes a feed record
    log = workdir / name
    router = router_child(settings, exchange, log, None, ROUTER_ENV)
    feeds = [feed(a) for a in exchange.registry.ids]
    async with Tracker(settings, feeds) as tracker, publisher(settings, exchange, origin) as pub:
        bulletin = sample_bulletin(origin)
        key = bulletin.bulletin_id.encode("ascii")
        progress("starting the router process; one bulletin published at once")
        launched_wall, launched = time.time(), time.perf_counter()
        router.start()
        sampler = RssSampler(router.pid, every_s=0.5)
        sampler.start()
        try:
            failures = Failures()
            await failures.publish(pub, [bulletin])
            if failures.failed:
                raise RuntimeError(f"the bulletin was not acknowledged: {failures.failed[0]}")
            routed = await wait_decided(tracker, key, log, router, STARTUP_LIMIT_S)
            arrived = tracker.arrived.get(key)
            first = arrived - launched if arrived is not None else None
            at_release = rss_mib(router.pid)
            progress(f"first release after {first:.1f} s" if first else "no release in time")
            await asyncio.sleep(SETTLE_S)
            settled, peak = rss_mib(router.pid), peak_rss_mib(router.pid)
            snapshot = None
            if then_snapshot:
                progress("waiting for the router's first trust snapshot")
                snapshot = await wait_snapshot(log, router, SNAPSHOT_WAIT_S)
                peak = peak_rss_mib(router.pid)
            sampled = await sampler.stop()
            text = log.read_text(encoding="utf-8", errors="replace")
            url = metrics_url(text)
            counters = await read_trust(url) if url else None
            scores = scores_of(await asyncio.to_thread(fetch, url), origin) if url else {}
        finally:
            await sampler.stop()
            await router.stop(within=60)
    decision: dict[str, int] = {
        k: int(routed[k]) for k in ("full", "tearline", "withheld") if routed and k in routed
    }
    return Startup(first, decision, scores, log_marks(text, launched_wall), peak, sampled,
                   at_release, settled, *trust_figures(counters), snapshot)  # fmt: skip


def trust_figures(counters: TrustCounters | None) -> tuple[dict[str, int], dict[str, int]]:
    if counters is None:
        return {}, {}
    return counters.outcomes(), {b: round(n) for b, n in counters.bounds.items() if n}


async def one_size(
    settings: KafkaSettings, size: int, workdir: Path, result: BenchResult, progress: Progress
) -> None:
    token = new_token()
    exchange = build_exchange(workdir, token, key_age=timedelta(days=DAYS + 2))
    specs = exchange_topics(exchange.registry.ids, partitions=PARTITIONS,
                            replication=settings.topic_replication,
                            min_insync=settings.topic_min_insync,
                            router_prefix=exchange.router_prefix)  # fmt: skip
    await ensure_topics(settings, specs)
    figures: dict[str, Any] = {"size": size}
    if size:
        progress(f"planning a {DAYS}-day history: {size:,} releases, {size:,} trust events")
        began = time.perf_counter()
        # Millions of small tuples: without this the cyclic collector rescans them all at
        # every generation-2 pass (a third of the planning time); none of them is cyclic.
        gc.disable()
        try:
            history = plan_history(exchange.policy, exchange.registry.ids, size, datetime.now(UTC))
        finally:
            gc.enable()
        planned_s = time.perf_counter() - began
        written = await write_history(settings, exchange, history, PARTITIONS, progress)
        result.rows.append(generation_row(size, history, planned_s, written))
        figures.update(plan_seconds=round(planned_s, 2), write_seconds=round(written.seconds, 2),
                       records=written.records, kinds={str(k): n for k, n in
                                                       history.kinds().items()})  # fmt: skip
        del history
    audit = await topic_records(settings, AUDIT)
    startup = await measure_startup(settings, exchange, workdir, progress, then_snapshot=True)
    result.rows.append(Row(f"Router start-up, {label(size)}, no snapshot (replays history)",
                           "launch → first release", 1, None, "", None,
                           startup.note()))  # fmt: skip
    restart = await measure_startup(settings, exchange, workdir, progress,
                                    name="router-restart.log")  # fmt: skip
    result.rows.append(Row(f"Router restart, {label(size)}, from its trust snapshot",
                           "launch → first release", 1, None, "", None,
                           restart.note()))  # fmt: skip
    figures["restart"] = {
        "first_release_seconds": restart.first_release_s, "log_marks": restart.marks,
        "rss_peak_mib": restart.rss_peak, "trust": restart.trust, "decision": restart.decision,
        "snapshot": startup.snapshot,
    }  # fmt: skip
    figures.update(
        audit_records=audit, first_release_seconds=startup.first_release_s,
        decision=startup.decision, scores=startup.scores,
        log_marks=startup.marks, rss_peak_mib=startup.rss_peak,
        rss_sampled_peak_mib=startup.rss_sampled_peak,
        rss_at_release_mib=startup.rss_at_release, rss_settled_mib=startup.rss_settled,
        trust=startup.trust, bounds_hit=startup.bounds,
    )  # fmt: skip
    result.history[str(size)] = figures
    if startup.first_release_s is None and startup.decision:
        result.problems.append(f"{label(size)}: the first bulletin was released to nobody "
                               f"({startup.note().split('; ', 1)[0]})")  # fmt: skip
    elif startup.first_release_s is None:
        result.problems.append(f"{label(size)}: no decision within {STARTUP_LIMIT_S:g} s; "
                               f"router log: {tail(workdir / 'router.log', 5)}")  # fmt: skip


def generation_row(size: int, history: History, planned_s: float, written: Written) -> Row:
    kinds = ", ".join(f"{k.value} {n:,}" for k, n in sorted(history.kinds().items()))
    note = (f"{DAYS} days; plan {planned_s:.1f} s, encode + sign ({WORKERS} workers) + produce "
            f"{written.seconds:.1f} s; events: {kinds}")  # fmt: skip
    return Row(f"History: write {label(size)}", "flat out", written.records, written.rate,
               "records/s", None, note)  # fmt: skip


def run_history(
    sizes: tuple[int, ...], progress: Progress, results_dir: Path, stamp: str
) -> BenchResult:
    """The empty baseline then every size, each on a fresh private broker."""
    facts = machine.facts()
    facts["history"] = (f"{len(sizes)} sizes + an empty baseline, each on a fresh private "
                        f"broker; {PARTITIONS} partitions per topic")  # fmt: skip
    result = BenchResult(machine=facts, config={"history_sizes": list(sizes)})
    for size in (0, *sizes):
        progress(f"== {label(size)} ==")
        with (
            tempfile.TemporaryDirectory(prefix="enlace-bench-history-") as tmp,
            kafka_for_bench(KafkaSettings(), progress, private=True) as (kafka, broker),
        ):
            result.machine["broker"] = broker
            workdir = Path(tmp)
            try:
                asyncio.run(one_size(kafka, size, workdir, result, progress))
            except Exception as exc:  # noqa: BLE001 - a failed size still reports the others
                result.problems.append(f"{label(size)}: stopped early: {exc!r}")
            finally:
                for name in ("router.log", "router-restart.log"):
                    router_log = workdir / name
                    if router_log.exists():
                        target = results_dir / f"bench-{stamp}-history-{size}-{name}"
                        target.write_bytes(router_log.read_bytes())
    result.machine["load average at end"] = machine.load_average()
    return result
