"""The models of the exchange and the validation entry points producers and services use.

``validate_bulletin``/``validate_event``/``validate_audit`` turn pydantic's errors into one
:class:`enlace.core.errors.ValidationError` whose ``problems`` are ``(field.path, rule)`` pairs.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from enlace.core.errors import ValidationError
from schemas.bulletin import (
    MAX_ENTITIES,
    MAX_IDENTIFIERS,
    MAX_INDICATORS,
    MAX_RECIPIENTS,
    MAX_REFERENCES,
    MAX_VIA,
    Entity,
    Identifier,
    Indicator,
    Location,
    Reference,
    Route,
    Seizure,
    ThreatBulletin,
)
from schemas.events import (
    AUDIT_DECISIONS,
    BULLETIN_KINDS,
    INCIDENT_KINDS,
    ROUTED,
    ROUTED_RULE,
    AuditRecord,
    BulletinFacts,
    Factor,
    PartnerDecision,
    TrustEvent,
)
from schemas.fields import WireModel

__all__ = [
    "AUDIT_DECISIONS",
    "BULLETIN_KINDS",
    "INCIDENT_KINDS",
    "MAX_ENTITIES",
    "MAX_IDENTIFIERS",
    "MAX_INDICATORS",
    "MAX_RECIPIENTS",
    "MAX_REFERENCES",
    "MAX_VIA",
    "ROUTED",
    "ROUTED_RULE",
    "AuditRecord",
    "BulletinFacts",
    "Entity",
    "Factor",
    "Identifier",
    "Indicator",
    "Location",
    "PartnerDecision",
    "Reference",
    "Route",
    "Seizure",
    "ThreatBulletin",
    "TrustEvent",
    "WireModel",
    "problems_of",
    "validate_audit",
    "validate_bulletin",
    "validate_event",
]

M = TypeVar("M", bound=BaseModel)

_PREFIXES = ("Value error, ", "Assertion failed, ")


def problems_of(exc: PydanticValidationError) -> list[tuple[str, str]]:
    """``(field.path, rule)`` for each error, e.g. ``("location.lat", "must be <= 90")``."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"]) or "(record)"
        message = error["msg"]
        for prefix in _PREFIXES:
            message = message.removeprefix(prefix)
        problems.append((path, message))
    return problems


def _validate(model: type[M], obj: Any, what: str) -> M:
    if isinstance(obj, model):
        return obj
    try:
        return model.model_validate(obj)
    except PydanticValidationError as exc:
        problems = problems_of(exc)
        listing = "; ".join(f"{path}: {rule}" for path, rule in problems)
        raise ValidationError(f"{what} is invalid: {listing}", problems) from exc


def validate_bulletin(obj: Any) -> ThreatBulletin:
    """A :class:`ThreatBulletin` from a JSON-like mapping, or ValidationError naming each rule."""
    return _validate(ThreatBulletin, obj, "bulletin")


def validate_event(obj: Any) -> TrustEvent:
    return _validate(TrustEvent, obj, "trust event")


def validate_audit(obj: Any) -> AuditRecord:
    return _validate(AuditRecord, obj, "audit record")
