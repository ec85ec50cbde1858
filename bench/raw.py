"""Raw Kafka traffic for the baselines: the same sealed payload under fresh keys, sent by an
idempotent acks=all producer (``enlace.core.clients.producer``) and timed to its arrival."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.load import paced
from bench.stats import LatencySummary, latencies, rate, summarize_seconds
from bench.tracker import Tracker
from enlace.core.errors import DeliveryError


@dataclass(frozen=True)
class Payload:
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def size(self) -> int:
        return len(self.value) + sum(len(k) + len(v) for k, v in self.headers)


@dataclass(frozen=True)
class Measured:
    """What one timed phase saw: ``arrived`` of ``count`` keys in ``seconds``."""

    count: int
    arrived: int
    seconds: float
    records: int
    latency: LatencySummary | None

    @property
    def rate(self) -> float:
        return rate(self.arrived, self.seconds)

    @property
    def record_rate(self) -> float:
        return rate(self.records, self.seconds)


def fresh_keys(count: int) -> list[bytes]:
    run = uuid.uuid4().hex[:12]
    return [f"{run}-{i:09d}".encode("ascii") for i in range(count)]


async def _acked(futures: list[asyncio.Future[Any]], within: float) -> None:
    if not futures:
        return
    _, pending = await asyncio.wait(futures, timeout=within)
    if pending:
        raise DeliveryError(f"{len(pending)} benchmark records not acknowledged in {within:g} s")


def _measured(
    keys: list[bytes], sent: dict[bytes, float], tracker: Tracker, started: float
) -> Measured:
    wanted = set(keys)
    arrived = {k: tracker.arrived[k] for k in wanted if k in tracker.arrived}
    seconds = max(arrived.values(), default=started) - started
    return Measured(
        count=len(keys),
        arrived=len(arrived),
        seconds=seconds,
        records=tracker.records,
        latency=summarize_seconds(latencies(sent, arrived)),
    )


async def fixed_rate(
    producer: AIOKafkaProducer,
    tracker: Tracker,
    topic: str,
    payload: Payload,
    *,
    per_second: float,
    count: int,
    drain_s: float,
) -> Measured:
    """Offer ``count`` records at ``per_second`` (open loop) and time each to its arrival."""
    await tracker.mark()
    keys = fresh_keys(count)
    sent: dict[bytes, float] = {}
    futures: list[asyncio.Future[Any]] = []
    tasks: list[asyncio.Task[None]] = []
    cursor = 0

    async def send_keys(batch: list[bytes]) -> None:
        for key in batch:
            sent[key] = time.perf_counter()
            futures.append(
                await producer.send(topic, payload.value, key=key, headers=payload.headers)
            )

    def send(n: int) -> None:
        nonlocal cursor
        batch, cursor = keys[cursor : cursor + n], cursor + n
        tasks.append(asyncio.create_task(send_keys(batch)))

    started = time.perf_counter()
    await paced(per_second, count, send)
    await asyncio.gather(*tasks)
    await _acked(futures, drain_s)
    await tracker.wait_for(set(keys), drain_s)
    return _measured(keys, sent, tracker, started)


async def flat_out(
    producer: AIOKafkaProducer,
    tracker: Tracker,
    topic: str,
    payload: Payload,
    *,
    count: int,
    drain_s: float,
) -> Measured:
    """Hand ``count`` records to the producer as fast as it takes them; time until the last
    one arrives (the throughput) and each one's latency (queueing included)."""
    await tracker.mark()
    keys = fresh_keys(count)
    sent: dict[bytes, float] = {}
    futures: list[asyncio.Future[Any]] = []
    started = time.perf_counter()
    for key in keys:
        sent[key] = time.perf_counter()
        futures.append(await producer.send(topic, payload.value, key=key, headers=payload.headers))
    await _acked(futures, drain_s)
    await tracker.wait_for(set(keys), drain_s)
    return _measured(keys, sent, tracker, started)
