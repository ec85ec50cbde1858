"""One secure local cluster (SASL_SSL, mTLS controller, StandardAuthorizer) shared by the
security tests, and the plain-client moves they play as each principal."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from broker.settings import RouterSettings
from deploy.localkafka import ClusterSpec, LocalKafka
from deploy.provisioning import AdminConnection, ProvisionReport, load_credentials, provision
from enlace.core import clients
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
    settings: KafkaSettings, topic: str, group: str | None, want: int = 1
) -> list[bytes]:
    """Read ``want`` records and commit them to ``group``, as the consumer service does."""
    consumer = clients.consumer(settings, topic, group_id=group, request_timeout_ms=5_000)
    values: list[bytes] = []
    async with running(consumer):
        while len(values) < want:
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
