"""The ACL plan against a real SASL/SCRAM broker with the StandardAuthorizer, principal by
principal (Kafka's EndToEndAuthorizationTest is the model): what each may do works, and the
broker refuses everything else with an authorization error, not a silent timeout.

``cr-msp2`` shares a name prefix with ``cr-msp``: a prefixed per-agency ACL would leak.
"""

from __future__ import annotations

import asyncio
import json
import stat
from functools import partial
from typing import Any

import pytest
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
from deploy.provisioning import load_credentials
from enlace.core import clients, topics
from enlace.core.errors import CodecError, ValidationError
from enlace.core.topics import (
    consumer_group,
    router_transactional_id,
)
from schemas.codec import decode_audit
from schemas.envelope import seal
from tests.faults.secure_cluster import (
    AGENCIES,
    ROUTER_PREFIX,
    SecureExchange,
    produce,
    read,
    refused,
    running,
    visible_topics,
)
from tests.samples import sample_bulletin
from tests.support import build_exchange

pytestmark = [pytest.mark.faults, pytest.mark.slow]


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
    # Operators see every feed (Describe, for broker-side lag; other tests' exchanges on
    # this cluster have feeds too) but read none of them.
    seen = await visible_topics(operator)
    feeds = {name for name in seen if name.startswith(topics.FEED_PREFIX)}
    assert seen - feeds == {
        topics.AUDIT,
        topics.DEADLETTER,
        topics.TRUST_SCORES,
        topics.trust_snapshots_topic(),
    }
    assert {topics.feed(agency) for agency in AGENCIES} <= feeds
    await refused(
        lambda: read(operator, topics.feed("cr-msp"), None),
        TopicAuthorizationFailedError,
        topics.feed("cr-msp"),
    )


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
    dead = await asyncio.wait_for(
        read(operator, topics.DEADLETTER, None, until=lambda v: v == b"dl:bulletin-1"), 30
    )
    assert dead.count(b"dl:bulletin-1") == 1

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
    settings = ex.router_settings(router_prefix=ROUTER_PREFIX, **as_router.connection())
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
        audit = await asyncio.wait_for(
            read(operator, topics.AUDIT, None, until=lambda v: audited(v) == sample_id), 30
        )
        scores = await asyncio.wait_for(
            read(operator, topics.TRUST_SCORES, None, until=lambda v: scored(v) in (pa, cr)), 30
        )
    assert got[0] in (sealed.value, sealed.tearline_value)
    assert sample_id in {audited(v) for v in audit}
    assert {pa, cr} & {scored(v) for v in scores}


def audited(value: bytes) -> str | None:
    try:
        return str(decode_audit(value).bulletin_id)
    except (CodecError, ValidationError):
        return None  # another module's dead letters or garbage


def scored(value: bytes) -> str | None:
    return str(json.loads(value).get("originator"))
