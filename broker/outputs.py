"""The records a routing decision turns into: feed releases, audit records, dead letters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from broker.admission import Admitted
from broker.engine import OutRecord
from broker.lifecycle import RECALL_FORWARDED_RULE, RERELEASE_RULE
from broker.release import ReleaseDecision
from broker.trust import TrustScore
from enlace.core.errors import ValidationError
from enlace.core.topics import AUDIT, DEADLETTER, feed
from schemas import headers as hdr
from schemas.avro_writer import writer_for
from schemas.bulletin import BulletinEnvelope
from schemas.catalog import Catalog
from schemas.codec import AUDIT as AUDIT_SCHEMA
from schemas.codec import MAGIC
from schemas.events import RECALLED, RERELEASED
from schemas.models import ROUTED, ROUTED_RULE, AuditRecord, ThreatBulletin
from schemas.recall import BulletinRecall
from schemas.sealed import SealedView, release_for
from schemas.sealing import FULL, TEARLINE
from schemas.vocab import ReleaseKind

DLQ_PREFIX = "enlace-dlq-"
DLQ_REASON = "enlace-dlq-reason"
DLQ_MESSAGE = "enlace-dlq-message"
DLQ_TOPIC = "enlace-dlq-topic"
DLQ_PARTITION = "enlace-dlq-partition"
DLQ_OFFSET = "enlace-dlq-offset"
MAX_DLQ_MESSAGE = 1000

# On every audit record, so readers that only need who got what (the router's trust feed)
# skip the Avro decode: "DECISION|origin|partner|bulletin id|decided-at ms" on a record of one
# decision, "origin|bulletin id|decided-at ms|partner=DECISION,partner=DECISION..." on a
# ROUTED record (one per bulletin, every partner's decision).
AUDIT_SUMMARY = "enlace-audit"
AUDIT_DECISIONS = "enlace-audit-decisions"

DUPLICATE = "DUPLICATE"
DUPLICATE_RULE = "duplicate"


@dataclass(frozen=True, slots=True)
class Source:
    """Where an input record came from, for audit and dead-letter provenance."""

    topic: str
    partition: int
    offset: int


def release_record(admitted: Admitted, decision: ReleaseDecision) -> OutRecord:
    """The feed record for a FULL or TEARLINE decision, with the matching originator signature
    (v1), or the partner's SealedRelease under the originator's routing signature (v2)."""
    signed = admitted.signed
    if admitted.sealed is not None:
        return _sealed_release(admitted, admitted.sealed, decision)
    if decision.kind is ReleaseKind.FULL:
        value, sig, release = admitted.value, signed.sig, hdr.RELEASE_FULL
    elif decision.kind is ReleaseKind.TEARLINE:
        assert signed.sig_tearline is not None, "admission guarantees a tearline signature"
        value, sig, release = admitted.tearline_value, signed.sig_tearline, hdr.RELEASE_TEARLINE
    else:
        raise ValueError(f"{decision.kind} is not a release")
    headers = hdr.build(
        origin=signed.origin,
        key_id=signed.key_id,
        sig=sig,
        release=release,
        published_ms=admitted.published_ms,
    )
    return OutRecord(
        topic=feed(decision.partner),
        value=value,
        key=admitted.bulletin.bulletin_id.encode("ascii"),
        headers=tuple(headers),
    )


def _sealed_release(admitted: Admitted, view: SealedView, decision: ReleaseDecision) -> OutRecord:
    if decision.kind is ReleaseKind.FULL:
        level, release = FULL, hdr.RELEASE_FULL
    elif decision.kind is ReleaseKind.TEARLINE:
        level, release = TEARLINE, hdr.RELEASE_TEARLINE
    else:
        raise ValueError(f"{decision.kind} is not a release")
    value = release_for(view, decision.partner, level)
    if value is None:
        raise ValueError(f"{decision.partner} has no wrap: the decision must withhold")
    return OutRecord(
        topic=feed(decision.partner),
        value=value,
        key=admitted.key,
        headers=admitted.release_headers(release),
    )


AuditFactor = dict[str, Any]


def audit_factors(score: TrustScore | None) -> tuple[AuditFactor, ...]:
    """A score's factors in the audit schema's shape (costly: callers cache per pair)."""
    if score is None:
        return ()
    return tuple(
        {"name": f.name, "value": round(f.value, 6), "note": f.note[:200]} for f in score.factors
    )


@cache
def _audit_writer() -> tuple[bytes, Callable[[dict[str, Any]], bytes]]:
    """The audit record's framing (magic + fingerprint) and its compiled body writer."""
    entry = Catalog.default().get(AUDIT_SCHEMA, AuditRecord.avro_version)
    return MAGIC + entry.fingerprint, writer_for(entry.parsed)


