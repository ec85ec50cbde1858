"""Enlace's own path: signed bulletins through the Publisher, the router and the feeds.

The router runs as a child process (``python -m enlace.cli router run`` on the run's
registry, policy and keys), so on a 2-core machine it gets its own interpreter and core
rather than sharing an event loop with the load generator and the feed reader.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from pathlib import Path

from bench.exchange import Exchange
from bench.load import paced
from bench.procs import Child
from bench.raw import Measured
from bench.stats import latencies, summarize_seconds
from bench.tracker import Tracker
from enlace.core.settings import KafkaSettings
from producers.publisher import Publisher, PublishFailure
from producers.settings import PublisherSettings
from schemas.models import ThreatBulletin
from tests.samples import sample_bulletin

PUBLISH_CHUNK = 250


def publisher(
    settings: KafkaSettings, exchange: Exchange, origin: str, topic: str | None = None
) -> Publisher:
    # With the key directory the publisher seals (wire format 2), as a deployment does.
    publisher_settings = PublisherSettings(
        agency=origin,
        kafka_bootstrap=settings.kafka_bootstrap,
        topic=topic,
        keys_file=exchange.keys_file,
    )
    return Publisher(publisher_settings, key=exchange.keys[origin], registry=exchange.registry)


def router_child(
    settings: KafkaSettings,
    exchange: Exchange,
    log_path: Path,
    profile_path: Path | None,
    extra_env: dict[str, str] | None = None,
) -> Child:
    # Under the profiler the same command runs through a wrapper that profiles only after
    # SIGUSR1 (sent once the router routes), leaving its start-up catch-up out.
    command = (
        ["-m", "bench.profiled_router", str(profile_path)]
        if profile_path
        else ["-m", "enlace.cli", "router", "run"]
    )
    argv = [
        *command,
        "--agencies", str(exchange.agencies_file), "--policy", str(exchange.policy_file),
        "--keys", str(exchange.keys_file), "--http-port", "0",
    ]  # fmt: skip
    env = {
        "ENLACE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "ENLACE_ROUTER_PREFIX": exchange.router_prefix,
        # The router's production settings otherwise: INFO, JSON lines (to the log file).
        "ENLACE_LOG_LEVEL": "INFO",
        "ENLACE_LOG_FORMAT": "json",
        **(extra_env or {}),
    }
    return Child("router", argv, log_path, env)


def bulletins(origins: Sequence[str], count: int) -> list[ThreatBulletin]:
    """``count`` fresh sample bulletins, origins taken in turn."""
    cycle = itertools.cycle(origins)
    return [sample_bulletin(next(cycle)) for _ in range(count)]


def key_of(bulletin: ThreatBulletin) -> bytes:
    return bulletin.bulletin_id.encode("ascii")


class Failures:
    """Bulletins the publisher did not get acknowledged (reported, never silently dropped)."""

    def __init__(self) -> None:
        self.failed: list[PublishFailure] = []

    async def publish(self, pub: Publisher, batch: Sequence[ThreatBulletin]) -> None:
        outcomes = await pub.publish_many(batch)
        self.failed.extend(o for o in outcomes if isinstance(o, PublishFailure))


async def wait_routed(tracker: Tracker, keys: set[bytes], within: float, router: Child) -> bool:
    """Wait for ``keys`` on the feeds, failing fast if the router process died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        router.check()
        if await tracker.wait_for(keys, min(2.0, deadline - loop.time())):
            return True
    return keys.issubset(tracker.arrived.keys())


def measured(
    keys: list[bytes], sent: dict[bytes, float], tracker: Tracker, started: float
) -> Measured:
    arrived = {k: tracker.arrived[k] for k in keys if k in tracker.arrived}
    return Measured(
        count=len(keys),
        arrived=len(arrived),
        seconds=max(arrived.values(), default=started) - started,
        records=tracker.records,
        latency=summarize_seconds(latencies(sent, arrived)),
    )


