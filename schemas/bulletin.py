"""The ThreatBulletin model (mirrors ``threat_bulletin.v1.avsc``) and its nested records.

Cross-field rules are field validators on the later field so errors name that field.
Registry membership (is this agency part of the exchange?) is the services' check, not ours.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, ValidationInfo, field_validator, model_validator

from schemas.fields import (
    AgencyId,
    Country,
    Details,
    IndicatorValue,
    Language,
    Name,
    Recipient,
    Scheme,
    ShortText,
    Summary,
    Title,
    Unit,
    UtcTime,
    Uuid,
    WireModel,
)
from schemas.vocab import (
    Category,
    Caveat,
    Classification,
    EntityKind,
    IndicatorType,
    InfoCredibility,
    ReferenceKind,
    RouteMode,
    Severity,
    SourceReliability,
    SourceType,
    Tlp,
)

MAX_ENTITIES = 100
MAX_IDENTIFIERS = 20
MAX_INDICATORS = 500
MAX_REFERENCES = 50
MAX_RECIPIENTS = 64
MAX_VIA = 20


class Location(WireModel):
    lat: float | None = Field(default=None, ge=-90.0, le=90.0)
    lon: float | None = Field(default=None, ge=-180.0, le=180.0)
    country: Country
    place: Name | None = None

    @model_validator(mode="after")
    def _both_coordinates(self) -> Location:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon must be given together")
        return self


class Route(WireModel):
    mode: RouteMode
    from_country: Country | None = None
    to_country: Country | None = None
    via: tuple[Country, ...] = Field(default=(), max_length=MAX_VIA)


class Identifier(WireModel):
    scheme: Scheme
    value: Name


class Entity(WireModel):
    kind: EntityKind
    name: Name
    identifiers: tuple[Identifier, ...] = Field(default=(), max_length=MAX_IDENTIFIERS)
    country: Country | None = None
    role: ShortText | None = None


class Seizure(WireModel):
    commodity: ShortText
    quantity: float = Field(ge=0.0)
    unit: Unit


class Indicator(WireModel):
    type: IndicatorType
    value: IndicatorValue


class Reference(WireModel):
    bulletin_id: Uuid
    relation: ReferenceKind = ReferenceKind.RELATED


class _RoutingRules(WireModel):
    """The rules on the fields a bulletin and its routing envelope share (wire format 2
    copies them into the envelope; the recipient checks the two agree)."""

    @field_validator("origin_country", check_fields=False)
    @classmethod
    def _country_of_origin(cls, value: str, info: ValidationInfo) -> str:
        origin = info.data.get("origin")
        if origin is not None and value != origin[:2].upper():
            raise ValueError(f"must be the origin agency's country {origin[:2].upper()!r}")
        return value

    @field_validator("valid_until", check_fields=False)
    @classmethod
    def _after_issue(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        issued = info.data.get("issued_at")
        if value is not None and issued is not None and value <= issued:
            raise ValueError("must be after issued_at")
        return value

    @field_validator("releasable_to", check_fields=False)
    @classmethod
    def _recipients(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("must not list a recipient twice")
        if info.data.get("tlp") is Tlp.RED and not value:
            raise ValueError("TLP:RED requires naming the recipients in releasable_to")
        return value

    @field_validator("caveats", check_fields=False)
    @classmethod
    def _unique_caveats(cls, value: tuple[Caveat, ...]) -> tuple[Caveat, ...]:
        if len(set(value)) != len(value):
            raise ValueError("must not list a caveat twice")
        return value

    @field_validator("tearline_classification", check_fields=False)
    @classmethod
    def _tearline_not_above(cls, value: Classification, info: ValidationInfo) -> Classification:
        full = info.data.get("classification")
        if full is not None and value.rank > full.rank:
            raise ValueError(f"must not be above classification ({full.value})")
        return value

    @field_validator("references", check_fields=False)
    @classmethod
    def _not_self(cls, value: tuple[Reference, ...], info: ValidationInfo) -> tuple[Reference, ...]:
        if any(ref.bulletin_id == info.data.get("bulletin_id") for ref in value):
            raise ValueError("a bulletin must not reference itself")
        return value


class ThreatBulletin(_RoutingRules):
    """A threat bulletin. Build from JSON with ``model_validate``; see ``validate_bulletin``."""

    bulletin_id: Uuid
    origin: AgencyId
    origin_country: Country
    issued_at: UtcTime
    valid_until: UtcTime | None = None
    category: Category
    severity: Severity
    classification: Classification
    tlp: Tlp
    releasable_to: tuple[Recipient, ...] = Field(default=(), max_length=MAX_RECIPIENTS)
    caveats: tuple[Caveat, ...] = ()
    tearline_classification: Classification
    title: Title
    summary: Summary
    details: Details | None = None
    source_reliability: SourceReliability
    info_credibility: InfoCredibility
    source_type: SourceType
    location: Location | None = None
    route: Route | None = None
    entities: tuple[Entity, ...] = Field(default=(), max_length=MAX_ENTITIES)
    seizure: Seizure | None = None
    indicators: tuple[Indicator, ...] = Field(default=(), max_length=MAX_INDICATORS)
    references: tuple[Reference, ...] = Field(default=(), max_length=MAX_REFERENCES)
    language: Language


class BulletinEnvelope(_RoutingRules):
    """What routing, audit and the lifecycle read of a bulletin, in clear in wire format 2
    (``sealed_bulletin.v1.avsc``); the same fields, types and rules as the bulletin's."""

    bulletin_id: Uuid
    origin: AgencyId
    origin_country: Country
    issued_at: UtcTime
    valid_until: UtcTime | None = None
    category: Category
    classification: Classification
    tlp: Tlp
    releasable_to: tuple[Recipient, ...] = Field(default=(), max_length=MAX_RECIPIENTS)
    caveats: tuple[Caveat, ...] = ()
    tearline_classification: Classification
    references: tuple[Reference, ...] = Field(default=(), max_length=MAX_REFERENCES)

    @classmethod
    def of(cls, bulletin: ThreatBulletin) -> BulletinEnvelope:
        return cls.model_validate({name: getattr(bulletin, name) for name in cls.model_fields})