def _audit_out(datum: dict[str, Any]) -> OutRecord:
    """Encode straight from the Avro datum with the compiled writer: the router builds it
    from validated values and fixed rule codes, and a pydantic round trip (or fastavro's
    checks) per bulletin would cost more than deciding (readers of the audit topic still
    validate with ``decode_audit``; tests/unit/test_audit_versions.py decodes what this
    writes)."""
    decided_ms = str(int(datum["decided_at"].timestamp() * 1000))
    decisions = datum["decisions"]
    if decisions:
        key = datum["bulletin_id"].encode("ascii")
        each = ",".join(f"{d['partner']}={d['decision']}" for d in decisions)
        name = AUDIT_DECISIONS
        summary = "|".join((datum["origin"], datum["bulletin_id"], decided_ms, each))
    else:
        key = f"{datum['bulletin_id']}/{datum['partner']}".encode("ascii")
        name = AUDIT_SUMMARY
        fields = (datum["decision"], datum["origin"], datum["partner"], datum["bulletin_id"])
        summary = "|".join((*fields, decided_ms))
    return OutRecord(
        topic=AUDIT,
        value=_encode_audit(datum),
        key=key,
        headers=((name, summary.encode("ascii")),),
    )


def _encode_audit(datum: dict[str, Any]) -> bytes:
    head, write = _audit_writer()
    try:
        return head + write(datum)
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"audit datum does not fit its schema: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ReleaseSummary:
    decision: str
    origin: str
    partner: str
    bulletin_id: str
    at: datetime


def release_summary(headers: hdr.Headers | None) -> ReleaseSummary | None:
    """The ``enlace-audit`` header of an audit record, or None when absent or malformed."""
    raw = hdr.header(headers, AUDIT_SUMMARY) if headers else None
    if raw is None:
        return None
    parts = raw.decode("ascii", "replace").split("|")
    if len(parts) != 5:
        return None
    decision, origin, partner, bulletin_id, ms = parts
    at = _summary_time(ms)
    return None if at is None else ReleaseSummary(decision, origin, partner, bulletin_id, at)


def release_summaries(headers: hdr.Headers | None) -> list[ReleaseSummary] | None:
    """Every decision an audit record's summary header names (a ROUTED record's
    ``enlace-audit-decisions`` or a single decision's ``enlace-audit``), or None when it has
    neither or they are malformed (the reader then decodes the record)."""
    if not headers:
        return None
    raw = hdr.header(headers, AUDIT_DECISIONS)
    if raw is None:
        single = release_summary(headers)
        return None if single is None else [single]
    parts = raw.decode("ascii", "replace").split("|")
    if len(parts) != 4:
        return None
    origin, bulletin_id, ms, each = parts
    at = _summary_time(ms)
    if at is None:
        return None
    found = []
    for pair in each.split(","):
        partner, sep, decision = pair.partition("=")
        if not sep:
            return None
        found.append(ReleaseSummary(decision, origin, partner, bulletin_id, at))
    return found


def _summary_time(ms: str) -> datetime | None:
    if not ms.isdigit():
        return None
    try:
        return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _facts(bulletin: ThreatBulletin | BulletinEnvelope) -> dict[str, Any]:
    """What the release decision read of the bulletin (AuditRecord v3 ``facts``), so ``enlace
    audit why`` and ``enlace policy whatif`` need no outbound read. Values as the validated
    model holds them (StrEnum symbols are str; the compiled writer takes tuples)."""
    return {
        "category": bulletin.category,
        "classification": bulletin.classification,
        "tearline_classification": bulletin.tearline_classification,
        "tlp": bulletin.tlp,
        "releasable_to": bulletin.releasable_to,
        "caveats": bulletin.caveats,
        "valid_until": bulletin.valid_until,
    }


def _audit_datum(
    admitted: Admitted, *, partner: str, decision: str, rule: str, source: Source, now: datetime
) -> dict[str, Any]:
    bulletin = admitted.bulletin
    datum = _datum(bulletin.bulletin_id, bulletin.origin, partner, decision, rule, source, now)
    datum["facts"] = _facts(bulletin)
    return datum


def _datum(  # noqa: PLR0917 - the record's identifying fields, in the schema's order
    bulletin_id: str,
    origin: str,
    partner: str,
    decision: str,
    rule: str,
    source: Source,
    now: datetime,
) -> dict[str, Any]:
    """An audit datum with no score, factors, decisions or facts (callers add theirs)."""
    return {
        "bulletin_id": bulletin_id,
        "origin": origin,
        "partner": partner,
        "decision": decision,
        "rule": rule,
        "score": None,
        "factors": (),
        "decided_at": now,
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "decisions": (),
        "facts": None,
    }


