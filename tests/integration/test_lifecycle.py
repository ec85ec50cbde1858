"""Recalls and releases when trust is earned, through the real router on a real broker.

Played as the exchange's agencies would with plain Kafka clients: the originator recalls, a
partner recalls what is not its own, a forger signs with the wrong key; a partner earns trust
with on-time receipts until its score crosses the CONFIDENTIAL threshold, and the router is
SIGKILLed around the crossing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.policy import Policy
from broker.router import Router
from enlace.core.settings import KafkaSettings
from enlace.core.topics import AUDIT, DEADLETTER, feed, receipts
from schemas import headers as hdr
from schemas.codec import decode_audit
from schemas.envelope import Sealed, seal, seal_event
from schemas.recall import BulletinRecall, open_recall, seal_recall
from schemas.vocab import Classification, TrustEventKind
from tests.faults.routers import RouterProcess
from tests.integration.test_router import assert_books_balance
from tests.samples import routed_bulletin, sample_event
from tests.support import MiniExchange, Record, audit_of, build_exchange, eventually

pytestmark = pytest.mark.integration


def lifecycle_policy(ex: MiniExchange) -> dict[str, Any]:
    """cr starts at 0.5 (CONFIDENTIAL needs 0.6) on a weak prior, so four on-time receipts
    (0.05 each) carry it over: 0.45 / 0.70 = 0.64. Reciprocity off: the score moves only by
    what the test sends."""
    pa, us, cr, mx = (ex.agency(c) for c in ("PA", "US", "CR", "MX"))
    return {
        "agreements": [
            {"between": [pa, us], "level": "full"},
            {"between": [pa, cr], "level": "standard"},
            {"between": [pa, mx], "level": "none"},
        ],
        "levels": {"standard": {"prior_mean": 0.5, "prior_strength": 0.5, "categories": "all"}},
        "evidence": {"reciprocity": {"max_weight": 0.0}, "claims": {"burst": 0.0}},
        "rerelease": {"enabled": True},
    }


@pytest.fixture
async def exchange(kafka_settings: KafkaSettings) -> MiniExchange:
    ex = await build_exchange(kafka_settings)
    ex.policy = Policy.model_validate(lifecycle_policy(ex))
    return ex


@pytest.fixture
async def router(exchange: MiniExchange) -> AsyncIterator[Router]:
    settings = exchange.router_settings(rerelease_interval_seconds=0.3)
    async with Router(settings, exchange.registry, exchange.policy, exchange.directory) as running:
        yield running
        assert_books_balance(running)


def recall_of(
    ex: MiniExchange, origin: str, bulletin_id: str, reason: str = "wrong vessel"
) -> Sealed:
    recall = BulletinRecall.new(origin, bulletin_id, reason, datetime.now(UTC))
    return seal_recall(recall, ex.keys[origin])


def releases(records: list[Record]) -> list[str | None]:
    return [hdr.text(r.headers, hdr.RELEASE) for r in records]


async def audits_for(ex: MiniExchange, bulletin_id: str, decision: str) -> list[Any]:
    def kept(r: Record) -> bool:
        audit = audit_of(r)
        return audit is not None and audit.bulletin_id == bulletin_id and audit.decision == decision

    found = await ex.read(AUDIT, until=lambda f: len(f) >= 1, keep=kept, settle=0.5)
    return [decode_audit(r.value) for r in found]


async def dead_letters(ex: MiniExchange, want: int) -> dict[str, str | None]:
    found = await ex.read(DEADLETTER, until=lambda f: len(f) >= want, settle=0.5)
    return {
        hdr.text(r.headers, "enlace-dlq-topic") or "": hdr.text(r.headers, "enlace-dlq-reason")
        for r in found
    }


async def test_a_recall_reaches_exactly_the_recipients_and_bad_recalls_are_dead_lettered(
    exchange: MiniExchange, router: Router
) -> None:
    ex = exchange
    pa, us, cr, mx = (ex.agency(c) for c in ("PA", "US", "CR", "MX"))
    b = seal(routed_bulletin(pa), ex.keys[pa])
    await ex.publish(pa, b)
    assert releases(await ex.read(feed(us), until=lambda f: len(f) >= 1)) == ["full"]
    assert releases(await ex.read(feed(cr), until=lambda f: len(f) >= 1)) == ["tearline"]
    bulletin_id = b.key.decode()

    recall = recall_of(ex, pa, bulletin_id)
    await ex.publish(pa, recall)
    for partner in (us, cr):
        got = await ex.read(feed(partner), until=lambda f: len(f) >= 2, settle=0.5)
        assert releases(got) == [hdr.text(got[0].headers, hdr.RELEASE), "recall"]
        forwarded = got[1]
        assert forwarded.value == recall.value, "the originator's exact bytes"
        opened, signed = open_recall(
            ex.directory, forwarded.value, forwarded.headers, at=datetime.now(UTC)
        )
        assert (opened.bulletin_id, signed.origin) == (bulletin_id, pa)
    assert await ex.read(feed(mx), until=lambda _f: False, within=1.0) == [], "mx never had it"
    (audit,) = await audits_for(ex, bulletin_id, "RECALLED")
    assert sorted(d.partner for d in audit.decisions) == sorted([us, cr])
    assert audit.rule == "recall"

    # The attacks: a partner recalls pa's bulletin on its own topic; pa recalls an id nobody
    # routed; a forger signs a recall "from pa" with cr's key; and pa recalls twice.
    foreign = recall_of(ex, us, bulletin_id, "not mine to recall")
    await ex.publish(us, foreign)
    await ex.publish(pa, recall_of(ex, pa, str(uuid.uuid4())))
    forged_body = BulletinRecall.new(pa, bulletin_id, "forged", datetime.now(UTC))
    forged = seal_recall(forged_body, ex.keys[pa])
    forged_headers = hdr.build(origin=pa, key_id=ex.keys[cr].key_id,
                               sig=ex.keys[cr].sign(forged.value))  # fmt: skip
    await ex.publish_raw(f"enlace.outbound.{cr}", [(forged.key, forged.value, forged_headers)])
    await ex.publish(pa, recall_of(ex, pa, bulletin_id, "again"))

    reasons = await dead_letters(ex, want=3)
    assert reasons[f"enlace.outbound.{us}"] == "recall_not_originator"
    assert reasons[f"enlace.outbound.{pa}"] == "recall_unknown"
    assert reasons[f"enlace.outbound.{cr}"] == "forged_origin"
    duplicate = await audits_for(ex, bulletin_id, "RECALLED")
    assert [a.rule for a in duplicate] == ["recall", "recall_duplicate"]

    # Other traffic flows, and nothing more reached anyone for the recalled bulletin.
    nxt = seal(routed_bulletin(pa), ex.keys[pa])
    await ex.publish(pa, nxt)
    got = await ex.read(feed(us), until=lambda f: len(f) >= 3, settle=1.0)
    assert [r.key for r in got] == [b.key, b.key, nxt.key]
    assert router.metrics.recalls.labels(pa, "forwarded")._value.get() == 1


def receipt_for(ex: MiniExchange, reporter: str, originator: str, bulletin_id: str) -> Sealed:
    event = sample_event(TrustEventKind.RECEIPT, reporter=reporter, subject=originator,
                         bulletin_id=bulletin_id)  # fmt: skip
    return seal_event(event, ex.keys[reporter])


def write_config(ex: MiniExchange, workdir: Path) -> None:
    agencies = [a.model_dump() for a in ex.registry]
    (workdir / "agencies.yaml").write_text(yaml.safe_dump({"agencies": agencies}))
    (workdir / "policy.yaml").write_text(yaml.safe_dump(lifecycle_policy(ex)))
    ex.directory.dump(workdir / "keys.yaml")


async def test_earned_trust_releases_the_withheld_once_across_a_router_sigkill(
    exchange: MiniExchange, tmp_path: Path
) -> None:
    ex = exchange
    pa, us, cr = (ex.agency(c) for c in ("PA", "US", "CR"))
    write_config(ex, tmp_path)
    env = {"ENLACE_RERELEASE_INTERVAL_SECONDS": "0.3"}
    first = RouterProcess(ex, tmp_path, "router-1", **env)
    second: RouterProcess | None = None
    third: RouterProcess | None = None
    try:
        earned = seal(routed_bulletin(pa), ex.keys[pa])  # cr: TEARLINE by its score
        await ex.publish(pa, earned)
        got = await ex.read(feed(cr), until=lambda f: len(f) >= 1, within=60)
        assert releases(got) == ["tearline"]
        ruled = seal(routed_bulletin(pa, releasable_to=(us,)), ex.keys[pa])  # not cr's
        soon = datetime.now(UTC) + timedelta(seconds=3)
        expiring = seal(routed_bulletin(pa, valid_until=soon), ex.keys[pa])
        plain = [
            seal(routed_bulletin(pa, classification=Classification.UNCLASSIFIED), ex.keys[pa])
            for _ in range(4)
        ]
        await ex.publish(pa, [ruled, expiring, *plain])
        got = await ex.read(feed(cr), until=lambda f: len(f) >= 6, within=30)
        assert releases(got) == ["tearline", "tearline", *["full"] * 4]
        await eventually(lambda: datetime.now(UTC) > soon + timedelta(seconds=1), "expiry")

        # cr earns it: four on-time receipts, then the router dies around the crossing.
        await ex.publish_raw(
            receipts(cr),
            [(s.key, s.value, s.headers) for s in
             (receipt_for(ex, cr, pa, p.key.decode()) for p in plain)],
        )  # fmt: skip
        await first.kill()
        second = RouterProcess(ex, tmp_path, "router-2", **env)

        def full_copies(found: list[Record]) -> list[Record]:
            return [r for r in found if hdr.text(r.headers, hdr.RELEASE) == "full"
                    and r.key in {earned.key, ruled.key, expiring.key}]  # fmt: skip

        after = await ex.read(feed(cr), until=lambda f: len(full_copies(f)) >= 1, within=60,
                              settle=3.0)  # fmt: skip
        assert [r.key for r in full_copies(after)] == [earned.key], "once, and only the earned one"
        assert full_copies(after)[0].value == earned.value
        (audit,) = await audits_for(ex, earned.key.decode(), "RERELEASED")
        assert [(d.partner, d.decision, d.rule) for d in audit.decisions] == [
            (cr, "FULL", "rerelease_full")
        ]
        assert audit.decisions[0].score is not None
        assert audit.decisions[0].score >= 0.6

        # Killed after the release committed: the next router reads the replay index and
        # releases nothing again (it is up once it routes a new bulletin).
        await second.kill()
        third = RouterProcess(ex, tmp_path, "router-3", **env)
        probe = seal(routed_bulletin(pa), ex.keys[pa])
        await ex.publish(pa, probe)
        final = await ex.read(feed(cr), until=lambda f: any(r.key == probe.key for r in f),
                              within=60, settle=2.0)  # fmt: skip
        assert [r.key for r in full_copies(final)] == [earned.key]
        assert releases([r for r in final if r.key == probe.key]) == ["full"], "cr earned it"
    finally:
        for proc in (first, second, third):
            if proc is not None and proc.proc.poll() is None:
                proc.kill_now()
