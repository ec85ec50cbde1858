"""The router against the real broker: releases, audit, dead letters, replay, accounting."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.live_trust import live_ledger
from broker.policy import Policy
from broker.router import Router
from enlace.core.settings import KafkaSettings
from enlace.core.topics import AUDIT, DEADLETTER, feed, outbound, receipts
from schemas import headers as hdr
from schemas.agency_key import AgencyKey
from schemas.codec import decode_audit, decode_bulletin, encode_trust_event
from schemas.envelope import seal, seal_event
from schemas.key_directory import KeyDirectory
from schemas.vocab import TrustEventKind
from tests.samples import routed_bulletin, sample_event
from tests.support import MiniExchange, Record, audit_of, build_exchange, decisions_of

pytestmark = pytest.mark.integration

AGREEMENTS = [
    {"between": ["pa-X", "us-X"], "level": "full"},
    {"between": ["pa-X", "cr-X"], "level": "standard"},
    {"between": ["pa-X", "mx-X"], "level": "none"},
]


def agreements_for(token: str) -> list[dict[str, Any]]:
    def fix(agency: str) -> str:
        return agency.replace("-X", f"-t{token}")

    return [{**a, "between": [fix(x) for x in a["between"]]} for a in AGREEMENTS]


@pytest.fixture
async def exchange(kafka_settings: KafkaSettings) -> MiniExchange:
    ex = await build_exchange(kafka_settings)
    ex.policy = Policy.model_validate({"agreements": agreements_for(ex.token)})
    return ex


@pytest.fixture
async def router(exchange: MiniExchange) -> AsyncIterator[Router]:
    async with Router(
        exchange.router_settings(max_record_bytes=60_000),
        exchange.registry,
        exchange.policy,
        exchange.directory,
    ) as running:
        yield running
        assert_books_balance(running)


def assert_books_balance(router: Router) -> None:
    """Every committed input record is exactly one of: routed, duplicate, dead-lettered."""

    def total(name: str) -> float:
        return sum(
            sample.value
            for metric in router.metrics.registry.collect()
            for sample in metric.samples
            if sample.name == name
        )

    def recalls(*outcomes: str) -> float:
        return sum(
            sample.value
            for metric in router.metrics.registry.collect()
            for sample in metric.samples
            if sample.name == "enlace_router_recalls_total" and sample.labels["outcome"] in outcomes
        )

    consumed = total("enlace_router_records_consumed_total")
    accounted = (
        total("enlace_router_bulletins_routed_total")
        + total("enlace_router_duplicates_total")
        + total("enlace_router_rejected_total")
        + recalls("forwarded", "duplicate")  # a dead-lettered recall is in "rejected"
    )
    assert consumed == accounted, (
        f"in {consumed} != routed + duplicates + dead letters + recalls {accounted}"
    )
    routed = total("enlace_router_bulletins_routed_total")
    decisions = total("enlace_router_releases_total")
    assert decisions == routed * (len(router.registry) - 1), "one decision per partner"


def bulletin(ex: MiniExchange, origin_country: str = "PA", **overrides: Any) -> Any:
    return routed_bulletin(ex.agency(origin_country), **overrides)


def audits_of(records: list[Record], bulletin_ids: set[str]) -> list[Any]:
    decoded = [a for r in records for a in decode_audit(r.value).per_partner()]
    return [a for a in decoded if a.bulletin_id in bulletin_ids]


async def read_audits(ex: MiniExchange, bulletin_ids: set[str], want: int) -> list[Any]:
    def kept(r: Record) -> bool:
        audit = audit_of(r)
        return audit is not None and audit.bulletin_id in bulletin_ids

    def enough(found: list[Record]) -> bool:
        return sum(len(decisions_of(r)) for r in found) >= want

    records = await ex.read(AUDIT, until=enough, keep=kept, settle=1.0)
    return [a for r in records for a in decisions_of(r)]


async def test_full_tearline_and_withheld_releases(exchange: MiniExchange, router: Router) -> None:
    ex = exchange
    pa, us, cr, mx = (ex.agency(c) for c in ("PA", "US", "CR", "MX"))
    b = bulletin(ex)
    sealed = seal(b, ex.keys[pa])
    await ex.publish(pa, sealed)

    audits = await read_audits(ex, {b.bulletin_id}, want=3)
    by_partner = {a.partner: a for a in audits}
    assert len(audits) == 3, "one audit record per partner, no more"
    assert by_partner[us].decision == "FULL"
    assert by_partner[us].rule == "score_full"
    assert by_partner[cr].decision == "TEARLINE"
    assert by_partner[mx].decision == "WITHHELD"
    assert by_partner[mx].rule == "category_not_shared"
    assert by_partner[us].factors, "the score's factors are kept in the audit"

    full = await ex.read(feed(us), until=lambda f: len(f) >= 1, settle=0.5)
    assert [r.value for r in full] == [sealed.value]
    assert hdr.text(full[0].headers, hdr.RELEASE) == "full"
    ex.directory.verify(pa, ex.keys[pa].key_id, full[0].value, hdr.signature(full[0].headers),
                        at=b.issued_at)  # fmt: skip

    tear = await ex.read(feed(cr), until=lambda f: len(f) >= 1, settle=0.5)
    assert [r.value for r in tear] == [sealed.tearline_value]
    assert hdr.text(tear[0].headers, hdr.RELEASE) == "tearline"
    ex.directory.verify(pa, ex.keys[pa].key_id, tear[0].value, hdr.signature(tear[0].headers),
                        at=b.issued_at)  # fmt: skip
    projected = decode_bulletin(tear[0].value)
    assert projected.details is None
    assert projected.entities == ()

    assert await ex.read(feed(mx), until=lambda _f: False, within=1.0) == []
    assert await ex.read(feed(pa), until=lambda _f: False, within=0.5) == []


async def test_every_dead_letter_reason_and_the_next_bulletin_still_routes(
    exchange: MiniExchange, router: Router
) -> None:
    ex = exchange
    pa, cr = ex.agency("PA"), ex.agency("CR")
    pa_key, cr_key = ex.keys[pa], ex.keys[cr]
    good = seal(bulletin(ex), pa_key)

    forged = seal(bulletin(ex, "CR"), cr_key)  # cr's bulletin, cr's key, on pa's topic
    wrong_key = seal(bulletin(ex), pa_key)
    wrong_key_headers = hdr.build(
        origin=pa, key_id=cr_key.key_id, sig=cr_key.sign(wrong_key.value),
        sig_tearline=cr_key.sign(wrong_key.tearline_value),
    )  # fmt: skip
    tampered = seal(bulletin(ex), pa_key)
    tampered_value = bytearray(tampered.value)
    tampered_value[-3] ^= 0x01
    unknown_fp = bytearray(seal(bulletin(ex), pa_key).value)
    unknown_fp[2:10] = b"\x00" * 8
    garbage = b"\x00\x01garbage that is not avro" * 3
    oversize = b"\xc3\x01" + b"x" * 70_000
    skewed = seal(bulletin(ex, issued_at=datetime.now(UTC) + timedelta(hours=2)), pa_key)
    original = bulletin(ex)
    conflict_first = seal(original, pa_key)
    conflict_second = seal(original.model_copy(update={"title": "Other title"}), pa_key)

    def signed(value: bytes) -> list[tuple[str, bytes]]:
        return hdr.build(origin=pa, key_id=pa_key.key_id, sig=pa_key.sign(value),
                         sig_tearline=pa_key.sign(value))  # fmt: skip

    cases: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = [
        ("forged_origin", forged.key, forged.value, forged.headers),
        ("key_not_of_agency", wrong_key.key, wrong_key.value, wrong_key_headers),
        ("bad_signature", tampered.key, bytes(tampered_value), tampered.headers),
        ("unknown_fingerprint", b"fp", bytes(unknown_fp), signed(bytes(unknown_fp))),
        ("bad_magic", b"garbage", garbage, signed(garbage)),
        ("oversize", b"big", oversize, signed(oversize)),
        ("clock_skew", skewed.key, skewed.value, skewed.headers),
        ("bad_header", good.key, good.value, [h for h in good.headers if h[0] != hdr.SIG]),
    ]
    records = [(c[1], c[2], c[3]) for c in cases]
    records.append((conflict_first.key, conflict_first.value, conflict_first.headers))
    records.append((conflict_second.key, conflict_second.value, conflict_second.headers))
    records.append((good.key, good.value, good.headers))
    await ex.publish_raw(outbound(pa), records)

    expected = Counter([c[0] for c in cases] + ["id_conflict"])
    dead = await ex.read(
        DEADLETTER,
        until=lambda f: len(f) >= sum(expected.values()),
        keep=lambda r: hdr.text(r.headers, "enlace-dlq-topic") == outbound(pa),
        settle=1.0,
    )
    reasons = Counter(hdr.text(r.headers, "enlace-dlq-reason") for r in dead)
    assert reasons == expected
    bad_sig = next(r for r in dead if hdr.text(r.headers, "enlace-dlq-reason") == "bad_signature")
    assert bad_sig.value == bytes(tampered_value), "the original bytes are kept"
    assert hdr.text(bad_sig.headers, "enlace-dlq-partition") == "0"
    assert hdr.text(bad_sig.headers, "enlace-dlq-message")

    routed_ids = {good.key.decode(), conflict_first.key.decode()}
    audits = await read_audits(ex, routed_ids, want=6)
    assert Counter(a.bulletin_id for a in audits) == dict.fromkeys(routed_ids, 3)


async def test_revoked_key_is_dead_lettered(exchange: MiniExchange) -> None:
    ex = exchange
    pa = ex.agency("PA")
    old = AgencyKey.generate(
        pa, key_id=f"{pa}-old", valid_from=datetime.now(UTC) - timedelta(days=9)
    )
    directory = KeyDirectory.from_keys([*ex.keys.values(), old]).revoke(old.key_id)
    async with Router(ex.router_settings(), ex.registry, ex.policy, directory):
        revoked = seal(bulletin(ex), old)
        await ex.publish(pa, revoked)
        dead = await ex.read(
            DEADLETTER,
            until=lambda f: len(f) >= 1,
            keep=lambda r: hdr.text(r.headers, "enlace-dlq-topic") == outbound(pa),
        )
    assert [hdr.text(r.headers, "enlace-dlq-reason") for r in dead] == ["revoked_key"]


async def test_duplicate_is_audited_once_and_not_released_again(
    exchange: MiniExchange, router: Router
) -> None:
    ex = exchange
    pa, us = ex.agency("PA"), ex.agency("US")
    sealed = seal(bulletin(ex), ex.keys[pa])
    await ex.publish(pa, [sealed, sealed])
    audits = await read_audits(ex, {sealed.key.decode()}, want=4)
    assert Counter(a.decision for a in audits) == {"FULL": 1, "TEARLINE": 1, "WITHHELD": 1,
                                                   "DUPLICATE": 1}  # fmt: skip
    # A restart keeps the memory: the same bytes again are still a duplicate.
    await router.stop()
    async with Router(ex.router_settings(), ex.registry, ex.policy, ex.directory):
        await ex.publish(pa, sealed)
        audits = await read_audits(ex, {sealed.key.decode()}, want=5)
    assert Counter(a.decision for a in audits)["DUPLICATE"] == 2
    released = await ex.read(feed(us), until=lambda _f: False, within=1.5)
    assert len(released) == 1


async def test_trust_events_move_decisions_and_bad_ones_are_dead_lettered(
    exchange: MiniExchange, router: Router
) -> None:
    ex = exchange
    pa, us, cr = ex.agency("PA"), ex.agency("US"), ex.agency("CR")
    first = seal(bulletin(ex), ex.keys[pa])
    await ex.publish(pa, first)
    audits = await read_audits(ex, {first.key.decode()}, want=3)
    assert {a.partner: a.decision for a in audits}[us] == "FULL"

    leak = sample_event(TrustEventKind.INCIDENT_LEAK, reporter=pa, subject=us, bulletin_id=None)
    forged = sample_event(TrustEventKind.FEEDBACK_ACTIONED, reporter=us, subject=pa,
                          bulletin_id=first.key.decode())  # fmt: skip
    forged_value = encode_trust_event(forged)
    forged_headers = hdr.build(  # claims us, signed with cr's key
        origin=us, key_id=ex.keys[cr].key_id, sig=ex.keys[cr].sign(forged_value)
    )
    leak_sealed = seal_event(leak, ex.keys[pa])
    await ex.publish_raw(receipts(pa), [(leak_sealed.key, leak_sealed.value, leak_sealed.headers)])
    await ex.publish_raw(receipts(us), [(forged.event_id.encode(), forged_value, forged_headers)])

    dead = await ex.read(
        DEADLETTER,
        until=lambda f: len(f) >= 1,
        keep=lambda r: hdr.text(r.headers, "enlace-dlq-topic") == receipts(us),
    )
    assert [hdr.text(r.headers, "enlace-dlq-reason") for r in dead] == ["key_not_of_agency"]

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while router.trust.score(pa, us, ex.policy, datetime.now(UTC)).value >= 0.35:
        assert loop.time() < deadline, "the leak never reached the router's trust state"
        await asyncio.sleep(0.1)

    # `enlace trust show/explain --live` rebuild the same state from Kafka alone.
    rebuilt = await live_ledger(ex.settings, ex.registry, ex.policy, ex.directory,
                                datetime.now(UTC))  # fmt: skip
    assert rebuilt.score(pa, us, ex.policy, datetime.now(UTC)).value < 0.35

    second = seal(bulletin(ex), ex.keys[pa])
    await ex.publish(pa, second)
    audits = await read_audits(ex, {second.key.decode()}, want=3)
    after = {a.partner: a for a in audits}[us]
    assert after.decision == "TEARLINE"
    assert after.score is not None
    assert after.score < 0.35
    assert any(f.name == "incident_leak" for f in after.factors)
