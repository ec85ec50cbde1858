"""RouterHandler.handle in memory, in milliseconds: what one input batch turns into, and the
state it applies only once the engine has committed it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from broker.admission import Limits
from broker.engine import BatchOutcome
from broker.metrics import RouterMetrics
from broker.outputs import DLQ_REASON, release_summaries
from broker.policy import Policy
from broker.replay import SeenIndex
from broker.routing import RouterHandler, RoutingContext
from broker.trust_state import TrustState
from enlace.core.registry import Agency, Registry
from enlace.core.topics import AUDIT, DEADLETTER, ROUTER_SEEN, feed, outbound, owner_partition
from schemas import headers as hdr
from schemas.agency_key import AgencyKey
from schemas.codec import decode_audit, encode_audit
from schemas.envelope import Sealed, seal
from schemas.key_directory import KeyDirectory
from schemas.models import ROUTED
from tests.samples import routed_bulletin, sample_bulletin

NOW = datetime.now(UTC).replace(microsecond=0)
PA, US, CR = "pa-senafront", "us-jiatfs", "cr-msp"
REGISTRY = Registry(agencies=tuple(Agency(id=a, name=a, country=a[:2].upper())
                                   for a in (PA, US, CR)))  # fmt: skip
KEYS = {a: AgencyKey.generate(a, valid_from=NOW - timedelta(days=30)) for a in (PA, US, CR)}
POLICY = Policy.model_validate({"agreements": [{"between": [PA, US], "level": "full"}]})
PARTITIONS = 3


def handler() -> tuple[RouterHandler, RouterMetrics, SeenIndex]:
    limits = Limits()
    context = RoutingContext(REGISTRY, POLICY, KeyDirectory.from_keys(KEYS.values()), limits)
    metrics = RouterMetrics()
    seen = SeenIndex(limits.max_past + limits.max_future)
    made = RouterHandler(context, TrustState(POLICY, REGISTRY.ids), seen, None, metrics,
                         clock=lambda: NOW, partitions=lambda _t: PARTITIONS)  # fmt: skip
    return made, metrics, seen


def sealed_on(partition: int) -> Sealed:
    while True:
        b = routed_bulletin(PA, issued_at=NOW - timedelta(minutes=1))
        if owner_partition(b.bulletin_id, PARTITIONS) == partition:
            return seal(b, KEYS[PA])


def record(
    partition: int, offset: int, key: bytes | None, value: bytes | None, headers: Any
) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic=outbound(PA), partition=partition, offset=offset,
        timestamp=int(NOW.timestamp() * 1000), timestamp_type=0, key=key, value=value,
        checksum=None, serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""), headers=headers,
    )  # fmt: skip


def of(sealed: Sealed, partition: int, offset: int) -> ConsumerRecord[Any, Any]:
    return record(partition, offset, sealed.key, sealed.value, sealed.headers)


def topics(outcome: BatchOutcome) -> Counter[str]:
    return Counter(out.topic for out in outcome.outputs)


def commit(outcome: BatchOutcome) -> None:
    for apply in outcome.on_commit:
        apply()


def total(metrics: RouterMetrics, name: str) -> float:
    return sum(s.value for m in metrics.registry.collect() for s in m.samples if s.name == name)


def test_a_batch_releases_audits_and_stages_its_ids_until_the_commit() -> None:
    h, metrics, seen = handler()
    good = sealed_on(0)
    outcome = h.handle(TopicPartition(outbound(PA), 0), [of(good, 0, 0)])
    # One replay entry, one audit record with every partner's decision, the releases.
    assert topics(outcome) == {ROUTER_SEEN: 1, AUDIT: 1, feed(US): 1, feed(CR): 1}
    (audit_out,) = (out for out in outcome.outputs if out.topic == AUDIT)
    audit = decode_audit(audit_out.value)
    assert audit.decision == ROUTED
    assert encode_audit(audit) == audit_out.value, "scores and factors written as fastavro does"
    assert any(d.score is not None and d.factors for d in audit.decisions)
    assert sorted(d.partner for d in audit.per_partner()) == sorted([US, CR])
    assert {d.decision for d in audit.per_partner()} <= {"FULL", "TEARLINE"}
    summaries = release_summaries(audit_out.headers)
    assert summaries is not None
    assert [(s.partner, s.decision) for s in summaries] == [
        (d.partner, d.decision) for d in audit.per_partner()
    ], "the summary header says what the record says"
    assert len(seen) == 0, "nothing is known before the transaction commits"
    assert total(metrics, "enlace_router_records_consumed_total") == 0
    commit(outcome)
    assert len(seen) == 1
    assert total(metrics, "enlace_router_bulletins_routed_total") == 1


def test_every_record_ends_routed_duplicate_or_dead_lettered() -> None:
    h, metrics, _ = handler()
    good, stray = sealed_on(1), sealed_on(2)
    tampered = bytearray(good.value)
    tampered[-1] ^= 1
    batch = [
        of(good, 1, 0),
        of(good, 1, 1),  # a publisher retry in the same batch
        of(stray, 1, 2),  # owned by partition 2
        record(1, 3, b"k", b"garbage", good.headers),
        record(1, 4, good.key, bytes(tampered), good.headers),
        record(1, 5, None, None, None),
    ]
    outcome = h.handle(TopicPartition(outbound(PA), 1), batch)
    commit(outcome)
    reasons = Counter(
        hdr.text(list(out.headers), DLQ_REASON)
        for out in outcome.outputs
        if out.topic == DEADLETTER
    )
    assert reasons == {"wrong_partition": 1, "bad_signature": 2, "empty": 1}
    assert topics(outcome)[ROUTER_SEEN] == 1
    assert total(metrics, "enlace_router_duplicates_total") == 1
    consumed = total(metrics, "enlace_router_records_consumed_total")
    accounted = (
        total(metrics, "enlace_router_bulletins_routed_total")
        + total(metrics, "enlace_router_duplicates_total")
        + total(metrics, "enlace_router_rejected_total")
    )
    assert consumed == accounted == len(batch)


def test_a_committed_id_is_a_duplicate_in_a_later_batch_and_a_conflict_with_other_bytes() -> None:
    h, _, _ = handler()
    tp = TopicPartition(outbound(PA), 0)
    first = sealed_on(0)
    commit(h.handle(tp, [of(first, 0, 0)]))
    again = h.handle(tp, [of(first, 0, 1)])
    assert topics(again) == {AUDIT: 1}, "a duplicate is audited once and released to no one"
    other = seal(sample_bulletin(PA, bulletin_id=first.key.decode(),
                                 issued_at=NOW - timedelta(minutes=2)), KEYS[PA])  # fmt: skip
    conflict = h.handle(tp, [of(other, 0, 2)])
    assert [hdr.text(list(o.headers), DLQ_REASON) for o in conflict.outputs] == ["id_conflict"]
