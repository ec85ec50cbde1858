"""Test helpers that build a small private exchange on the shared test broker.

Each :class:`MiniExchange` has its own agencies (unique ids, so unique outbound, feed and
receipts topics), keys, policy and router prefix. Shared topics (audit, dead letters) are
read from the offsets they had when the exchange was built and filtered by its agencies.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from broker.policy import Policy
from broker.settings import RouterSettings
from deploy.localkafka import ClusterSpec
from enlace.core import clients
from enlace.core.errors import CodecError, ValidationError
from enlace.core.registry import Agency, Registry
from enlace.core.settings import KafkaSettings
from enlace.core.topics import (
    AUDIT,
    DEADLETTER,
    ensure_topics,
    exchange_topics,
    outbound,
    partitions_of,
)
from schemas.agency_key import AgencyKey
from schemas.codec import decode_audit
from schemas.envelope import Sealed
from schemas.key_directory import KeyDirectory

Record: TypeAlias = ConsumerRecord[Any, Any]


@dataclass
class MiniExchange:
    settings: KafkaSettings
    registry: Registry
    keys: dict[str, AgencyKey]
    directory: KeyDirectory
    policy: Policy
    token: str
    start_offsets: dict[TopicPartition, int] = field(default_factory=dict)

    def agency(self, country: str) -> str:
        return f"{country.lower()}-t{self.token}"

    def router_settings(self, **overrides: Any) -> RouterSettings:
        values: dict[str, Any] = {
            "kafka_bootstrap": self.settings.kafka_bootstrap,
            "router_prefix": f"t{self.token}.router.",
            "http_port": 0,
            "trust_snapshot_seconds": 1.0,
            "startup_timeout_seconds": 60.0,
            **overrides,
        }
        return RouterSettings(**values)

    async def publish(self, agency: str, sealed: Sealed | list[Sealed], **kwargs: Any) -> None:
        """Write sealed records straight to ``agency``'s outbound topic (partition 0)."""
        await self.publish_raw(
            outbound(agency),
            [
                (s.key, s.value, s.headers)
                for s in (sealed if isinstance(sealed, list) else [sealed])
            ],
            **kwargs,
        )

    async def publish_raw(
        self,
        topic: str,
        records: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
        partition: int = 0,
    ) -> None:
        producer = clients.producer(self.settings)
        await producer.start()
        try:
            futures = [
                await producer.send(topic, value, key=key, headers=headers, partition=partition)
                for key, value, headers in records
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    async def read(
        self,
        topic: str,
        *,
        until: Callable[[list[Record]], bool],
        keep: Callable[[Record], bool] = lambda _r: True,
        within: float = 30.0,
        settle: float = 0.0,
        isolation_level: str = "read_committed",
    ) -> list[Record]:
        """Read ``topic`` (from the exchange's start offsets for shared topics) until ``until``
        holds for the kept records, then ``settle`` seconds more to catch any extras."""
        consumer = clients.consumer(self.settings, group_id=None, isolation_level=isolation_level)
        await consumer.start()
        try:
            await _assign_from(self.settings, consumer, topic, self.start_offsets)
            found: list[Record] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + within
            while loop.time() < deadline and not until(found):
                batch = await consumer.getmany(timeout_ms=200)
                found.extend(r for recs in batch.values() for r in recs if keep(r))
            if settle:
                quiet_until = loop.time() + settle
                while loop.time() < quiet_until:
                    batch = await consumer.getmany(timeout_ms=200)
                    found.extend(r for recs in batch.values() for r in recs if keep(r))
            return found
        finally:
            await consumer.stop()


def free_kafka_port(nodes: int = 1) -> int:
    """A base port whose broker and controller ports (per node) nobody listens on or holds, so a
    test's own Kafka never collides with another run's (ports chosen by binding, like port 0)."""
    for _ in range(200):
        base = random.randint(2_000, 9_997)  # 3 nodes use 1<base>, 2<base>, 3<base>
        # Secure: the most listeners a node opens; plaintext adds the metrics agent's port.
        spec = ClusterSpec(nodes=nodes, port=base, secure=True)
        plain = ClusterSpec(nodes=nodes, port=base)
        wanted = {p for n in spec.node_ids for p in (*spec.ports(n), *plain.all_ports(n))}
        if all(_bindable(p) for p in wanted):
            return base
    raise AssertionError("no free port range for a test broker")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def eventually(
    check: Callable[[], object], what: str = "condition", *, within: float = 30.0
) -> None:
    """Poll ``check`` (a plain or async predicate) until it is truthy; fail naming ``what``
    after ``within`` seconds. The one polling helper of the suite (never sleep to synchronise)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        await asyncio.sleep(0.05)


async def _assign_from(
    settings: KafkaSettings,
    consumer: AIOKafkaConsumer,
    topic: str,
    start: dict[TopicPartition, int],
) -> None:
    layout = await partitions_of(settings, [topic])
    partitions = [TopicPartition(topic, p) for p in layout[topic]]
    consumer.assign(partitions)
    for tp in partitions:
        if tp in start:
            consumer.seek(tp, start[tp])
        else:
            await consumer.seek_to_beginning(tp)


async def build_exchange(
    settings: KafkaSettings,
    countries: Iterable[str] = ("PA", "US", "CR", "MX"),
    agreements: list[dict[str, Any]] | None = None,
    partitions: int = 1,
    *,
    replication: int = 1,
    min_insync: int = 1,
) -> MiniExchange:
    token = uuid.uuid4().hex[:8]
    agencies = tuple(
        Agency(id=f"{c.lower()}-t{token}", name=f"Test agency {c}", country=c) for c in countries
    )
    registry = Registry(agencies=agencies)
    valid_from = datetime.now(UTC) - timedelta(days=30)
    keys = {a.id: AgencyKey.generate(a.id, valid_from=valid_from) for a in agencies}
    directory = KeyDirectory.from_keys(keys.values())
    policy = Policy.model_validate({"agreements": agreements or []})
    specs = exchange_topics(
        registry.ids,
        partitions=partitions,
        replication=replication,
        min_insync=min_insync,
        router_prefix=f"t{token}.router.",
    )
    await ensure_topics(settings, specs)
    exchange = MiniExchange(settings, registry, keys, directory, policy, token)
    exchange.start_offsets = await end_offsets(settings, [AUDIT, DEADLETTER])
    return exchange


async def end_offsets(settings: KafkaSettings, topics: list[str]) -> dict[TopicPartition, int]:
    layout = await partitions_of(settings, topics)
    partitions = [TopicPartition(t, p) for t, ids in layout.items() for p in ids]
    consumer = clients.consumer(settings, group_id=None)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


def decisions_of(record: Record) -> list[Any]:
    """Every (bulletin, partner) decision an audit record holds (a ROUTED record holds one per
    partner), or none for what another test wrote there on purpose."""
    audit = audit_of(record)
    return [] if audit is None else list(audit.per_partner())


def audit_of(record: Record) -> Any:
    """The audit record, or None for what another test wrote there on purpose (the shared
    audit topic holds the dishonest-partner tests' garbage)."""
    try:
        return decode_audit(record.value or b"")
    except (CodecError, ValidationError):
        return None
