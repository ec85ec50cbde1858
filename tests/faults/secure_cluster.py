"""One secure local cluster (SASL_SSL, mTLS controller, StandardAuthorizer) shared by the
security tests, and the plain-client moves they play as each principal."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from broker.settings import RouterSettings
from deploy.localkafka import ClusterSpec, LocalKafka
from deploy.provisioning import AdminConnection, ProvisionReport, load_credentials, provision
from enlace.core import clients
from enlace.core.registry import Quotas
from enlace.core.settings import KafkaSettings

AGENCIES = ("cr-msp", "cr-msp2", "pa-senafront")
ROUTER_PREFIX = RouterSettings().router_prefix
# A refusal arrives in one round trip; a wait this long means the broker did not refuse.
REFUSAL_S = 15.0

T = TypeVar("T")


@dataclass(frozen=True)
class SecureExchange:
    kafka: LocalKafka
    conn: AdminConnection
    credentials: Path
    first: ProvisionReport
    agencies: list[str]  # provisioned now; tests may add some
    quotas: dict[str, Quotas] = field(default_factory=dict)  # overrides; the rest default

    @property
    def ca_file(self) -> Path:
        return self.kafka.ca.ca_cert

    @property
    def spec(self) -> ClusterSpec:
        spec = self.kafka.spec()
        assert spec is not None
        return spec

    def as_(self, name: str) -> KafkaSettings:
        password = load_credentials(self.credentials)[name]
        return self.conn.client_settings(name, password)

    @property
    def admin(self) -> KafkaSettings:
        return self.conn.client_settings(self.conn.username, self.conn.password)

    async def provision(self, agencies: list[str] | None = None, **kw: Any) -> ProvisionReport:
        return await provision(
            self.agencies if agencies is None else agencies,
            self.conn,
            credentials_path=self.credentials,
            quotas=self.quotas,
            env={},
            **kw,
        )


@contextlib.asynccontextmanager
async def running(client: T) -> AsyncIterator[T]:
    """Start and always stop (a client whose start was refused still holds sockets)."""
    assert isinstance(client, AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient)
    try:
        await client.start()
        yield client
    finally:
        if isinstance(client, AIOKafkaAdminClient):
            await client.close()
        else:
            await client.stop()


async def produce(settings: KafkaSettings, topic: str, value: bytes = b"v") -> int:
    async with running(clients.producer(settings, request_timeout_ms=5_000)) as producer:
        return int((await producer.send_and_wait(topic, value, key=b"k")).offset)


async def read(
    settings: KafkaSettings,
    topic: str,
    group: str | None,
    want: int = 1,
    *,
    until: Callable[[bytes], bool] | None = None,
) -> list[bytes]:
    """Read ``want`` records (or until one matches ``until``: the shared topics hold other
    modules' records) and commit them to ``group``, as the consumer service does."""
    consumer = clients.consumer(settings, topic, group_id=group, request_timeout_ms=5_000)
    values: list[bytes] = []

    def done() -> bool:
        return any(map(until, values)) if until is not None else len(values) >= want

    async with running(consumer):
        while not done():
            batch = await consumer.getmany(timeout_ms=200)
            values += [r.value for records in batch.values() for r in records if r.value]
        if group is not None:
            await consumer.commit()
    return values


async def refused(
    action: Callable[[], Awaitable[object]], error: type[Exception], name: str | None
) -> None:
    with pytest.raises(error) as caught:
        await asyncio.wait_for(action(), REFUSAL_S)
    if name is not None:
        assert name in str(caught.value)


async def visible_topics(settings: KafkaSettings) -> set[str]:
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=5_000)
    async with running(admin):
        return set(await admin.list_topics())


# librdkafka fixed SCRAM against Kafka 4 brokers in 2.6.1 (confluentinc/librdkafka#4895,
# edenhill/kcat#462); Debian bookworm's kcat links 2.0.2.
SCRAM_FIXED_IN = (2, 6, 1)


def librdkafka_version(env: dict[str, str] | None = None) -> tuple[int, ...]:
    out = subprocess.run(
        ["kcat", "-V"],
        capture_output=True, text=True, timeout=30, check=True, env=env,
    ).stdout  # fmt: skip
    match = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", out)
    assert match, out
    return tuple(int(part) for part in match.groups())


def kcat(env: dict[str, str], config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kcat", "-F", str(config), *args],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
