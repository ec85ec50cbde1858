"""Router processes killed with SIGKILL mid-stream: every release exactly once.

The routers run as real ``enlace router run`` processes. Bulletins flow while one is killed
and replaced; at the end every bulletin has exactly one audit record per partner, every
FULL/TEARLINE decision exactly one feed record, and nothing appears in a feed without its
decision.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.policy import Policy
from enlace.core import clients
from enlace.core.settings import KafkaSettings
from enlace.core.topics import outbound
from schemas.envelope import seal
from tests.faults.routers import RouterProcess, write_config
from tests.samples import routed_bulletin
from tests.support import MiniExchange, build_exchange, check_exactly_once

pytestmark = [pytest.mark.faults, pytest.mark.slow]

BULLETINS = 600


@pytest.fixture
async def exchange(kafka_settings: KafkaSettings, tmp_path: Path) -> MiniExchange:
    ex = await build_exchange(kafka_settings, partitions=3)
    pa, us, cr, mx = (ex.agency(c) for c in ("PA", "US", "CR", "MX"))
    agreements = [
        {"between": [pa, us], "level": "full"},
        {"between": [pa, cr], "level": "standard"},
        {"between": [us, cr], "level": "standard"},
        {"between": [us, mx], "level": "limited"},
    ]
    ex.policy = Policy.model_validate({"agreements": agreements})
    write_config(ex, tmp_path, agreements)
    return ex


@pytest.fixture
def routers(exchange: MiniExchange, tmp_path: Path) -> Iterator[list[RouterProcess]]:
    running: list[RouterProcess] = []
    yield running
    for router in running:
        if router.proc.poll() is None:
            router.kill_now()


async def publish_stream(ex: MiniExchange, origins: list[str], total: int) -> set[str]:
    """Publish ``total`` bulletins over ~10 s across partitions, one producer throughout."""
    ids: set[str] = set()
    producer = clients.producer(ex.settings)
    await producer.start()
    try:
        for i in range(total):
            origin = origins[i % len(origins)]
            sealed = seal(
                routed_bulletin(origin),
                ex.keys[origin],
            )
            ids.add(sealed.key.decode())
            await producer.send(
                outbound(origin), sealed.value, key=sealed.key, headers=sealed.headers
            )
            if i % 10 == 9:
                await asyncio.sleep(10.0 / (total / 10))  # a steady stream the kills land in
        await producer.flush()
    finally:
        await producer.stop()
    return ids


async def assigned(paths: list[Path], partitions: int, within: float = 120.0) -> None:
    """Wait until the routers logging to ``paths`` share ``partitions`` input partitions
    (each one's latest assignment), so the stream starts with the group settled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        latest: list[int] = []
        for path in paths:
            lines = [ln for ln in path.read_text().splitlines() if '"router_assigned"' in ln]
            if lines:
                latest.append(json.loads(lines[-1])["partitions"])
        if len(latest) == len(paths) and sum(latest) == partitions:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"routers {[p.name for p in paths]} never shared {partitions} partitions")


async def routed_by(path: Path, at_least: int, within: float = 120.0) -> None:
    """Wait until the router logging to ``path`` has routed ``at_least`` bulletins."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if path.read_bytes().count(b"bulletin_routed") >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path.name} did not route {at_least} bulletins in {within}s")


@pytest.mark.timeout(300)
async def test_router_killed_mid_stream_releases_exactly_once(
    exchange: MiniExchange, routers: list[RouterProcess], tmp_path: Path
) -> None:
    ex = exchange
    routers.append(RouterProcess(ex, tmp_path, "first"))
    origins = [ex.agency("PA"), ex.agency("US")]
    await assigned([tmp_path / "first.log"], 12)
    stream = asyncio.create_task(publish_stream(ex, origins, BULLETINS))
    await routed_by(tmp_path / "first.log", 60)
    await routers[0].kill()
    routers.append(RouterProcess(ex, tmp_path, "second"))
    await routed_by(tmp_path / "second.log", 60)
    await routers[1].kill()
    routers.append(RouterProcess(ex, tmp_path, "third"))
    ids = await stream
    decisions = await check_exactly_once(ex, ids)
    assert decisions["FULL"] > 0
    assert decisions["TEARLINE"] > 0
    assert await routers[2].stop() == 0
    third = (tmp_path / "third.log").read_bytes().count(b"bulletin_routed")
    assert third > 0, "the kills did not land mid-stream"


@pytest.mark.timeout(300)
async def test_two_routers_in_one_group_share_the_work_exactly_once(
    exchange: MiniExchange, routers: list[RouterProcess], tmp_path: Path
) -> None:
    ex = exchange
    routers.extend([RouterProcess(ex, tmp_path, "a"), RouterProcess(ex, tmp_path, "b")])
    origins = [ex.agency("PA"), ex.agency("US"), ex.agency("CR")]
    await assigned([tmp_path / "a.log", tmp_path / "b.log"], 12)
    stream = asyncio.create_task(publish_stream(ex, origins, BULLETINS))
    await routed_by(tmp_path / "a.log", 40)
    await routed_by(tmp_path / "b.log", 40)
    await routers[0].kill()  # its partitions move to b after the session timeout
    ids = await stream
    await check_exactly_once(ex, ids)
    assert await routers[1].stop() == 0
