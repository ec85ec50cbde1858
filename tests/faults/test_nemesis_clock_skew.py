"""Scenario 7 of the fault suite: clock skew. A 3-node cluster (RF 3, min ISR 2), the
four-agency exchange, and three skewed clocks (drill offsets, the OS clock untouched):

1. a router 6 minutes behind (``ENLACE_FAULT_CLOCK_OFFSET_S=-360``) routes a stream from
   honest publishers: bulletins issued now are 6 min in its future, past the admission
   window's 5 min, so every one is dead-lettered ``clock_skew`` (the honest outcome: the
   router cannot tell a skewed publisher from its own skew) and nothing is released;
2. the router's clock is fixed (a new process, no offset) and the stream resumes, while
   - PA's real Publisher with a clock 2 hours ahead stamps its records with its clock and
     the broker refuses them (the outbound topics' ``message.timestamp.after.max.ms``):
     every send is a typed ``ClockSkewRefused`` (``clock_off``), counted;
   - PA's honest Publisher handed bulletins issued 2 h ahead refuses them before sending
     (``issued_in_future``), counted;
   - a raw client of MX (a dishonest or broken one, bypassing the publisher) writes records
     whose ``issued_at`` is 2 h ahead: with a true record timestamp the broker takes them
     and the router dead-letters them ``clock_skew``; stamped 2 h ahead too, the broker
     refuses them (``INVALID_TIMESTAMP``);
   and every other bulletin is decided for every partner, released once.

The books balance: every record on the outbound topics is decided (released or withheld)
or dead-lettered, never both, never neither. CI size 1,000 honest bulletins; full 10,000.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.errors import InvalidTimestampError, KafkaError

from broker.outputs import DLQ_REASON, DLQ_TOPIC
from enlace.core import clients
from enlace.core.clock import to_millis
from enlace.core.errors import ClockSkewRefused
from enlace.core.topics import AUDIT, DEADLETTER, outbound
from producers.publisher import Publisher, PublishFailure
from producers.settings import PublisherSettings
from producers.skew import CLOCK_OFF, ISSUED_IN_FUTURE
from schemas import headers as hdr
from schemas.envelope import seal
from tests.faults.checker import PublishLog, check
from tests.faults.nemesis import FULL, Fleet, publish, sized
from tests.faults.report import FaultReport, ScenarioRow, anomalies_of
from tests.samples import routed_bulletin
from tests.support import MiniExchange, Record, decisions_of, end_offsets

pytestmark = [pytest.mark.faults, pytest.mark.slow]

BULLETINS = sized(1_000, 10_000)
BEHIND = BULLETINS // 5  # routed by the router 6 min behind
AFTER = BULLETINS - BEHIND  # routed once its clock is fixed
SKEWED_CALLS, PER_CALL = sized(2, 10), 10  # the publisher 2 h ahead: publish_many calls
HANDED_AHEAD = sized(10, 100)  # bulletins issued 2 h ahead handed to an honest publisher
RAW_AHEAD = sized(40, 400)  # raw records issued 2 h ahead, half stamped 2 h ahead too
ROUTER_BEHIND_S = -360.0
PUBLISHER_AHEAD_S = 7_200.0
AHEAD = timedelta(seconds=PUBLISHER_AHEAD_S)


def dead_letters_of(ex: MiniExchange, records: list[Record]) -> dict[str, str]:
    """This exchange's dead letters: bulletin id (the record key) → reason."""
    ours = {outbound(a) for a in ex.registry.ids}
    return {
        (r.key or b"").decode(): hdr.text(r.headers, DLQ_REASON) or ""
        for r in records
        if hdr.text(r.headers, DLQ_TOPIC) in ours
    }


async def read_dead_letters(
    ex: MiniExchange, want: int, within: float, settle: float = 0.0
) -> dict[str, str]:
    def enough(found: list[Record]) -> bool:
        return len(dead_letters_of(ex, found)) >= want

    found = await ex.read(DEADLETTER, until=enough, within=within, settle=settle)
    return dead_letters_of(ex, found)


async def read_audits(ex: MiniExchange, decisions: int, within: float) -> list[Any]:
    """This exchange's audit records, read until ``decisions`` (bulletin, partner) decisions
    are in (then a second more, for any extra)."""
    ours = {outbound(a) for a in ex.registry.ids}

    def mine(found: list[Record]) -> list[Any]:
        return [a for r in found for a in decisions_of(r) if a.source_topic in ours]

    def enough(found: list[Record]) -> bool:
        decided: int = sum(a.decision != "DUPLICATE" for a in mine(found))
        return decided >= decisions

    return mine(await ex.read(AUDIT, until=enough, within=within, settle=1.0))


def skew_count(pub: Publisher, reason: str) -> float | None:
    return pub.metrics.registry.get_sample_value(
        "enlace_publisher_clock_skew_refused_total",
        {"agency": pub.settings.agency, "reason": reason},
    )


