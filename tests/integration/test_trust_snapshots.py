"""Trust snapshots against the real broker: a router starts from one and gets the answers of a
full replay; a crash mid-snapshot leaves the previous one; one writer at a time."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.live_trust import live_ledger
from broker.policy import Policy
from broker.router import Router
from broker.snapshots import CHUNK_BYTES, SNAPSHOT_HEADER, SnapshotWriter, chunk_key, read_newest
from enlace.core import clients
from enlace.core.errors import BrokerError
from enlace.core.settings import KafkaSettings
from enlace.core.topics import TopicSpec, ensure_topics, receipts, trust_snapshots_topic
from schemas.envelope import seal, seal_event
from schemas.vocab import TrustEventKind
from tests.samples import routed_bulletin, sample_event
from tests.support import MiniExchange, build_exchange

pytestmark = pytest.mark.integration


async def eventually(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.1)


def policy_for(ex: MiniExchange, level: str) -> Policy:
    pa, us, cr = ex.agency("PA"), ex.agency("US"), ex.agency("CR")
    agreements = [{"between": [pa, us], "level": "full"}, {"between": [pa, cr], "level": level}]
    return Policy.model_validate({"agreements": agreements})


def started_from(router: Router, source: str) -> float:
    value = router.metrics.registry.get_sample_value(
        "enlace_router_trust_starts_total", {"source": source}
    )
    return value or 0.0


async def send_events(ex: MiniExchange, events: list[tuple[str, Any]]) -> None:
    for reporter, event in events:
        sealed = seal_event(event, ex.keys[reporter])
        await ex.publish_raw(receipts(reporter), [(sealed.key, sealed.value, sealed.headers)])


def assert_same(a: Router, b: Router, ex: MiniExchange, policy: Policy, now: datetime) -> None:
    for o in ex.registry.ids:
        for p in ex.registry.ids:
            if o == p:
                continue
            x, y = a.trust.score(o, p, policy, now), b.trust.score(o, p, policy, now)
            assert x.value == pytest.approx(y.value, abs=1e-9), (o, p)
            assert [f.name for f in x.factors] == [f.name for f in y.factors], (o, p)
            for fx, fy in zip(x.factors, y.factors, strict=True):
                assert fx.value == pytest.approx(fy.value, abs=1e-9), (o, p, fx.name)


async def test_a_router_starts_from_the_snapshot_and_gets_the_answers_of_a_full_replay(
    kafka_settings: KafkaSettings,
) -> None:
    ex = await build_exchange(kafka_settings)
    pa, us, cr, mx = (ex.agency(c) for c in ("PA", "US", "CR", "MX"))
    before = policy_for(ex, "standard")
    snapshotting = ex.router_settings(trust_state_snapshot_seconds=1.0)
    sealed = [seal(routed_bulletin(pa), ex.keys[pa]) for _ in range(8)]
    ids = [s.key.decode() for s in sealed]
    async with Router(snapshotting, ex.registry, before, ex.directory) as first:
        await ex.publish(pa, sealed)
        await eventually(lambda: first.trust.remembered_releases() >= 16, "16 releases folded")
        now = datetime.now(UTC)
        await send_events(ex, [
            *[(p, sample_event(reporter=p, subject=pa, bulletin_id=b, occurred_at=now))
              for b in ids[:6] for p in (us, cr)],
            (us, sample_event(TrustEventKind.FEEDBACK_ACTIONED, reporter=us, subject=pa,
                              bulletin_id=ids[0], occurred_at=now)),
            (pa, sample_event(TrustEventKind.INCIDENT_MISHANDLING, reporter=pa, subject=mx,
                              bulletin_id=None, occurred_at=now)),
        ])  # fmt: skip
        await eventually(lambda: first.trust.events_applied >= 14, "14 events folded")
        folded = first._trust_feed.records_folded
        await eventually(lambda: first.snapshots.covered >= folded, "a snapshot after them")
        assert first.snapshots.is_writer
    # The tail, written while no router runs: receipts for the last two, a leak, feedback.
    now = datetime.now(UTC)
    await send_events(ex, [
        *[(p, sample_event(reporter=p, subject=pa, bulletin_id=b, occurred_at=now))
          for b in ids[6:] for p in (us, cr)],
        (pa, sample_event(TrustEventKind.INCIDENT_LEAK, reporter=pa, subject=cr,
                          bulletin_id=None, occurred_at=now)),
        (cr, sample_event(TrustEventKind.FEEDBACK_USEFUL, reporter=cr, subject=pa,
                          bulletin_id=ids[1], occurred_at=now)),
    ])  # fmt: skip
    after = policy_for(ex, "full")  # a score-time change between the snapshot and the restart
    replaying = ex.router_settings(trust_state_snapshots=False)
    async with (
        Router(snapshotting, ex.registry, after, ex.directory) as resumed,
        Router(replaying, ex.registry, after, ex.directory) as replayed,
    ):
        assert started_from(resumed, "snapshot") == 1
        assert started_from(replayed, "disabled") == 1
        # The resumed router read the tail only.
        tail = resumed._trust_feed.records_folded
        assert 0 < tail < replayed._trust_feed.records_folded
        await eventually(lambda: resumed.trust.events_applied >= 20, "the tail folded")
        await eventually(lambda: replayed.trust.events_applied >= 20, "history folded")
        assert resumed.trust.events_applied == replayed.trust.events_applied == 20
        at = datetime.now(UTC) + timedelta(hours=2)  # past the receipt deadline, too
        resumed.trust.sweep(at)
        replayed.trust.sweep(at)
        assert_same(resumed, replayed, ex, after, at)
        assert resumed.trust.score(pa, cr, after, at).factor("incident_leak") is not None
        # One writer between the two (whoever owns the writer partition).
        await eventually(lambda: resumed.snapshots.is_writer != replayed.snapshots.is_writer,
                         "exactly one writer")  # fmt: skip
    # `enlace trust show --live` starts from the snapshot too and agrees.
    topic = trust_snapshots_topic(f"t{ex.token}.router.")
    ledger = await live_ledger(ex.settings, ex.registry, after, ex.directory, at,
                               snapshots_topic=topic)  # fmt: skip
    assert ledger.score(pa, cr, after, at).value == pytest.approx(
        resumed.trust.score(pa, cr, after, at).value, abs=1e-9
    )


async def test_a_crash_mid_snapshot_leaves_the_previous_one_and_a_new_writer_fences_the_old(
    kafka_settings: KafkaSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("trust")
    await ensure_topics(kafka_settings, [TopicSpec(topic, 1, 1, (("cleanup.policy", "compact"),))])
    txid = unique("trust-writer")
    first_blob = os.urandom(2 * CHUNK_BYTES + 1000)  # three chunks
    writer = SnapshotWriter(kafka_settings, txid, topic)
    await writer.start()
    try:
        manifest = await writer.write(first_blob, datetime.now(UTC))
        assert manifest.chunks == 3
        stored = await read_newest(kafka_settings, topic)
        assert stored is not None
        assert stored.blob == first_blob
        # A writer that dies mid-snapshot: chunks sent in a transaction never committed.
        crashing = clients.producer(kafka_settings, transactional_id=txid)
        await crashing.start()  # fences `writer`
        await crashing.begin_transaction()
        for i in range(2):
            await crashing.send_and_wait(topic, os.urandom(1000), key=chunk_key(i),
                                         headers=[(SNAPSHOT_HEADER, b"torn")])  # fmt: skip
        stored = await read_newest(kafka_settings, topic)
        assert stored is not None
        assert stored.blob == first_blob, "the open transaction is not visible"
        with pytest.raises(BrokerError):
            await writer.write(b"zombie", datetime.now(UTC))
        successor = SnapshotWriter(kafka_settings, txid, topic)
        await successor.start()  # aborts the torn transaction
        try:
            stored = await read_newest(kafka_settings, topic)
            assert stored is not None
            assert stored.blob == first_blob, "the aborted chunks never count"
            await successor.write(b"second", datetime.now(UTC))
            stored = await read_newest(kafka_settings, topic)
            assert stored is not None
            assert stored.blob == b"second"
        finally:
            await successor.stop()
            with contextlib.suppress(Exception):
                await crashing.stop()
    finally:
        await writer.stop()