async def publish_only(pub: Publisher, origin: str, count: int) -> tuple[int, float, int]:
    """Publish ``count`` pre-built bulletins flat out in chunks; (acknowledged, seconds, failed)."""
    items = bulletins([origin], count)
    failures = Failures()
    started = time.perf_counter()
    for i in range(0, count, PUBLISH_CHUNK):
        await failures.publish(pub, items[i : i + PUBLISH_CHUNK])
    seconds = time.perf_counter() - started
    return count - len(failures.failed), seconds, len(failures.failed)


async def end_to_end_fixed(
    pubs: dict[str, Publisher],
    tracker: Tracker,
    router: Child,
    *,
    per_second: float,
    count: int,
    drain_s: float,
    stop: asyncio.Event | None = None,
) -> tuple[Measured, int]:
    """Offer ``count`` fresh bulletins at ``per_second`` (open loop, origins in turn), or
    fewer if ``stop`` is set first."""
    await tracker.mark()
    origins = itertools.cycle(list(pubs))
    sent: dict[bytes, float] = {}
    keys: list[bytes] = []
    tasks: list[asyncio.Task[None]] = []
    failures = Failures()

    def send(n: int) -> None:
        by_origin: dict[str, list[ThreatBulletin]] = {}
        now = time.perf_counter()
        for _ in range(n):
            origin = next(origins)
            bulletin = sample_bulletin(origin)
            by_origin.setdefault(origin, []).append(bulletin)
            keys.append(key_of(bulletin))
            sent[keys[-1]] = now
        tasks.extend(
            asyncio.create_task(failures.publish(pubs[o], batch)) for o, batch in by_origin.items()
        )

    started = time.perf_counter()
    await paced(per_second, count, send, stop)
    await asyncio.gather(*tasks)
    await wait_routed(tracker, set(keys), drain_s, router)
    return measured(keys, sent, tracker, started), len(failures.failed)


async def end_to_end_flat(
    pubs: dict[str, Publisher], tracker: Tracker, router: Child, *, count: int, drain_s: float
) -> tuple[Measured, int]:
    """Publish ``count`` pre-built bulletins as fast as the publishers go (one sequence of
    chunks per origin, origins concurrently) and time until the router released them all."""
    items = bulletins(list(pubs), count)
    by_origin: dict[str, list[ThreatBulletin]] = {}
    for bulletin in items:
        by_origin.setdefault(bulletin.origin, []).append(bulletin)
    await tracker.mark()
    sent: dict[bytes, float] = {}
    failures = Failures()

    async def feed_origin(origin: str, mine: list[ThreatBulletin]) -> None:
        for i in range(0, len(mine), PUBLISH_CHUNK):
            chunk = mine[i : i + PUBLISH_CHUNK]
            now = time.perf_counter()
            sent.update((key_of(b), now) for b in chunk)
            await failures.publish(pubs[origin], chunk)

    started = time.perf_counter()
    await asyncio.gather(*(feed_origin(o, mine) for o, mine in by_origin.items()))
    keys = [key_of(b) for b in items]
    await wait_routed(tracker, set(keys), drain_s, router)
    return measured(keys, sent, tracker, started), len(failures.failed)


async def warm_up(
    pubs: dict[str, Publisher], tracker: Tracker, router: Child, *, count: int, within: float
) -> Measured:
    """A few bulletins through the whole path: proves the router is assigned and routing,
    opens every connection, and gives the releases per bulletin."""
    await tracker.mark()
    items = bulletins(list(pubs), count)
    failures = Failures()
    for origin, pub in pubs.items():
        await failures.publish(pub, [b for b in items if b.origin == origin])
    keys = [key_of(b) for b in items]
    started = time.perf_counter()
    await wait_routed(tracker, set(keys), within, router)
    # A bulletin's releases commit together but may be fetched in separate polls.
    await asyncio.sleep(0.5)
    return measured(keys, {}, tracker, started)