def publisher_settings(ex: MiniExchange, agency: str, **overrides: Any) -> PublisherSettings:
    return PublisherSettings(
        agency=agency,
        kafka_bootstrap=ex.settings.kafka_bootstrap,
        delivery_timeout_s=60.0,
        **overrides,
    )


async def skewed_publisher(ex: MiniExchange, agency: str) -> list[PublishFailure | Any]:
    """PA's real Publisher on a host 2 h ahead: its systems date bulletins by that clock."""
    settings = publisher_settings(ex, agency, fault_clock_offset_s=PUBLISHER_AHEAD_S)
    outcomes: list[PublishFailure | Any] = []
    async with Publisher(settings, key=ex.keys[agency], registry=ex.registry) as pub:
        for _ in range(SKEWED_CALLS):
            batch = [routed_bulletin(agency, issued_at=pub.clock()) for _ in range(PER_CALL)]
            outcomes.extend(await pub.publish_many(batch))
        assert skew_count(pub, CLOCK_OFF) == SKEWED_CALLS * PER_CALL, "every refusal counted"
    return outcomes


async def handed_ahead(ex: MiniExchange, agency: str) -> list[PublishFailure | Any]:
    """An honest publisher handed bulletins issued 2 h ahead: refused before sending."""
    settings = publisher_settings(ex, agency)
    async with Publisher(settings, key=ex.keys[agency], registry=ex.registry) as pub:
        ahead = datetime.now(UTC) + AHEAD
        outcomes = await pub.publish_many(
            [routed_bulletin(agency, issued_at=ahead) for _ in range(HANDED_AHEAD)]
        )
        assert skew_count(pub, ISSUED_IN_FUTURE) == HANDED_AHEAD, "every refusal counted"
    return outcomes


async def raw_ahead(ex: MiniExchange, agency: str) -> tuple[set[str], int]:
    """A client bypassing the publisher: records issued 2 h ahead. Half keep a true record
    timestamp (the broker takes them: their ids are returned), half are stamped 2 h ahead
    (refused by the broker: counted). Not idempotent: a refused batch must not leave the
    client's sequence numbers ahead of the broker's."""
    producer = clients.producer(ex.settings, enable_idempotence=False, request_timeout_ms=15_000)
    await producer.start()
    accepted: set[str] = set()
    refused = 0
    try:
        for i in range(RAW_AHEAD):
            ahead = datetime.now(UTC) + AHEAD
            sealed = seal(routed_bulletin(agency, issued_at=ahead), ex.keys[agency])
            stamped = to_millis(ahead) if i % 2 else None
            try:
                sent = await producer.send(
                    outbound(agency),
                    sealed.value,
                    key=sealed.key,
                    headers=sealed.headers,
                    timestamp_ms=stamped,
                )
                await sent
            except InvalidTimestampError:
                refused += 1
                continue
            accepted.add(sealed.key.decode())
    finally:
        await producer.stop()
    return accepted, refused


def refusals(outcomes: list[PublishFailure | Any]) -> Counter[str]:
    return Counter(
        o.error.reason
        for o in outcomes
        if isinstance(o, PublishFailure) and isinstance(o.error, ClockSkewRefused)
    )


async def outbound_total(ex: MiniExchange) -> int:
    ends = await end_offsets(ex.settings, [outbound(a) for a in ex.registry.ids])
    return sum(ends.values())  # the exchange's own topics: they start at offset 0


