"""What the fault scenarios share: the size they run at, the router fleet the nemesis kills,
the paced publish stream the checker's log comes from, and how recovery is measured.

Sizes: ``make test`` runs every scenario at its CI size; ``make faults`` sets
``ENLACE_FAULTS_FULL=1`` for the full size. ``ENLACE_FAULTS_SEED`` replays a schedule.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from broker.engine import INJECTED_ABORT_HEADER
from broker.policy import Policy
from enlace.core import clients
from enlace.core.settings import KafkaSettings
from enlace.core.topics import outbound, partitions_of
from schemas.envelope import seal
from tests.faults.checker import PublishLog
from tests.faults.routers import RouterProcess, write_config
from tests.samples import routed_bulletin
from tests.support import MiniExchange, Record, build_exchange

FULL = os.environ.get("ENLACE_FAULTS_FULL") == "1"
SEED = int(os.environ.get("ENLACE_FAULTS_SEED", "20261201"))
COUNTRIES = ("PA", "US", "CR", "MX")


def sized(ci: int, full: int) -> int:
    return full if FULL else ci


async def four_agency_exchange(
    settings: KafkaSettings, workdir: Path, *, partitions: int = 3
) -> MiniExchange:
    """Four agencies on the 3-node cluster (RF 3, min ISR 2), with the agreements that give
    FULL, TEARLINE and WITHHELD decisions, and the router's config files in ``workdir``."""
    ex = await build_exchange(
        settings, countries=COUNTRIES, partitions=partitions, replication=3, min_insync=2
    )
    pa, us, cr, mx = (ex.agency(c) for c in COUNTRIES)
    agreements: list[dict[str, Any]] = [
        {"between": [pa, us], "level": "full"},
        {"between": [pa, cr], "level": "standard"},
        {"between": [us, cr], "level": "standard"},
        {"between": [us, mx], "level": "limited"},
    ]
    ex.policy = Policy.model_validate({"agreements": agreements})
    write_config(ex, workdir, agreements)
    return ex


class Fleet:
    """Router processes of one group; ``kill_one`` replaces its victim at once."""

    def __init__(self, ex: MiniExchange, workdir: Path, **env: str) -> None:
        self._ex, self.workdir, self._env = ex, workdir, env
        self.routers: list[RouterProcess] = []
        self.launched = 0
        self.kills = 0

    def launch(self, **env: str) -> RouterProcess:
        self.launched += 1
        router = RouterProcess(
            self._ex, self.workdir, f"router-{self.launched}",
            ENLACE_FAULT_SEED=str(SEED + self.launched), **{**self._env, **env},
        )  # fmt: skip
        self.routers.append(router)
        return router

    def alive(self) -> list[RouterProcess]:
        return [r for r in self.routers if r.proc.poll() is None]

    async def kill_one(self, rng: random.Random) -> RouterProcess:
        victim = rng.choice(self.alive())
        await victim.kill()
        self.kills += 1
        return self.launch()

    async def stop(self) -> list[int]:
        codes = [await r.stop() for r in self.alive()]
        for router in self.routers:
            # A router that exited on its own (a fenced zombie) still holds its log open: an
            # unclosed file is an error in whichever test the collector happens to run in.
            router.log.close()
        return codes

    def kill_all_now(self) -> None:
        for router in self.routers:
            if router.proc.poll() is None:
                router.kill_now()

    async def routing(self, group: str, within: float = 120.0) -> None:
        """Wait until every live router has joined and routing flows (the first commits land):
        the nemesis starts on a working exchange, not on processes still importing."""
        deadline = time.monotonic() + within
        while not all(b'"router_assigned"' in r.log_text() for r in self.alive()):
            if time.monotonic() > deadline:
                raise AssertionError(f"routers not assigned within {within:.0f} s")
            await asyncio.sleep(0.25)
        left = max(1.0, deadline - time.monotonic())
        if await recovery(self._ex, group, left) == float("inf"):
            raise AssertionError(f"routing did not start within {within:.0f} s")

    def count_in_logs(self, event: bytes) -> int:
        return sum(p.read_bytes().count(event) for p in self.workdir.glob("router-*.log"))


async def positions(
    ex: MiniExchange, group: str
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The router group's committed offsets and the log end offsets of the input partitions."""
    layout = await partitions_of(ex.settings, [outbound(a) for a in ex.registry.ids])
    tps = [TopicPartition(t, p) for t, ids in layout.items() for p in ids]
    reader = clients.consumer(ex.settings, group_id=group, request_timeout_ms=10_000)
    await reader.start()
    try:
        committed = {tp: (await reader.committed(tp)) or 0 for tp in tps}
        ends = dict(await reader.end_offsets(tps))
    finally:
        await reader.stop()
    return committed, ends


async def recovery(ex: MiniExchange, group: str, within: float) -> float:
    """Seconds from now (a fault's end) until every input partition that had work waiting has
    committed past where it stood: routing has resumed everywhere. ``inf`` if it did not."""
    started = time.monotonic()
    while True:
        try:
            before, ends = await positions(ex, group)
            break
        except KafkaError:  # the cluster may still be healing; measured from the fault's end
            if time.monotonic() - started > within:
                return float("inf")
            await asyncio.sleep(0.5)
    waiting = {tp for tp, offset in before.items() if ends[tp] > offset}
    while time.monotonic() - started < within:
        try:
            now, _ = await positions(ex, group)
        except KafkaError:  # a broker still coming back: keep polling until the deadline
            await asyncio.sleep(0.5)
            continue
        if all(now[tp] > before[tp] for tp in waiting):
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    return float("inf")


def marked_uncommitted(records: Sequence[Record]) -> int:
    return sum(any(k == INJECTED_ABORT_HEADER for k, _ in r.headers or ()) for r in records)


async def publish(
    ex: MiniExchange,
    log: PublishLog,
    total: int,
    seconds: float,
    *,
    origins: Sequence[str] = (),
    **producer_config: Any,
) -> None:
    """``total`` bulletins from the four agencies (or ``origins``), paced over ``seconds``;
    each send logged as acknowledged (partition, offset) or failed. The producer retries
    within its delivery timeout, as a publisher does."""
    origins = list(origins) or [ex.agency(c) for c in COUNTRIES]
    config: dict[str, Any] = {"request_timeout_ms": 15_000, **producer_config}
    producer = clients.producer(ex.settings, **config)
    await producer.start()
    pending: list[asyncio.Future[Any]] = []
    try:
        started = time.monotonic()
        for i in range(total):
            origin = origins[i % len(origins)]
            sealed = seal(routed_bulletin(origin), ex.keys[origin])
            bulletin_id = sealed.key.decode()
            try:
                future = await producer.send(
                    outbound(origin), sealed.value, key=sealed.key, headers=sealed.headers
                )
            except KafkaError:  # a send refused at once (buffer full, no metadata)
                log.failed.add(bulletin_id)
                continue

            def logged(f: asyncio.Future[Any], bulletin_id: str = bulletin_id) -> None:
                if f.cancelled() or f.exception() is not None:
                    log.failed.add(bulletin_id)
                else:
                    meta = f.result()
                    log.ack(bulletin_id, meta.partition, meta.offset)

            future.add_done_callback(logged)
            pending.append(future)
            ahead = (i + 1) * seconds / total - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)  # pacing the stream the faults land in
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        await producer.stop()
