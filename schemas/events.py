"""TrustEvent (``trust_event.v1.avsc``) and AuditRecord (``audit_record.v3.avsc``) models."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Self

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from schemas.bulletin import MAX_RECIPIENTS
from schemas.fields import (
    AgencyId,
    Name,
    Note,
    Recipient,
    ShortText,
    UtcTime,
    Uuid,
    WireModel,
)
from schemas.vocab import TrustEventKind

# Kinds sent by a recipient about one bulletin it received: they must name that bulletin.
BULLETIN_KINDS = frozenset(
    {
        TrustEventKind.RECEIPT,
        TrustEventKind.FEEDBACK_ACTIONED,
        TrustEventKind.FEEDBACK_USEFUL,
        TrustEventKind.FEEDBACK_NOT_USEFUL,
    }
)
INCIDENT_KINDS = frozenset(
    {
        TrustEventKind.INCIDENT_MISHANDLING,
        TrustEventKind.INCIDENT_LEAK,
        TrustEventKind.INCIDENT_CORRUPTION,
    }
)

# The decisions the router writes today. The wire field is a plain string so a newer router's
# decision never breaks an older reader; the model only checks the shape.
AUDIT_DECISIONS = ("FULL", "TEARLINE", "WITHHELD", "DUPLICATE")
# A version-2 record about a whole routed bulletin: its partners' decisions are in
# ``decisions``, and a version-1 reader sees a decision it does not know (and skips it).
ROUTED = "ROUTED"
ROUTED_RULE = "per_partner"
# Lifecycle records (issue 18) that carry per-partner decisions too: a release when trust is
# earned (the partners it released more to) and a recall (the partners it was forwarded to,
# possibly none).
RERELEASED = "RERELEASED"
RECALLED = "RECALLED"
_DECISIONS_REQUIRED = frozenset({ROUTED, RERELEASED})
_DECISIONS_ALLOWED = _DECISIONS_REQUIRED | {RECALLED}
_DECISION = re.compile(r"^[A-Z][A-Z_]{0,31}$")
_RULE = re.compile(r"^[a-z][a-z0-9_.:-]{0,99}$")
# A vocabulary symbol as the bulletin schema spells it (Category, Classification, Tlp, Caveat).
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
MAX_CAVEATS = 16


class TrustEvent(WireModel):
    """Evidence for trust: receipts and feedback (partner → originator), incidents (reverse)."""

    event_id: Uuid
    kind: TrustEventKind
    reporter: AgencyId
    subject: AgencyId
    bulletin_id: Uuid | None = None
    occurred_at: UtcTime
    note: Note | None = None

    @field_validator("subject")
    @classmethod
    def _not_self(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("reporter"):
            raise ValueError("an agency cannot report about itself")
        return value

    @field_validator("bulletin_id")
    @classmethod
    def _bulletin_when_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("kind") in BULLETIN_KINDS:
            raise ValueError("receipts and feedback must name the bulletin")
        return value


class Factor(WireModel):
    name: ShortText
    value: float
    note: Note = ""


def _decision_shape(value: str) -> str:
    if not _DECISION.fullmatch(value):
        raise ValueError(f"must be an uppercase decision like {', '.join(AUDIT_DECISIONS)}")
    return value


def _rule_shape(value: str) -> str:
    if not _RULE.fullmatch(value):
        raise ValueError("must be a lowercase rule name like 'score_full'")
    return value


def _symbol_shape(value: str) -> str:
    if not _SYMBOL.fullmatch(value):
        raise ValueError("must be an uppercase symbol like 'CONFIDENTIAL'")
    return value


Symbol = Annotated[str, AfterValidator(_symbol_shape)]


class BulletinFacts(WireModel):
    """What the release decision read of the bulletin (version 3): its symbols as strings, so
    a newer bulletin schema's symbol never makes an audit record unreadable; readers map them
    to the vocabulary and treat a symbol they do not know as unknown facts."""

    category: Symbol
    classification: Symbol
    tearline_classification: Symbol
    tlp: Symbol
    releasable_to: tuple[Recipient, ...] = Field(default=(), max_length=MAX_RECIPIENTS)
    caveats: tuple[Symbol, ...] = Field(default=(), max_length=MAX_CAVEATS)
    valid_until: UtcTime | None = None


class PartnerDecision(WireModel):
    """One partner's decision inside a ROUTED audit record."""

    partner: AgencyId
    decision: str
    rule: str
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    factors: tuple[Factor, ...] = Field(default=(), max_length=100)

    _decision = field_validator("decision")(_decision_shape)
    _rule = field_validator("rule")(_rule_shape)


class AuditRecord(WireModel):
    """The router's decisions on one bulletin: one (bulletin, partner) pair in the top-level
    fields (version 1, and duplicates), or every partner's in ``decisions`` (``ROUTED``).
    Readers that want one decision per pair use :meth:`per_partner` on either. ``facts``
    (version 3) are the bulletin's facts the decisions read; None on older records."""

    avro_version: ClassVar[int] = 3

    bulletin_id: Uuid
    origin: AgencyId
    partner: AgencyId
    decision: str
    rule: str
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    factors: tuple[Factor, ...] = Field(default=(), max_length=100)
    decided_at: UtcTime
    source_topic: Name
    source_partition: int = Field(ge=0, le=2**31 - 1)
    source_offset: int = Field(ge=0, le=2**63 - 1)
    # An exchange has a few dozen agencies; the bound keeps a forged record's cost bounded.
    decisions: tuple[PartnerDecision, ...] = Field(default=(), max_length=1000)
    facts: BulletinFacts | None = None

    _decision = field_validator("decision")(_decision_shape)
    _rule = field_validator("rule")(_rule_shape)

    @model_validator(mode="after")
    def _routed_carries_decisions(self) -> Self:
        if self.decisions and self.decision not in _DECISIONS_ALLOWED:
            raise ValueError(
                "only ROUTED, RERELEASED and RECALLED records carry per-partner decisions"
            )
        if self.decision in _DECISIONS_REQUIRED and not self.decisions:
            raise ValueError(f"a {self.decision} record carries its partners' decisions")
        return self

    def per_partner(self) -> tuple[AuditRecord, ...]:
        """One version-1-shaped record per (bulletin, partner) decision."""
        if not self.decisions:
            return (self,)
        return tuple(
            self.model_copy(
                update={
                    "partner": d.partner,
                    "decision": d.decision,
                    "rule": d.rule,
                    "score": d.score,
                    "factors": d.factors,
                    "decisions": (),
                }
            )
            for d in self.decisions
        )
