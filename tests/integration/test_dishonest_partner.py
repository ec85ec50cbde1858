"""A dishonest partner with a valid key against a real router: its evidence cannot move the
router's clock, claims cannot buy SECRET, a bulletin cannot be released twice, junk cannot grow
the trust state, and no single record stops the router."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaError

from broker.evidence import Evidence, EvidenceClass
from broker.ledger import TrustLedger
from broker.outputs import DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC
from broker.policy import Policy
from broker.router import Router
from enlace.core import clients
from enlace.core.settings import KafkaSettings
from enlace.core.topics import (
    AUDIT,
    DEADLETTER,
    ROUTER_SEEN,
    feed,
    outbound,
    owner_partition,
    receipts,
)
from schemas import headers as hdr
from schemas.codec import TRUST_EVENT, encode
from schemas.envelope import Sealed, seal, seal_event
from schemas.models import TrustEvent
from schemas.vocab import Classification, TrustEventKind
from tests.integration.test_router import (
    agreements_for,
    assert_books_balance,
    bulletin,
    read_audits,
)
from tests.samples import sample_event
from tests.support import MiniExchange, Record, build_exchange, eventually

pytestmark = pytest.mark.integration

Raw = tuple[bytes | None, bytes | None, list[tuple[str, Any]]]
DAY = timedelta(days=1)


async def new_exchange(settings: KafkaSettings, partitions: int = 1) -> MiniExchange:
    """PA shares FULL with US, TEARLINE with CR, nothing with MX (as in test_router)."""
    ex = await build_exchange(settings, partitions=partitions)
    ex.policy = Policy.model_validate({"agreements": agreements_for(ex.token)})
    return ex


@contextlib.asynccontextmanager
async def running(ex: MiniExchange, **overrides: Any) -> AsyncIterator[Router]:
    settings = ex.router_settings(**overrides)
    async with Router(settings, ex.registry, ex.policy, ex.directory) as router:
        yield router
        assert not [t.get_name() for t in router._tasks if t.done()], "a router task ended"
        assert_books_balance(router)


def metric(router: Router, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in router.metrics.registry.collect()
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def rejected(router: Router, reason: str) -> float:
    return metric(router, "enlace_router_trust_events_rejected_total", reason=reason)


def bounds_hit(router: Router, bound: str) -> float:
    return metric(router, "enlace_router_trust_bounds_hit_total", bound=bound)


def skipped(router: Router, reason: str) -> float:
    return metric(router, "enlace_router_trust_records_skipped_total", reason=reason)


def last(record: Record, name: str) -> str | None:
    """A header as text, the last if repeated: a dead letter keeps the original's headers
    (whatever duplicates a malformed record carried), the router's provenance comes last."""
    values = [v for k, v in record.headers if k == name]
    return bytes(values[-1]).decode("utf-8", "replace") if values and values[-1] else None


async def dead_letters(ex: MiniExchange, topic: str, want: int) -> list[Record]:
    return await ex.read(
        DEADLETTER,
        until=lambda f: len(f) >= want,
        keep=lambda r: last(r, DLQ_TOPIC) == topic,
        settle=1.0,
    )


async def send(
    ex: MiniExchange, topic: str, records: list[Raw], *, timestamp_ms: int | None = None
) -> list[Any]:
    """Write records as any client could (optionally with a writer-set timestamp)."""
    producer = clients.producer(ex.settings)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic, value, key=key, headers=headers, partition=0, timestamp_ms=timestamp_ms
            )
            for key, value, headers in records
        ]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


def raw(sealed: Sealed) -> Raw:
    return (sealed.key, sealed.value, sealed.headers)


def signed_by(ex: MiniExchange, agency: str, value: bytes) -> list[tuple[str, Any]]:
    key = ex.keys[agency]
    return hdr.build(origin=agency, key_id=key.key_id, sig=key.sign(value))


def self_report(ex: MiniExchange, agency: str) -> Raw:
    """A correctly signed incident about the reporter itself, encoded past the model's check."""
    datum = sample_event(TrustEventKind.INCIDENT_LEAK, reporter=agency, subject="zz-other",
                         bulletin_id=None).to_avro()  # fmt: skip
    datum["subject"] = agency
    value = encode(datum, TRUST_EVENT)
    return (datum["event_id"].encode(), value, signed_by(ex, agency, value))


