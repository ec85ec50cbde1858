"""The whole cluster goes away mid-stream (its single broker, SIGKILLed; a clean stop is the
gentler case of the same outage) and comes back: the router and a retrying publisher
recover, and the fault suite's checker finds no anomaly. Scenario 2 kills nodes of a 3-node
cluster one at a time; this is the outage where nothing at all is reachable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka.errors import KafkaError

from broker.policy import Policy
from broker.router import Router
from deploy.localkafka import DEFAULT_LIBS, ClusterSpec, LocalKafka
from enlace.core import clients
from enlace.core.settings import KafkaSettings
from enlace.core.topics import outbound
from schemas.envelope import Sealed, seal
from tests.faults.checker import PublishLog, check
from tests.samples import routed_bulletin
from tests.support import MiniExchange, build_exchange, free_kafka_port

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture(scope="module")
def own_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalKafka, ClusterSpec]]:
    kafka = LocalKafka(tmp_path_factory.mktemp("restart"), DEFAULT_LIBS)
    spec = kafka.up(1, port=free_kafka_port())
    try:
        yield kafka, spec
    finally:
        kafka.down()


@pytest.fixture
async def exchange(own_broker: tuple[LocalKafka, ClusterSpec]) -> MiniExchange:
    _, spec = own_broker
    ex = await build_exchange(KafkaSettings(kafka_bootstrap=spec.bootstrap), partitions=2)
    pa, us, cr = (ex.agency(c) for c in ("PA", "US", "CR"))
    ex.policy = Policy.model_validate(
        {
            "agreements": [
                {"between": [pa, us], "level": "full"},
                {"between": [pa, cr], "level": "standard"},
            ]
        }
    )
    return ex


@pytest.fixture
async def router(exchange: MiniExchange) -> AsyncIterator[Router]:
    async with Router(
        exchange.router_settings(router_session_timeout_ms=6000, router_max_batch=40),
        exchange.registry,
        exchange.policy,
        exchange.directory,
    ) as running:
        yield running


async def send_until_acked(
    ex: MiniExchange, records: list[Sealed], origin: str, log: PublishLog
) -> None:
    """A publisher that retries every unacknowledged bulletin (same bytes) until the broker
    takes it, replacing its client after a failure; acknowledgements and re-sends logged."""
    pending = list(records)
    while pending:
        producer = clients.producer(ex.settings, request_timeout_ms=5000)
        try:
            await producer.start()
            futures = [
                await producer.send(outbound(origin), s.value, key=s.key, headers=s.headers)
                for s in pending
            ]
            async with asyncio.timeout(20):
                results = await asyncio.gather(*futures, return_exceptions=True)
            for sealed, result in zip(pending, results, strict=True):
                if not isinstance(result, BaseException):
                    log.ack(sealed.key.decode(), result.partition, result.offset)
            pending = [s for s, r in zip(pending, results, strict=True) if isinstance(r, Exception)]
        except (KafkaError, TimeoutError, OSError):
            pass  # everything still pending is sent again
        finally:
            await asyncio.gather(producer.stop(), return_exceptions=True)
        if pending:
            log.resent += len(pending)
            await asyncio.sleep(1.0)


def sample(router: Router, name: str, **labels: str) -> float:
    return router.metrics.registry.get_sample_value(name, labels) or 0.0


def sealed_batch(ex: MiniExchange, origin: str, count: int) -> list[Sealed]:
    return [
        seal(
            routed_bulletin(origin),
            ex.keys[origin],
        )
        for _ in range(count)
    ]


@pytest.mark.timeout(300)
async def test_broker_killed_mid_stream_loses_and_duplicates_nothing(
    own_broker: tuple[LocalKafka, ClusterSpec],
    exchange: MiniExchange,
    router: Router,
) -> None:
    kafka, _ = own_broker
    ex = exchange
    pa = ex.agency("PA")
    before, after = sealed_batch(ex, pa, 2000), sealed_batch(ex, pa, 150)
    log = PublishLog()
    await send_until_acked(ex, before, pa, log)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while sample(router, "enlace_router_bulletins_routed_total", origin=pa) < 30:
        assert loop.time() < deadline, "the router never started routing"
        await asyncio.sleep(0.02)
    # Mid-stream: the router still has a backlog, and with batches of 40 a transaction open.
    routed_at_outage = sample(router, "enlace_router_bulletins_routed_total", origin=pa)
    await asyncio.to_thread(kafka.stop_node, 1, hard=True)
    await asyncio.sleep(2.0)
    await asyncio.to_thread(kafka.start_node, 1)
    await send_until_acked(ex, after, pa, log)

    report = await check(ex, log, within=120.0)
    assert len(log.acked) == len(before) + len(after)
    assert report.ok, (report.table(), report.examples)
    assert report.decisions["FULL"] > 0
    assert report.decisions["TEARLINE"] > 0
    assert routed_at_outage < len(before), "the outage did not land mid-stream"
    # Whether the open transaction aborted (and was redone) or aiokafka's retries carried it
    # over the restart, the books above balance.
