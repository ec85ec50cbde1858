"""Wire format 2 through the real router on a real Kafka: every partner gets the level trust
allows, sealed, and opens it with its own key; nothing the exchange wrote to Kafka carries a
bulletin's content in clear; a partner not sealed for gets nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from broker.router import Router
from consumers.records import Delivered, FeedRecord, Quarantined, Release
from consumers.verify import NO_PRIVATE_KEY, open_feed_record
from enlace.core.topics import AUDIT, DEADLETTER, ROUTER_SEEN, feed, outbound
from schemas.sealed import recipients_of, seal_sealed
from schemas.sealing import BoxCache
from tests.integration.test_router import (
    assert_books_balance,
    bulletin,
    exchange,  # noqa: F401 - the fixture
    read_audits,
)
from tests.support import MiniExchange, audit_of

pytestmark = pytest.mark.integration


@pytest.fixture
async def router(exchange: MiniExchange) -> AsyncIterator[Router]:  # noqa: F811 - uses the fixture
    async with Router(
        exchange.router_settings(max_record_bytes=60_000),
        exchange.registry,
        exchange.policy,
        exchange.directory,
    ) as running:
        yield running
        assert_books_balance(running)


async def test_sealed_bulletins_are_released_sealed_and_open_only_for_their_partner(
    exchange: MiniExchange,  # noqa: F811 - the fixture
    router: Router,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ex = exchange
    pa, us, cr, mx = (ex.agency(c) for c in ("PA", "US", "CR", "MX"))
    b = bulletin(ex, details="the vessel LUNA NEGRA sails at dawn")
    now = b.issued_at
    # Sealed for US and CR only: MX, though a registry partner, has no wrap.
    record = seal_sealed(
        b, ex.keys[pa], recipients_of(ex.directory, (us, cr), now), boxes=BoxCache()
    )
    await ex.publish(pa, record)

    audits = {a.partner: a for a in await read_audits(ex, {b.bulletin_id}, want=3)}
    assert audits[us].decision == "FULL"
    assert audits[cr].decision == "TEARLINE"
    assert audits[mx].decision == "WITHHELD"
    assert audits[mx].rule == "not_sealed_for"

    opened = {}
    for partner in (us, cr):
        [raw] = await ex.read(feed(partner), until=lambda f: len(f) >= 1, settle=0.5)
        feed_record = FeedRecord.from_kafka(raw)
        result = open_feed_record(
            feed_record, ex.directory, now=now, max_bytes=60_000, own=ex.keys[partner]
        )
        assert isinstance(result, Delivered), result
        opened[partner] = result
        # Another agency holding this very record opens nothing.
        stolen = open_feed_record(
            feed_record, ex.directory, now=now, max_bytes=60_000, own=ex.keys[mx]
        )
        assert not isinstance(stolen, Delivered)
        without_key = open_feed_record(feed_record, ex.directory, now=now, max_bytes=60_000)
        assert isinstance(without_key, Quarantined)
        assert without_key.reason == NO_PRIVATE_KEY
    assert opened[us].release is Release.FULL
    assert opened[us].bulletin == b
    assert opened[cr].release is Release.TEARLINE
    assert opened[cr].bulletin.details is None
    assert opened[cr].bulletin.title == b.title
    assert await ex.read(feed(mx), until=lambda _f: False, within=1.0) == []

    # Every byte the exchange wrote for this bulletin: no title, summary or details in clear.
    secrets = [b.title.encode(), b.summary.encode(), b"LUNA NEGRA"]
    written = []
    for topic in (outbound(pa), feed(us), feed(cr), AUDIT, DEADLETTER, ROUTER_SEEN):
        written += await ex.read(topic, until=lambda _f: False, within=1.0)
    assert any(audit_of(r) is not None for r in written)
    for r in written:
        blob = (r.value or b"") + b"".join(v for _k, v in r.headers or ()) + (r.key or b"")
        for secret in secrets:
            assert secret not in blob, (r.topic, secret)
    # Nor anything the router (in this process) logged while routing it.
    captured = capsys.readouterr()
    logged = (captured.out + captured.err + caplog.text).encode()
    assert b.bulletin_id.encode() in logged, "the capture saw the router's log lines"
    for secret in secrets:
        assert secret not in logged