def event(kind: TrustEventKind, reporter: str, subject: str, **fields: Any) -> TrustEvent:
    return sample_event(kind, reporter=reporter, subject=subject, **fields)


def incident(ex: MiniExchange, reporter: str, subject: str) -> Raw:
    found = event(TrustEventKind.INCIDENT_MISHANDLING, reporter, subject, bulletin_id=None)
    return raw(seal_event(found, ex.keys[reporter]))


async def test_evidence_is_dated_by_the_router_never_by_the_partner(
    kafka_settings: KafkaSettings,
) -> None:
    ex = await new_exchange(kafka_settings)
    pa, us = ex.agency("PA"), ex.agency("US")
    async with running(ex) as router:
        b = seal(bulletin(ex), ex.keys[pa])
        await ex.publish(pa, b)
        await ex.read(feed(us), until=lambda f: len(f) >= 1)
        now = datetime.now(UTC)
        useful = TrustEventKind.FEEDBACK_USEFUL
        skewed = [
            seal_event(
                event(useful, us, pa, bulletin_id=b.key.decode(), occurred_at=at), ex.keys[us]
            )
            for at in (now + 30 * DAY, now - 60 * DAY)
        ]
        # Within the tolerance (5 min) so it counts, yet it must not date the evidence.
        ahead = now + timedelta(minutes=4)
        honest = seal_event(
            event(useful, us, pa, bulletin_id=b.key.decode(), occurred_at=ahead), ex.keys[us]
        )
        await send(ex, receipts(us), [raw(s) for s in skewed])
        far_future_ms = int((now + 365 * DAY).timestamp() * 1000)
        [meta] = await send(ex, receipts(us), [raw(honest)], timestamp_ms=far_future_ms)

        dead = await dead_letters(ex, receipts(us), want=2)
        assert [last(r, DLQ_REASON) for r in dead] == ["clock_skew", "clock_skew"]
        assert sorted(r.value for r in dead) == sorted(s.value for s in skewed)
        assert rejected(router, "clock_skew") == 2
        await eventually(lambda: router.trust.events_applied >= 1, "the honest feedback is folded")
        evidence = router.trust.ledger.evidence(pa, us)
        assert evidence is not None
        assert evidence.as_of <= time.time() + 1.0, "a partner moved the pair's clock ahead"

    assert meta.timestamp_type == 1, "receipts topics use LogAppendTime"
    [back] = await ex.read(
        receipts(us), until=lambda f: len(f) >= 1, keep=lambda r: r.value == honest.value
    )
    assert back.timestamp_type == 1
    assert abs(back.timestamp / 1000 - time.time()) < 60, "the broker's clock, not the writer's"


async def test_claims_alone_never_buy_secret(kafka_settings: KafkaSettings) -> None:
    ex = await new_exchange(kafka_settings)
    pa, us = ex.agency("PA"), ex.agency("US")
    policy = ex.policy
    secret = policy.thresholds[Classification.SECRET]
    assert policy.agreement(pa, us).level.value == "full"

    # Sanity: the same 20 releases and 20 'actioned' claims, unbudgeted, would reach SECRET.
    unbounded = TrustLedger(policy.evidence.decay)
    at = datetime.now(UTC)
    for _ in range(20):
        unbounded.record_release(pa, us, at)
        unbounded.add(Evidence(pa, us, EvidenceClass.FEEDBACK_ACTIONED, at))
    assert policy.reached(unbounded.score(pa, us, policy, at).value) is Classification.SECRET

    async with running(ex) as router:
        sealed = [seal(bulletin(ex), ex.keys[pa]) for _ in range(20)]
        await ex.publish(pa, sealed)
        await ex.read(feed(us), until=lambda f: len(f) >= 20)
        claims = [
            seal_event(
                event(TrustEventKind.FEEDBACK_ACTIONED, us, pa, bulletin_id=s.key.decode()),
                ex.keys[us],
            )
            for s in sealed
        ]
        await send(ex, receipts(us), [raw(c) for c in claims])
        await eventually(lambda: router.trust.events_applied >= 20, "20 claims folded")

        score = router.trust.score(pa, us, policy, datetime.now(UTC))
        assert score.value < secret
        assert policy.reached(score.value) is not Classification.SECRET
        actioned = score.factor("feedback_actioned")
        assert actioned is None or actioned.value < 0.5, f"claims counted: {actioned}"
        assert bounds_hit(router, "claims") == 20


