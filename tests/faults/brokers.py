"""The broker side of the nemesis: who leads what (to choose a victim that matters), and a
node killed or paused and brought back, each fault timed for the report."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import CoordinationType
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from deploy.localkafka import LocalKafka
from enlace.core.settings import KafkaSettings


async def leader_of(settings: KafkaSettings, topic: str, partition: int) -> int:
    """The node id leading ``topic``/``partition`` now (fresh metadata)."""
    client = AIOKafkaClient(**settings.client_kwargs())
    await client.bootstrap()
    try:
        deadline = time.monotonic() + 30
        while True:
            await client.force_metadata_update()
            leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
            if leader is not None and leader >= 0:
                return int(leader)
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}/{partition} has no leader after 30 s")
            await asyncio.sleep(0.5)
    finally:
        await client.close()


async def transaction_coordinator(settings: KafkaSettings, transactional_id: str) -> int:
    """The node id coordinating ``transactional_id`` (FindCoordinator, type TRANSACTION)."""
    client = AIOKafkaClient(**settings.client_kwargs())
    await client.bootstrap()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                found = await client.coordinator_lookup(
                    CoordinationType.TRANSACTION, transactional_id
                )
                return int(found)
            except KafkaError:
                # Not available yet: the transaction log is created on first use, and a
                # coordinator moves while its node restarts.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await client.close()


async def fully_replicated(settings: KafkaSettings, topics: list[str], within: float) -> float:
    """Wait until every partition of ``topics`` has its whole replica set in sync (a
    restarted node has caught up), so the next kill cannot take a partition below min ISR.
    Returns the seconds it took."""
    started = time.monotonic()
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=10_000)
    await admin.start()
    try:
        while time.monotonic() - started < within:
            try:
                described = await admin.describe_topics(topics)
            except KafkaError:  # a node still starting: ask again
                described = []
            lagging = [
                (t["topic"], p["partition"])
                for t in described
                for p in t["partitions"]
                if len(p["isr"]) < len(p["replicas"])
            ]
            if described and not lagging:
                return time.monotonic() - started
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    raise AssertionError(f"{topics} not fully replicated within {within:.0f} s")


@dataclass
class BrokerFaults:
    """Kills (SIGKILL, then a normal start) and pauses (SIGSTOP/SIGCONT) of single nodes; a
    node is never left down or stopped (``heal`` in teardown)."""

    kafka: LocalKafka
    kills: list[int] = field(default_factory=list)
    pauses: list[int] = field(default_factory=list)
    _stopped: set[int] = field(default_factory=set)

    async def kill(self, node_id: int, down_for: float) -> float:
        """SIGKILL ``node_id``, keep it down ``down_for`` s, start it; returns the time the
        node was ready again (the fault's end, ``time.monotonic()``)."""
        await asyncio.to_thread(self.kafka.stop_node, node_id, hard=True)
        self.kills.append(node_id)
        await asyncio.sleep(down_for)  # the fault's length, not a synchronisation
        await asyncio.to_thread(self.kafka.start_node, node_id)
        return time.monotonic()

    async def pause(self, node_id: int, paused_for: float) -> float:
        """SIGSTOP ``node_id`` for ``paused_for`` s (a GC pause, a frozen VM), then SIGCONT."""
        pid = self._pid(node_id)
        os.kill(pid, signal.SIGSTOP)
        self._stopped.add(node_id)
        self.pauses.append(node_id)
        try:
            await asyncio.sleep(paused_for)  # the fault's length
        finally:
            os.kill(pid, signal.SIGCONT)
            self._stopped.discard(node_id)
        return time.monotonic()

    def heal(self) -> None:
        """Teardown: every paused node continued, every node running."""
        for node_id in list(self._stopped):
            os.kill(self._pid(node_id), signal.SIGCONT)
        self._stopped.clear()
        for status in self.kafka.status():
            if not status.alive:
                self.kafka.start_node(status.node_id)

    def _pid(self, node_id: int) -> int:
        pid = next((s.pid for s in self.kafka.status() if s.node_id == node_id and s.alive), None)
        if pid is None:
            raise AssertionError(f"node {node_id} is not running")
        return pid
