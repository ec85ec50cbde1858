"""The ACL plan against a real SASL/SCRAM broker with the StandardAuthorizer, principal by
principal (Kafka's EndToEndAuthorizationTest is the model): what each may do works, and the
broker refuses everything else with an authorization error, not a silent timeout.

``cr-msp2`` shares a name prefix with ``cr-msp``: a prefixed per-agency ACL would leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.structs import TopicPartition

from broker.policy import Policy
from broker.router import Router
from broker.settings import RouterSettings
from deploy.acl_plan import OPERATOR_USER, ROUTER_USER, acl_plan
from deploy.localkafka import DEFAULT_LIBS, LocalKafka
from deploy.provisioning import AdminConnection, ProvisionReport, load_credentials, provision
from enlace.core import clients, topics
from enlace.core.settings import KafkaSettings
from enlace.core.topics import (
    consumer_group,
    ensure_topics,
    exchange_topics,
    router_transactional_id,
)
from schemas.codec import decode_audit
from schemas.envelope import seal
from tests.samples import sample_bulletin
from tests.support import build_exchange, free_kafka_port

pytestmark = [pytest.mark.faults, pytest.mark.slow]

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


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def secure(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecureExchange]:
    root = tmp_path_factory.mktemp("secure-acl")
    kafka = LocalKafka(root / "kafka", DEFAULT_LIBS)
    await asyncio.to_thread(kafka.up, 1, port=free_kafka_port(), secure=True)
    try:
        conn = AdminConnection.from_cluster(kafka.data_dir)
        admin = conn.client_settings(conn.username, conn.password)
        specs = exchange_topics(AGENCIES, partitions=1, replication=1, min_insync=1)
        await ensure_topics(admin, specs)
        credentials = root / "state" / "credentials.json"
        first = await provision(AGENCIES, conn, credentials_path=credentials, env={})
        yield SecureExchange(kafka, conn, credentials, first, list(AGENCIES))
    finally:
        await asyncio.to_thread(kafka.down)


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


async def test_provisioning_creates_every_principal_privately_and_is_idempotent(
    secure: SecureExchange,
) -> None:
    first = secure.first
    assert set(first.credentials_set) == {*AGENCIES, ROUTER_USER, OPERATOR_USER}
    assert set(first.acls_added) == set(acl_plan(AGENCIES, ROUTER_PREFIX))
    assert stat.S_IMODE(secure.credentials.stat().st_mode) == 0o600
    again = await secure.provision()
    assert not again.changed, again
    assert again.jvm_launches == 2  # read users + list ACLs, nothing to apply
    print(f"\nfirst provisioning {first.seconds:.1f}s / {first.jvm_launches} JVM launches; "
          f"idempotent re-run {again.seconds:.1f}s / {again.jvm_launches}")  # fmt: skip


async def test_agency_writes_only_its_own_outbound_and_receipts(secure: SecureExchange) -> None:
    cr = secure.as_("cr-msp")
    assert await produce(cr, topics.outbound("cr-msp")) >= 0
    assert await produce(cr, topics.receipts("cr-msp")) >= 0
    for topic in (
        topics.outbound("pa-senafront"),
        topics.outbound("cr-msp2"),  # same name prefix: literal ACLs keep it out
        topics.receipts("pa-senafront"),
        topics.feed("cr-msp"),  # its own feed is read-only: only the router writes feeds
        topics.AUDIT,
    ):
        await refused(partial(produce, cr, topic), TopicAuthorizationFailedError, topic)


async def test_agency_reads_only_its_own_feed_and_sees_only_its_topics(
    secure: SecureExchange,
) -> None:
    router = secure.as_(ROUTER_USER)
    for agency in ("cr-msp", "cr-msp2"):
        await produce(router, topics.feed(agency), f"for {agency}".encode())
    cr = secure.as_("cr-msp")
    got = await asyncio.wait_for(read(cr, topics.feed("cr-msp"), consumer_group("cr-msp")), 30)
    assert got == [b"for cr-msp"]

    own_group = consumer_group("cr-msp")
    for topic in (topics.feed("cr-msp2"), topics.feed("pa-senafront"), topics.outbound("cr-msp")):
        await refused(partial(read, cr, topic, own_group), TopicAuthorizationFailedError, topic)
    other_group = consumer_group("pa-senafront")
    await refused(
        lambda: read(cr, topics.feed("cr-msp"), other_group),
        GroupAuthorizationFailedError,
        other_group,
    )
    # Metadata is filtered too: other agencies' topics are not even listed.
    assert await visible_topics(cr) == {
        topics.outbound("cr-msp"),
        topics.feed("cr-msp"),
        topics.receipts("cr-msp"),
    }
    operator = secure.as_(OPERATOR_USER)
    assert await visible_topics(operator) == {
        topics.AUDIT,
        topics.DEADLETTER,
        topics.TRUST_SCORES,
    }


async def test_router_copies_outbound_to_a_feed_in_a_transaction_under_its_prefix(
    secure: SecureExchange,
) -> None:
    source = topics.outbound("pa-senafront")
    await produce(secure.as_("pa-senafront"), source, b"bulletin-1")
    router = secure.as_(ROUTER_USER)
    group = RouterSettings().group_id
    tp = TopicPartition(source, 0)
    consumer = clients.consumer(router, source, group_id=group, request_timeout_ms=5_000)
    txn_id = router_transactional_id(source, 0, ROUTER_PREFIX)  # what the engine uses
    producer = clients.producer(router, transactional_id=txn_id, request_timeout_ms=5_000)
    async with running(consumer), running(producer):
        records: list[Any] = []
        async with asyncio.timeout(30):
            while not records:
                records = (await consumer.getmany(tp, timeout_ms=200)).get(tp, [])
        async with asyncio.timeout(30), producer.transaction():
            for record in records:
                await producer.send(topics.feed("cr-msp"), record.value, key=record.key)
                await producer.send(topics.DEADLETTER, b"dl:" + record.value, key=record.key)
            await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, group)
        # The offsets commit with the transaction; the coordinator shows them once it is done.
        async with asyncio.timeout(15):
            while await consumer.committed(tp) != records[-1].offset + 1:
                await asyncio.sleep(0.1)

    cr = secure.as_("cr-msp")
    got = await asyncio.wait_for(
        read(cr, topics.feed("cr-msp"), consumer_group("cr-msp"), want=1), 30
    )
    assert got == [b"bulletin-1"]  # the earlier record of this feed was committed already
    operator = secure.as_(OPERATOR_USER)
    dead = await asyncio.wait_for(read(operator, topics.DEADLETTER, None, want=1), 30)
    assert dead == [b"dl:bulletin-1"]

    async def rogue_transaction() -> None:
        rogue = clients.producer(router, transactional_id="rogue.0", request_timeout_ms=5_000)
        async with running(rogue):
            pass

    await refused(rogue_transaction, TransactionalIdAuthorizationFailed, "rogue.0")
    # The router writes feeds but never reads them back.
    feed = topics.feed("cr-msp")
    await refused(lambda: read(router, feed, group), TopicAuthorizationFailedError, feed)


async def test_prune_revokes_a_departed_agency_and_provision_restores_it(
    secure: SecureExchange,
) -> None:
    gone = secure.as_("cr-msp2")
    remaining = [a for a in secure.agencies if a != "cr-msp2"]
    pruned = await secure.provision(remaining, prune=True)
    assert {b.principal for b in pruned.acls_removed} == {"User:cr-msp2"}
    assert len(pruned.acls_removed) == 8
    assert pruned.users_removed == ("cr-msp2",)
    assert "cr-msp2" not in load_credentials(secure.credentials)
    outbound = topics.outbound("cr-msp2")
    # Its SCRAM credential is gone too: it cannot even log in (aiokafka logs
    # SaslAuthenticationFailed and gives up bootstrapping on a broker that is up).
    await refused(partial(produce, gone, outbound), KafkaConnectionError, None)

    restored = await secure.provision()
    assert {b.principal for b in restored.acls_added} == {"User:cr-msp2"}
    assert restored.credentials_set == ("cr-msp2",)
    assert await produce(secure.as_("cr-msp2"), outbound) >= 0


async def test_the_real_router_releases_under_its_least_privilege_principal(
    secure: SecureExchange,
) -> None:
    """broker.router.Router itself (consumer group, transactions, trust feed, seen index,
    side producer, score publisher) with only the router's ACLs; agencies as themselves."""
    ex = await build_exchange(secure.admin, countries=("PA", "CR"))
    pa, cr = ex.agency("PA"), ex.agency("CR")
    ex.policy = Policy.model_validate({"agreements": [{"between": [pa, cr], "level": "full"}]})
    secure.agencies.extend([pa, cr])
    added = await secure.provision()
    assert {b.principal for b in added.acls_added} == {f"User:{pa}", f"User:{cr}"}
    as_router = secure.as_(ROUTER_USER)
    settings = ex.router_settings(
        router_prefix=ROUTER_PREFIX,
        kafka_security_protocol=as_router.kafka_security_protocol,
        kafka_sasl_username=as_router.kafka_sasl_username,
        kafka_sasl_password=as_router.kafka_sasl_password,
    )
    bulletin = sample_bulletin(pa)
    sample_id = str(bulletin.bulletin_id)
    sealed = seal(bulletin, ex.keys[pa])
    async with Router(settings, ex.registry, ex.policy, ex.directory):
        async with running(clients.producer(secure.as_(pa))) as producer:
            await producer.send_and_wait(
                topics.outbound(pa), sealed.value, key=sealed.key, headers=sealed.headers
            )
        got = await asyncio.wait_for(read(secure.as_(cr), topics.feed(cr), consumer_group(cr)), 60)
        # Operators watch what the router wrote: its audit trail and its trust scores.
        operator = secure.as_(OPERATOR_USER)
        audit = await asyncio.wait_for(read(operator, topics.AUDIT, None), 30)
        scores = await asyncio.wait_for(read(operator, topics.TRUST_SCORES, None), 30)
    assert got[0] in (sealed.value, sealed.tearline_value)
    assert decode_audit(audit[0]).bulletin_id == sample_id
    assert {json.loads(v)["originator"] for v in scores} <= {pa, cr}