async def test_a_bulletin_is_released_once_whatever_partition_it_is_written_to(
    kafka_settings: KafkaSettings,
) -> None:
    ex = await new_exchange(kafka_settings, partitions=2)
    pa, us, cr, mx = (ex.agency(c) for c in ("PA", "US", "CR", "MX"))
    twice_placed = seal(bulletin(ex), ex.keys[pa])
    twice_sent = seal(bulletin(ex), ex.keys[pa])
    owner = owner_partition(twice_placed.key.decode(), 2)
    async with running(ex):
        await ex.publish_raw(outbound(pa), [raw(twice_placed)], partition=owner)
        await ex.publish_raw(outbound(pa), [raw(twice_placed)], partition=1 - owner)
        owner_b = owner_partition(twice_sent.key.decode(), 2)
        await ex.publish_raw(outbound(pa), [raw(twice_sent), raw(twice_sent)], partition=owner_b)

        dead = await dead_letters(ex, outbound(pa), want=1)
        assert [last(r, DLQ_REASON) for r in dead] == ["wrong_partition"]
        assert last(dead[0], DLQ_PARTITION) == str(1 - owner)
        ids = {twice_placed.key.decode(), twice_sent.key.decode()}
        audits = await read_audits(ex, ids, want=7)

    decisions = Counter((a.bulletin_id, a.decision) for a in audits)
    placed, sent = twice_placed.key.decode(), twice_sent.key.decode()
    assert decisions == {
        (placed, "FULL"): 1, (placed, "TEARLINE"): 1, (placed, "WITHHELD"): 1,
        (sent, "FULL"): 1, (sent, "TEARLINE"): 1, (sent, "WITHHELD"): 1, (sent, "DUPLICATE"): 1,
    }  # fmt: skip
    for partner in (us, cr):
        records = await ex.read(feed(partner), until=lambda f: len(f) >= 2, settle=1.0)
        assert Counter(r.key.decode() for r in records) == dict.fromkeys(ids, 1), partner
    assert await ex.read(feed(mx), until=lambda _f: False, within=1.0) == []


async def test_a_flood_of_junk_keeps_trust_state_bounded(kafka_settings: KafkaSettings) -> None:
    ex = await new_exchange(kafka_settings)
    pa, us, cr = ex.agency("PA"), ex.agency("US"), ex.agency("CR")
    # Receipts for bulletins never released (orphans), then 1000 counted incidents (the first
    # 500 sent twice in a row), then incidents about no registry agency and self-reports.
    receipt = TrustEventKind.RECEIPT
    flood = [raw(seal_event(event(receipt, us, pa), ex.keys[us])) for _ in range(2000)]
    for i in range(1000):
        counted = incident(ex, us, pa)
        flood.extend([counted, counted] if i < 500 else [counted])
    for _ in range(500):
        flood.extend([incident(ex, us, "zz-nobody"), incident(ex, us, "zz-nobody")])
        flood.append(self_report(ex, us))
    assert len(flood) == 5000

    async with running(ex, trust_orphans_per_reporter=100, trust_event_ids_per_reporter=200) as r:
        flooding = asyncio.create_task(send(ex, receipts(us), flood))
        await eventually(lambda: r.trust.orphans() > 0, "the flood is being folded")
        other = seal(bulletin(ex, "CR"), ex.keys[cr])
        async with asyncio.timeout(20):  # routed while the flood is folded, not after it
            await ex.publish(cr, other)
            audits = await read_audits(ex, {other.key.decode()}, want=3)
        assert len(audits) == 3, "another agency's bulletin was not routed during the flood"
        await flooding
        await eventually(
            lambda: r.trust.events_applied >= 1000 and rejected(r, "invalid") >= 500,
            "the whole flood is folded",
        )
        assert r.trust.events_applied == 1000, "only the 1000 distinct incidents count"
        assert r.trust.orphans() <= 100
        assert r.trust.remembered_ids() <= 200
        assert bounds_hit(r, "orphans") == 1900
        assert bounds_hit(r, "event_ids") > 0
        assert rejected(r, "unknown_agency") == 1000
        assert rejected(r, "invalid") == 500, "self-reports are refused (by the model first)"
        ignored = metric(r, "enlace_router_trust_events_ignored_total", reason="duplicate")
        assert ignored == 500


