"""The records a routing decision turns into: feed releases, audit records, dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from broker.admission import Admitted
from broker.engine import OutRecord
from broker.release import ReleaseDecision
from broker.trust import TrustScore
from enlace.topics import AUDIT, DEADLETTER, feed
from schemas import headers as hdr
from schemas.codec import encode_audit
from schemas.models import AuditRecord, Factor
from schemas.vocab import ReleaseKind

DLQ_REASON = "enlace-dlq-reason"
DLQ_MESSAGE = "enlace-dlq-message"
DLQ_TOPIC = "enlace-dlq-topic"
DLQ_PARTITION = "enlace-dlq-partition"
DLQ_OFFSET = "enlace-dlq-offset"
MAX_DLQ_MESSAGE = 1000

DUPLICATE = "DUPLICATE"
DUPLICATE_RULE = "duplicate"


@dataclass(frozen=True, slots=True)
class Source:
    """Where an input record came from, for audit and dead-letter provenance."""

    topic: str
    partition: int
    offset: int


def release_record(admitted: Admitted, decision: ReleaseDecision) -> OutRecord:
    """The feed record for a FULL or TEARLINE decision, with the matching originator signature."""
    signed = admitted.signed
    if decision.kind is ReleaseKind.FULL:
        value, sig, release = admitted.value, signed.sig, hdr.RELEASE_FULL
    elif decision.kind is ReleaseKind.TEARLINE:
        assert signed.sig_tearline is not None, "admission guarantees a tearline signature"
        value, sig, release = admitted.tearline_value, signed.sig_tearline, hdr.RELEASE_TEARLINE
    else:
        raise ValueError(f"{decision.kind} is not a release")
    headers = hdr.build(origin=signed.origin, key_id=signed.key_id, sig=sig, release=release)
    return OutRecord(
        topic=feed(decision.partner),
        value=value,
        key=admitted.bulletin.bulletin_id.encode("ascii"),
        headers=tuple(headers),
    )


def audit_factors(score: TrustScore | None) -> tuple[Factor, ...]:
    """A score's factors in the audit schema's shape (costly: callers cache per pair)."""
    if score is None:
        return ()
    return tuple(
        Factor(name=f.name, value=round(f.value, 6), note=f.note[:200]) for f in score.factors
    )


def audit_record(
    admitted: Admitted,
    decision: ReleaseDecision,
    source: Source,
    now: datetime,
    factors: tuple[Factor, ...] | None = None,
) -> OutRecord:
    score = decision.score
    record = AuditRecord(
        bulletin_id=admitted.bulletin.bulletin_id,
        origin=admitted.bulletin.origin,
        partner=decision.partner,
        decision=decision.kind.value,
        rule=decision.rule.value,
        score=round(score.value, 6) if score is not None else None,
        factors=audit_factors(score) if factors is None else factors,
        decided_at=now,
        source_topic=source.topic,
        source_partition=source.partition,
        source_offset=source.offset,
    )
    return _audit_out(record)


def duplicate_audit(admitted: Admitted, source: Source, now: datetime) -> OutRecord:
    """One audit record for a publisher retry (same id, same bytes): dropped, not re-released."""
    record = AuditRecord(
        bulletin_id=admitted.bulletin.bulletin_id,
        origin=admitted.bulletin.origin,
        partner=admitted.bulletin.origin,
        decision=DUPLICATE,
        rule=DUPLICATE_RULE,
        decided_at=now,
        source_topic=source.topic,
        source_partition=source.partition,
        source_offset=source.offset,
    )
    return _audit_out(record)


def _audit_out(record: AuditRecord) -> OutRecord:
    key = f"{record.bulletin_id}/{record.partner}".encode("ascii")
    return OutRecord(topic=AUDIT, value=encode_audit(record), key=key)


def dead_letter(
    *,
    key: bytes | None,
    value: bytes | None,
    headers: hdr.Headers | None,
    source: Source,
    reason: str,
    message: str,
) -> OutRecord:
    """The original key, value and headers, plus why and where from."""
    provenance = (
        (DLQ_REASON, reason.encode("ascii")),
        (DLQ_MESSAGE, message[:MAX_DLQ_MESSAGE].encode("utf-8", "replace")),
        (DLQ_TOPIC, source.topic.encode("utf-8")),
        (DLQ_PARTITION, str(source.partition).encode("ascii")),
        (DLQ_OFFSET, str(source.offset).encode("ascii")),
    )
    original = tuple((name, bytes(v) if v is not None else b"") for name, v in headers or ())
    return OutRecord(topic=DEADLETTER, value=value or b"", key=key, headers=original + provenance)
