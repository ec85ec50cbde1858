"""``enlace router run --workers 2``: two router processes in one group share the input
partitions; a killed worker is replaced while the other routes; the supervisor's stop stops
both, and its death takes them with it. Every bulletin is decided once for every partner and
every release delivered once (the fault suite's checker)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from enlace.core.settings import KafkaSettings
from tests.faults.checker import PublishLog, check
from tests.faults.nemesis import publish
from tests.faults.routers import RouterProcess, write_config
from tests.support import build_exchange, eventually

pytestmark = pytest.mark.integration


def events(router: RouterProcess, name: str) -> list[dict[str, Any]]:
    found = []
    for line in router.log_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a traceback or a library's plain line
        if isinstance(entry, dict) and entry.get("event") == name:
            found.append(entry)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; it only waits for its parent to reap it.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def assigned_workers(router: RouterProcess) -> set[int]:
    return {e["worker"] for e in events(router, "router_assigned") if e.get("partitions")}


async def test_two_workers_route_every_bulletin_once_across_a_worker_kill(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    ex = await build_exchange(kafka_settings, partitions=4)
    pa, us, cr = ex.agency("PA"), ex.agency("US"), ex.agency("CR")
    agreements: list[dict[str, Any]] = [
        {"between": [pa, us], "level": "full"},
        {"between": [pa, cr], "level": "standard"},
    ]
    write_config(ex, tmp_path, agreements)
    router = RouterProcess(ex, tmp_path, "workers", ENLACE_ROUTER_WORKERS="2")
    log = PublishLog()
    try:
        await eventually(lambda: len(events(router, "router_started")) >= 2,
                         "both workers started", within=90)  # fmt: skip
        await eventually(lambda: assigned_workers(router) == {0, 1},
                         "both workers own partitions", within=60)  # fmt: skip
        await publish(ex, log, 40, 2.0)
        first = {e["worker"]: e["pid"] for e in events(router, "router_worker_started")}
        os.kill(first[1], signal.SIGKILL)
        await publish(ex, log, 40, 2.0)
        await eventually(lambda: len(events(router, "router_worker_started")) >= 3,
                         "the killed worker restarted", within=30)  # fmt: skip
        report = await check(ex, log, within=120)
        assert report.ok, report.table()
        assert len(log.acked) == 80
        (exited,) = events(router, "router_worker_exited")
        assert exited["worker"] == 1
        assert exited["code"] == -signal.SIGKILL
        workers = [e["pid"] for e in events(router, "router_worker_started")]
    finally:
        code = await router.stop()
    assert code == 0, router.log_text()[-2000:]
    assert not [pid for pid in workers if alive(pid)], "a worker outlived the supervisor's stop"


async def test_workers_die_with_a_killed_supervisor(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    ex = await build_exchange(kafka_settings, partitions=2)
    write_config(ex, tmp_path, [{"between": [ex.agency("PA"), ex.agency("US")], "level": "full"}])
    router = RouterProcess(ex, tmp_path, "workers", ENLACE_ROUTER_WORKERS="2")
    try:
        await eventually(lambda: len(events(router, "router_worker_started")) >= 2,
                         "both workers launched", within=30)  # fmt: skip
        pids = [e["pid"] for e in events(router, "router_worker_started")]
    finally:
        await router.kill()
    await eventually(lambda: not any(alive(p) for p in pids), "workers gone", within=10)