@pytest.mark.timeout(1200 if FULL else 300)
async def test_clock_skew_dead_letters_and_refuses_and_the_books_balance(
    exchange: MiniExchange, fleet: Fleet, fault_report: FaultReport
) -> None:
    ex = exchange
    pa, mx = ex.agency("PA"), ex.agency("MX")
    started = time.monotonic()

    # 1. The router 6 min behind: every honest bulletin is in its future, dead-lettered.
    behind = fleet.launch(ENLACE_FAULT_CLOCK_OFFSET_S=str(ROUTER_BEHIND_S))
    log_behind = PublishLog()
    await publish(ex, log_behind, BEHIND, float(sized(4, 30)))
    assert len(log_behind.acked) == BEHIND, f"{len(log_behind.failed)} publishes failed"
    skewed_out = await read_dead_letters(ex, BEHIND, within=240.0 if FULL else 150.0)
    assert await behind.stop() == 0
    assert fleet.count_in_logs(b"router_clock_offset_drill") == 1

    # 2. The router's clock fixed; the stream and the skewed clients at the same time.
    fleet.launch()
    log = PublishLog()
    stream = asyncio.create_task(publish(ex, log, AFTER, float(sized(12, 90))))
    skewed, handed, (raw_accepted, raw_refused) = await asyncio.gather(
        skewed_publisher(ex, pa), handed_ahead(ex, pa), raw_ahead(ex, mx)
    )
    await stream
    report = await check(
        ex, log, explained_dead_letters=BEHIND + len(raw_accepted), within=300.0 if FULL else 150
    )
    dead = await read_dead_letters(ex, BEHIND + len(raw_accepted), within=60.0, settle=1.0)
    codes = await fleet.stop()
    audits = await read_audits(ex, AFTER * (len(ex.registry) - 1), within=120.0)
    elapsed = time.monotonic() - started

    # The books: every record on the outbound topics decided or dead-lettered, not both.
    decided = {a.bulletin_id for a in audits if a.decision != "DUPLICATE"}
    released = {a.bulletin_id for a in audits if a.decision in ("FULL", "TEARLINE")}
    withheld = decided - released
    written = await outbound_total(ex)
    reasons = Counter(dead.values())
    expected_dead = set(log_behind.acked) | raw_accepted
    print(
        f"\nclock skew: router {ROUTER_BEHIND_S:+.0f} s dead-lettered {len(skewed_out)}/{BEHIND} "
        f"honest bulletins; after the fix {len(log.acked)} acknowledged, {len(released)} "
        f"released to someone, {len(withheld)} withheld from all; publisher "
        f"{PUBLISHER_AHEAD_S:+.0f} s refused {dict(refusals(skewed))}; handed 2 h ahead "
        f"refused {dict(refusals(handed))}; raw 2 h ahead: {len(raw_accepted)} dead-lettered, "
        f"{raw_refused} refused by the broker; outbound records {written} = decided "
        f"{len(decided)} + dead-lettered {len(dead)} ({dict(reasons)}); {elapsed:.0f} s"
        f"\n{report.table()}"
    )
    books = written == len(decided) + len(dead) and not decided & set(dead)
    publisher_refusals = refusals(skewed) + refusals(handed)
    fault_report.add(
        ScenarioRow(
            "7. clock skew",
            f"router clock {ROUTER_BEHIND_S / 60:+.0f} min; PA publisher "
            f"{PUBLISHER_AHEAD_S / 3600:+.0f} h; raw records issued 2 h ahead",
            f"{BEHIND + len(log.acked):,} bulletins, {sum(publisher_refusals.values())} "
            f"publisher refusals, {RAW_AHEAD} raw",
            anomalies_of(report),
            [],
            None,
            f"{len(skewed_out)} dead-lettered clock_skew by the router behind; publisher "
            f"refusals {dict(publisher_refusals)}; raw: {len(raw_accepted)} dead-lettered, "
            f"{raw_refused} refused by the broker (INVALID_TIMESTAMP); books: {written} in = "
            f"{len(released)} released + {len(withheld)} withheld + {len(dead)} dead-lettered",
            report.ok and books,
        )
    )
    assert set(skewed_out) == set(log_behind.acked)
    assert set(skewed_out.values()) == {"clock_skew"}
    assert refusals(skewed) == {CLOCK_OFF: SKEWED_CALLS * PER_CALL}
    assert refusals(handed) == {ISSUED_IN_FUTURE: HANDED_AHEAD}
    assert raw_refused == RAW_AHEAD // 2
    assert len(raw_accepted) == RAW_AHEAD - raw_refused
    assert set(dead) == expected_dead, "dead letters are exactly the skewed records"
    assert reasons == {"clock_skew": len(expected_dead)}
    assert not log.failed
    assert len(log.acked) == AFTER
    assert report.ok, (report.table(), report.examples)
    assert decided == set(log.acked), "every bulletin of the fixed router's stream decided"
    assert books, (written, len(decided), len(dead))
    assert report.decisions["FULL"] > 0
    assert report.decisions["TEARLINE"] > 0
    assert all(code == 0 for code in codes), codes


async def test_a_broker_refusal_leaves_the_publisher_usable(exchange: MiniExchange) -> None:
    """After the broker refused a batch (its client is replaced), the same Publisher sends
    again at once when the bulletin's record is stamped within the window: a host whose
    clock was stepped back by NTP needs no restart."""
    ex = exchange
    pa = ex.agency("PA")
    offset = {"s": PUBLISHER_AHEAD_S}

    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=offset["s"])

    settings = publisher_settings(ex, pa)
    async with Publisher(settings, key=ex.keys[pa], registry=ex.registry, clock=clock) as pub:
        (refused,) = await pub.publish_many([routed_bulletin(pa)])
        assert isinstance(refused, PublishFailure)
        assert isinstance(refused.error, ClockSkewRefused)
        offset["s"] = 0.0  # NTP stepped the clock back
        try:
            delivered = await pub.publish(routed_bulletin(pa))
        except KafkaError as exc:  # pragma: no cover - the assertion below explains it
            pytest.fail(f"the publisher stayed wedged after a refusal: {exc!r}")
    assert delivered.topic == outbound(pa)