async def test_no_single_record_stops_the_router(kafka_settings: KafkaSettings) -> None:
    ex = await new_exchange(kafka_settings)
    pa, us = ex.agency("PA"), ex.agency("US")
    # The replay index is read when partitions are assigned: garbage goes in before start.
    await send(ex, ROUTER_SEEN, [(f"{ex.token}/garbage".encode(), b"abc", [])])
    with pytest.raises(KafkaError):  # a compacted topic refuses a record without a key
        await send(ex, ROUTER_SEEN, [(None, b"no key", [])])

    key = ex.keys[us]
    good = seal_event(event(TrustEventKind.INCIDENT_LEAK, us, pa, bulletin_id=None), key)
    truncated = good.value[: len(good.value) // 2]
    unknown_fp = b"\xc3\x01" + b"\x00" * 8 + good.value[10:]
    nonsense = b"\x00\x01 not avro at all" * 5
    long_header = b"x" * 65_536
    junk: list[tuple[str, Raw]] = [
        ("bad_header", (b"k", None, [])),
        ("bad_magic", (b"k", b"", signed_by(ex, us, b""))),
        ("bad_header", (None, nonsense, [])),
        ("bad_magic", (b"k", nonsense, signed_by(ex, us, nonsense))),
        ("truncated", (b"k", truncated, signed_by(ex, us, truncated))),
        ("unknown_fingerprint", (b"k", unknown_fp, signed_by(ex, us, unknown_fp))),
        ("bad_header", (good.key, good.value, [*good.headers, (hdr.ORIGIN, us.encode())])),
        ("bad_header", (good.key, good.value, [(hdr.ORIGIN, long_header), *good.headers[1:]])),
        ("bad_header", (good.key, good.value, [*good.headers[:2], (hdr.SIG, long_header)])),
        ("key_not_of_agency", (good.key, good.value, [(hdr.ORIGIN, None), *good.headers[1:]])),
        ("unknown_agency", incident(ex, us, "zz-nobody")),
        ("invalid", self_report(ex, us)),
    ]
    expected = Counter(reason for reason, _ in junk)
    old, young = incident(ex, us, pa), incident(ex, us, pa)
    audit_junk: list[Raw] = [
        (b"a", b"\xc3\x01garbage", [("enlace-audit", b"FULL|a|b|c|99999999999999999999")]),
        (b"a", b"garbage", [("enlace-audit", b"FULL|x"), ("enlace-audit", b"FULL|x")]),
        (None, b"", []),
        (b"a", b"\xff" * 40, [("enlace-audit", b"\xff\xfe|" * 5)]),
    ]

    async with running(ex) as router:
        await eventually(
            lambda: skipped(router, "seen_malformed") >= 1, "the bad seen entry skipped"
        )
        before = {r: skipped(router, r) for r in ("audit_undecodable", "audit_error")}
        await send(ex, receipts(us), [record for _, record in junk])
        await send(ex, receipts(us), [old], timestamp_ms=1)
        await send(ex, receipts(us), [young], timestamp_ms=2**62)
        await send(ex, AUDIT, audit_junk)
        ok = seal(bulletin(ex), ex.keys[pa])
        await ex.publish(pa, ok)

        audits = await read_audits(ex, {ok.key.decode()}, want=3)
        assert Counter(a.decision for a in audits) == {"FULL": 1, "TEARLINE": 1, "WITHHELD": 1}
        await eventually(
            lambda: all(rejected(router, r) >= n for r, n in expected.items()),
            "every junk receipt rejected",
        )
        await eventually(lambda: router.trust.events_applied >= 2, "both timestamped events count")
        assert Counter({r: int(rejected(router, r)) for r in expected}) == expected
        await eventually(
            lambda: (
                skipped(router, "audit_undecodable") - before["audit_undecodable"] >= 3
                and skipped(router, "audit_error") - before["audit_error"] >= 1
            ),
            "the audit garbage skipped",
        )
        dead = await dead_letters(ex, receipts(us), want=len(junk))
        assert Counter(last(r, DLQ_REASON) for r in dead) == expected
        evidence = router.trust.ledger.evidence(pa, us)
        assert evidence is not None
        assert evidence.as_of <= time.time() + 1.0