def audit_record(
    admitted: Admitted,
    decision: ReleaseDecision,
    source: Source,
    now: datetime,
    factors: tuple[AuditFactor, ...] | None = None,
) -> OutRecord:
    datum = _audit_datum(
        admitted,
        partner=decision.partner,
        decision=decision.kind.value,
        rule=decision.rule.value,
        source=source,
        now=now,
    )
    if decision.score is not None:
        datum["score"] = round(decision.score.value, 6)
        datum["factors"] = list(audit_factors(decision.score) if factors is None else factors)
    return _audit_out(datum)


def _decision_datum(
    decision: ReleaseDecision, rule: str, factors: tuple[AuditFactor, ...]
) -> dict[str, Any]:
    """One partner's decision inside a ROUTED or RERELEASED record."""
    return {
        "partner": decision.partner,
        "decision": decision.kind.value,
        "rule": rule,
        "score": None if decision.score is None else round(decision.score.value, 6),
        "factors": factors if decision.score is not None else (),
    }


def routed_audit(
    admitted: Admitted,
    decisions: Sequence[tuple[ReleaseDecision, tuple[AuditFactor, ...]]],
    source: Source,
    now: datetime,
) -> OutRecord:
    """The one audit record of a routed bulletin: every partner's decision with its factors,
    and (version 3) the bulletin's facts they were decided on."""
    datum = _audit_datum(
        admitted,
        partner=admitted.bulletin.origin,
        decision=ROUTED,
        rule=ROUTED_RULE,
        source=source,
        now=now,
    )
    datum["decisions"] = [
        _decision_datum(decision, decision.rule.value, factors) for decision, factors in decisions
    ]
    return _audit_out(datum)


def rerelease_audit(
    admitted: Admitted,
    decisions: Sequence[tuple[ReleaseDecision, str, tuple[AuditFactor, ...]]],
    source: Source,
    now: datetime,
) -> OutRecord:
    """A release when trust is earned: the partners it released more to, each with its own
    rule code (``rerelease_full``, ``rerelease_tearline``), score and factors. ``source`` is
    the bulletin's outbound record, re-read for it."""
    datum = _audit_datum(
        admitted, partner=admitted.bulletin.origin, decision=RERELEASED, rule=RERELEASE_RULE,
        source=source, now=now,
    )  # fmt: skip
    datum["decisions"] = [
        _decision_datum(decision, rule, factors) for decision, rule, factors in decisions
    ]
    return _audit_out(datum)


def recall_audit(
    recall: BulletinRecall, recipients: Sequence[str], source: Source, now: datetime, *, rule: str
) -> OutRecord:
    """A recall: forwarded to ``recipients`` (none for a duplicate, ``rule`` says which)."""
    datum = _datum(recall.bulletin_id, recall.origin, recall.origin, RECALLED, rule, source, now)
    datum["decisions"] = [
        {"partner": p, "decision": RECALLED, "rule": RECALL_FORWARDED_RULE, "score": None,
         "factors": ()}
        for p in recipients
    ]  # fmt: skip
    return _audit_out(datum)


def recall_forward(
    recall: BulletinRecall, value: bytes, signed: hdr.SignedHeaders, partner: str
) -> OutRecord:
    """The originator's recall, byte for byte with its signature, on a recipient's feed."""
    headers = hdr.build(
        origin=signed.origin, key_id=signed.key_id, sig=signed.sig, release=hdr.RELEASE_RECALL
    )
    return OutRecord(
        topic=feed(partner),
        value=value,
        key=recall.bulletin_id.encode("ascii"),
        headers=tuple(headers),
    )


def duplicate_audit(admitted: Admitted, source: Source, now: datetime) -> OutRecord:
    """One audit record for a publisher retry (same id, same bytes): dropped, not re-released."""
    origin = admitted.bulletin.origin
    return _audit_out(
        _audit_datum(
            admitted,
            partner=origin,
            decision=DUPLICATE,
            rule=DUPLICATE_RULE,
            source=source,
            now=now,
        )
    )


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
    # A writer's own provenance headers are dropped: only the router says why and where from.
    original = tuple(
        (name, bytes(v) if v is not None else b"")
        for name, v in headers or ()
        if not name.startswith(DLQ_PREFIX)
    )
    return OutRecord(topic=DEADLETTER, value=value or b"", key=key, headers=original + provenance)
