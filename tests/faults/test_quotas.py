"""One agency floods its outbound topic as fast as its client can: the broker throttles it to
its quota, and another agency's bulletins keep their publish → feed latency through the real
router. The flooder is kcat in its own process, so its CPU is not the test's."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from broker.policy import Policy
from broker.router import Router
from deploy.acl_plan import ROUTER_USER
from deploy.provisioning import load_credentials
from enlace.core import clients, topics
from enlace.core.registry import Quotas
from schemas.envelope import seal
from tests.faults.secure_cluster import ROUTER_PREFIX, SecureExchange, running
from tests.samples import sample_bulletin
from tests.support import MiniExchange, build_exchange, eventually

pytestmark = [pytest.mark.faults, pytest.mark.slow]

FLOOD_BYTES_PER_S = 256 * 1024
JUNK_RECORD_BYTES = 60_000
PROBES = 60
PROBE_INTERVAL_S = 0.1
FLOOD_S = 12.0
# Kafka measures a rate over quota.window.num (11) windows of 1 s and lets the first ones
# through at full speed, so a flood may exceed its quota by up to ~10 s worth at the start.
BURST_WINDOWS_S = 11.0


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


@contextlib.asynccontextmanager
async def flood(
    secure: SecureExchange, agency: str, tmp_path: Path, env: dict[str, str]
) -> AsyncIterator[None]:
    """kcat writing 48 MiB of junk lines to ``agency``'s outbound as ``agency``: unthrottled,
    it would finish in a few seconds."""
    junk = tmp_path / "junk.txt"
    line = (b"J" * (JUNK_RECORD_BYTES - 1)) + b"\n"
    junk.write_bytes(line * (48 * 1024 * 1024 // JUNK_RECORD_BYTES))
    password = load_credentials(secure.credentials)[agency]
    config = tmp_path / "flooder.kcat"
    config.write_text(
        f"bootstrap.servers={secure.spec.bootstrap}\nsecurity.protocol=SASL_SSL\n"
        f"sasl.mechanisms=SCRAM-SHA-512\nsasl.username={agency}\nsasl.password={password}\n"
        f"ssl.ca.location={secure.ca_file}\nacks=all\n",
        encoding="utf-8",
    )
    config.chmod(0o600)
    flooder = await asyncio.create_subprocess_exec(
        "kcat", "-F", str(config), "-P", "-t", topics.outbound(agency), "-l", str(junk),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        # It must still be flooding: had it finished its 48 MiB, it was never throttled.
        still_flooding = flooder.returncode is None
        if still_flooding:
            flooder.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(flooder.wait(), 10)
        except TimeoutError:
            flooder.kill()
            await flooder.wait()
        assert still_flooding, f"kcat finished (exit {flooder.returncode}) inside the window"


async def probe_latencies(
    ex: MiniExchange,
    secure: SecureExchange,
    sender: str,
    feed: AIOKafkaConsumer,
    count: int = PROBES,
) -> list[float]:
    """Publish ``count`` bulletins from ``sender`` at 10/s; seconds from send to the feed."""
    sent: dict[bytes, float] = {}
    arrived: dict[bytes, float] = {}

    async def collect() -> None:
        while True:
            batch = await feed.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    if record.key is not None:
                        arrived.setdefault(record.key, now)

    collector = asyncio.create_task(collect())
    try:
        async with running(clients.producer(secure.as_(sender))) as producer:
            for _ in range(count):
                sealed = seal(sample_bulletin(sender), ex.keys[sender])
                sent[sealed.key] = time.monotonic()
                await producer.send_and_wait(
                    topics.outbound(sender), sealed.value, key=sealed.key, headers=sealed.headers
                )
                await asyncio.sleep(PROBE_INTERVAL_S)  # pacing the load, not synchronising
        await eventually(lambda: set(sent) <= set(arrived), "every probe in the feed", within=60)
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
    return [arrived[key] - sent[key] for key in sent]


async def outbound_bytes(secure: SecureExchange, agency: str) -> int:
    """Records on ``agency``'s outbound (each junk record is JUNK_RECORD_BYTES)."""
    tp = TopicPartition(topics.outbound(agency), 0)
    admin_consumer = clients.consumer(secure.admin, group_id=None)
    async with running(admin_consumer):
        ends = await admin_consumer.end_offsets([tp])
    return int(ends[tp]) * JUNK_RECORD_BYTES


@pytest.mark.timeout(300)
async def test_a_flooding_agency_is_throttled_and_the_others_keep_their_latency(
    secure: SecureExchange, tmp_path: Path, kcat_env: dict[str, str]
) -> None:
    ex = await build_exchange(secure.admin, countries=("GT", "HN", "SV"))
    flooder, sender, receiver = ex.agency("GT"), ex.agency("HN"), ex.agency("SV")
    ex.policy = Policy.model_validate(
        {"agreements": [{"between": [sender, receiver], "level": "full"}]}
    )
    secure.agencies.extend([flooder, sender, receiver])
    secure.quotas[flooder] = Quotas(producer_byte_rate=FLOOD_BYTES_PER_S)
    report = await secure.provision()
    assert flooder in report.quotas_set
    assert {sender, receiver} <= set(report.quotas_set)  # defaults, set explicitly

    as_router = secure.as_(ROUTER_USER).connection()
    settings = ex.router_settings(router_prefix=ROUTER_PREFIX, **as_router)
    feed = clients.consumer(secure.as_(receiver), topics.feed(receiver), group_id=None)
    async with Router(settings, ex.registry, ex.policy, ex.directory), running(feed):
        await probe_latencies(ex, secure, sender, feed, count=3)  # the router is routing
        quiet = await probe_latencies(ex, secure, sender, feed)
        started = time.monotonic()
        async with flood(secure, flooder, tmp_path, kcat_env):
            # Let the flood pass its initial burst before measuring under it.
            await eventually(
                lambda: outbound_bytes(secure, flooder), "the flood to start", within=30
            )
            flooded = await probe_latencies(ex, secure, sender, feed)
            remaining = FLOOD_S - (time.monotonic() - started)
            if remaining > 0:
                await asyncio.sleep(remaining)  # the flood's duration, not a synchronisation
            elapsed = time.monotonic() - started
        written = await outbound_bytes(secure, flooder)

    allowed = FLOOD_BYTES_PER_S * (elapsed + BURST_WINDOWS_S) * 1.2
    quiet_p99, flooded_p99 = percentile(quiet, 99), percentile(flooded, 99)
    print(
        f"\nflood: {written / 2**20:.1f} MiB in {elapsed:.1f}s "
        f"({written / elapsed / 1024:.0f} KiB/s; quota {FLOOD_BYTES_PER_S // 1024} KiB/s, "
        f"48 MiB offered); probe p50/p99 quiet {percentile(quiet, 50) * 1e3:.1f}/"
        f"{quiet_p99 * 1e3:.1f} ms, flooded {percentile(flooded, 50) * 1e3:.1f}/"
        f"{flooded_p99 * 1e3:.1f} ms"
    )
    assert written <= allowed, f"{written} bytes in {elapsed:.1f}s: not throttled"
    # p95, not p99: of 60 probes p99 is the single slowest, and one GC pause or CI neighbour
    # decides it (a CI run saw quiet 235 ms vs flooded 535 ms, the next run 292 vs 102 ms);
    # a starved exchange moves the 3rd-slowest probe as surely.
    quiet_p95, flooded_p95 = percentile(quiet, 95), percentile(flooded, 95)
    assert flooded_p95 <= 2 * quiet_p95, (quiet_p95, flooded_p95, quiet_p99, flooded_p99)
