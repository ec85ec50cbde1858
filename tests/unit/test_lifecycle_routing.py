"""The router's lifecycle paths in memory: a sealed (wire format 2) bulletin tearlined by a
partner's score, released in full once its score rises (collected, handled, committed or
abandoned like a batch), then recalled from every partner that holds it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from broker.admission import Limits
from broker.audit_query import decisions_of, in_words
from broker.engine import BatchOutcome
from broker.metrics import RouterMetrics
from broker.policy import Policy
from broker.replay import Held, SeenIndex, decode_entry, seen_key
from broker.routing import RouterHandler, RoutingContext
from broker.trust import TrustScore
from enlace.core.registry import Agency, Registry
from enlace.core.topics import AUDIT, ROUTER_SEEN, feed, outbound, owner_partition
from schemas import headers as hdr
from schemas.agency_key import AgencyKey
from schemas.codec import decode_audit
from schemas.envelope import Sealed
from schemas.key_directory import KeyDirectory
from schemas.recall import BulletinRecall, seal_recall
from schemas.sealed import open_release, recipients_of, seal_sealed
from schemas.sealing import BoxCache
from tests.samples import routed_bulletin

NOW = datetime.now(UTC).replace(microsecond=0)
PA, US, CR = "pa-senafront", "us-jiatfs", "cr-msp"
REGISTRY = Registry(agencies=tuple(Agency(id=a, name=a, country=a[:2].upper())
                                   for a in (PA, US, CR)))  # fmt: skip
KEYS = {a: AgencyKey.generate(a, valid_from=NOW - timedelta(days=30)) for a in (PA, US, CR)}
DIRECTORY = KeyDirectory.from_keys(KEYS.values())
AGREEMENTS = [{"between": [PA, US], "level": "full"}, {"between": [PA, CR], "level": "standard"}]
POLICY = Policy.model_validate({"agreements": AGREEMENTS, "rerelease": {"enabled": True}})
TP = TopicPartition(outbound(PA), 0)


class Scores:
    """Pinned scores, moved by the test."""

    def __init__(self) -> None:
        self.values = {US: 0.9, CR: 0.5}

    def score(self, originator: str, partner: str, policy: Policy, now: datetime) -> TrustScore:
        del policy
        value = self.values[partner]
        prior = POLICY.agreement(originator, partner).prior
        return TrustScore(originator, partner, value, value * 10, (1 - value) * 10, prior, now)


class Reader:
    def __init__(self) -> None:
        self.records: dict[int, ConsumerRecord[Any, Any]] = {}

    async def read(
        self, tp: TopicPartition, offsets: Sequence[int]
    ) -> dict[int, ConsumerRecord[Any, Any]]:
        assert tp == TP
        return {o: self.records[o] for o in offsets if o in self.records}


def record(offset: int, sealed: Sealed) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic=TP.topic, partition=0, offset=offset, timestamp=int(NOW.timestamp() * 1000),
        timestamp_type=0, key=sealed.key, value=sealed.value, checksum=None,
        serialized_key_size=len(sealed.key), serialized_value_size=len(sealed.value),
        headers=sealed.headers,
    )  # fmt: skip


def commit(outcome: BatchOutcome) -> None:
    for apply in outcome.on_commit:
        apply()


def setup(
    partitions: Callable[[str], int | None] = lambda _t: 1,
) -> tuple[RouterHandler, Scores, Reader, SeenIndex]:
    limits = Limits(max_record_bytes=50_000)
    context = RoutingContext(REGISTRY, POLICY, DIRECTORY, limits)
    scores, reader = Scores(), Reader()
    seen = SeenIndex(limits.max_past + limits.max_future)
    handler = RouterHandler(context, scores, seen, None, RouterMetrics(), clock=lambda: NOW,
                            partitions=partitions, reader=reader)  # fmt: skip
    return handler, scores, reader, seen


async def test_a_tearlined_sealed_bulletin_is_released_in_full_once_its_score_rises() -> None:
    handler, scores, reader, seen = setup()
    bulletin = routed_bulletin(PA, issued_at=NOW - timedelta(minutes=1))
    sealed = seal_sealed(bulletin, KEYS[PA], recipients_of(DIRECTORY, (US, CR), NOW),
                         boxes=BoxCache())  # fmt: skip
    reader.records[0] = record(0, sealed)
    routed = handler.handle(TP, [reader.records[0]])
    assert {o.topic for o in routed.outputs} >= {feed(US), feed(CR)}
    assert await handler.collect_due(TP) is None, "nothing due before the commit"
    commit(routed)
    assert await handler.collect_due(TP) is None, "cr's score has not moved"

    scores.values[CR] = 0.65  # past CONFIDENTIAL's 0.6
    work = await handler.collect_due(TP)
    assert work is not None
    abandoned = handler.handle_due(TP, work)
    abandoned.abandon()  # an aborted transaction: due again, as if never handled
    work = await handler.collect_due(TP)
    assert work is not None
    outcome = handler.handle_due(TP, work)
    (release,) = (o for o in outcome.outputs if o.topic == feed(CR))
    opened = open_release(release.value, list(release.headers), directory=DIRECTORY,
                          own=KEYS[CR], boxes=BoxCache())  # fmt: skip
    assert opened.bulletin == bulletin, "cr opens the full bulletin"
    assert hdr.text(release.headers, hdr.RELEASE) == "full"
    (audit_out,) = (o for o in outcome.outputs if o.topic == AUDIT)
    audit = decode_audit(audit_out.value)
    assert audit.decision == "RERELEASED"
    assert [(d.partner, d.decision, d.rule) for d in audit.decisions] == [
        (CR, "FULL", "rerelease_full")
    ]
    (entry_out,) = (o for o in outcome.outputs if o.topic == ROUTER_SEEN)
    route = decode_entry(entry_out.value).route
    assert route is not None
    assert route.holding(CR) is not None
    assert route.holding(CR).held is Held.FULL  # type: ignore[union-attr]  # checked above
    assert not {o.topic for o in outcome.outputs} & {feed(US)}, "us already held it in full"
    assert await handler.collect_due(TP) is None, "staged: not due twice while it commits"
    commit(outcome)
    assert await handler.collect_due(TP) is None, "released once"

    recall = seal_recall(BulletinRecall.new(PA, bulletin.bulletin_id, "burned", NOW), KEYS[PA])
    recalled = handler.handle(TP, [record(1, recall)])
    forwarded = sorted(
        o.topic for o in recalled.outputs if hdr.text(o.headers, hdr.RELEASE) == "recall"
    )
    assert forwarded == sorted([feed(US), feed(CR)])
    commit(recalled)
    entry = seen.lookup(seen_key(PA, bulletin.bulletin_id), {})
    assert entry is not None
    assert entry.route is not None
    assert entry.route.recalled
    scores.values[CR] = 0.99
    assert await handler.collect_due(TP) is None, "a recall releases nothing new"


async def test_audit_why_explains_an_earned_release_and_a_recall() -> None:
    handler, scores, reader, _ = setup()
    bulletin = routed_bulletin(PA, issued_at=NOW - timedelta(minutes=1))
    sealed = seal_sealed(bulletin, KEYS[PA], recipients_of(DIRECTORY, (US, CR), NOW),
                         boxes=BoxCache())  # fmt: skip
    reader.records[0] = record(0, sealed)
    commit(handler.handle(TP, [reader.records[0]]))
    scores.values[CR] = 0.65
    work = await handler.collect_due(TP)
    assert work is not None
    earned = handler.handle_due(TP, work)
    commit(earned)
    recall = seal_recall(BulletinRecall.new(PA, bulletin.bulletin_id, "burned", NOW), KEYS[PA])
    recalled = handler.handle(TP, [record(1, recall)])
    audits = [
        decode_audit(o.value) for o in (*earned.outputs, *recalled.outputs) if o.topic == AUDIT
    ]
    rows = decisions_of(audits)
    words = {(r.partner, r.rule): in_words(r, POLICY) for r in rows}
    assert words[CR, "rerelease_full"].startswith(
        "released in full when trust was earned: score 0.65"
    )
    assert "0.60 CONFIDENTIAL threshold" in words[CR, "rerelease_full"]
    assert words[CR, "recall_forwarded"] == (
        f"recall forwarded: {PA} withdrew the bulletin, which {CR} held"
    )
    assert {p for p, rule in words if rule == "recall_forwarded"} == {US, CR}


async def test_a_bulletin_whose_owner_partition_moved_is_not_released_again() -> None:
    counts = {"now": 1}
    handler, scores, reader, _ = setup(lambda _topic: counts["now"])
    while True:
        bulletin = routed_bulletin(PA, issued_at=NOW - timedelta(minutes=1))
        if owner_partition(bulletin.bulletin_id, 5) != 0:
            break
    sealed = seal_sealed(bulletin, KEYS[PA], recipients_of(DIRECTORY, (US, CR), NOW),
                         boxes=BoxCache())  # fmt: skip
    reader.records[0] = record(0, sealed)
    commit(handler.handle(TP, [reader.records[0]]))
    scores.values[CR] = 0.65
    counts["now"] = 5  # partitions added: the id now belongs to another partition's owner
    assert await handler.collect_due(TP) is None
    counts["now"] = 1
    handler.lifecycle.forget_scans()  # a rebalance, as any partition count change brings
    assert await handler.collect_due(TP) is not None
