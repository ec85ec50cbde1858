"""The controlled vocabulary of the exchange, shared by the schemas, trust and release logic.

Enum values are the Avro symbols. Every enum that may grow has an ``UNKNOWN``/``OTHER``
default symbol in the Avro schema so older readers map newer symbols to it.
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    DRUG_TRAFFICKING = "DRUG_TRAFFICKING"
    ARMS_TRAFFICKING = "ARMS_TRAFFICKING"
    HUMAN_TRAFFICKING = "HUMAN_TRAFFICKING"
    MIGRANT_SMUGGLING = "MIGRANT_SMUGGLING"
    GANGS = "GANGS"
    ARMED_GROUPS = "ARMED_GROUPS"
    TERRORISM = "TERRORISM"
    CYBER = "CYBER"
    NATURAL_DISASTER = "NATURAL_DISASTER"
    CORRUPTION = "CORRUPTION"
    MONEY_LAUNDERING = "MONEY_LAUNDERING"
    OTHER = "OTHER"


class Severity(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class Classification(StrEnum):
    """Ordered: UNCLASSIFIED < RESTRICTED < CONFIDENTIAL < SECRET (compare with ``rank``)."""

    UNCLASSIFIED = "UNCLASSIFIED"
    RESTRICTED = "RESTRICTED"
    CONFIDENTIAL = "CONFIDENTIAL"
    SECRET = "SECRET"  # noqa: S105 - a classification level, not a credential

    @property
    def rank(self) -> int:
        return _CLASSIFICATION_ORDER.index(self)


_CLASSIFICATION_ORDER = list(Classification)


class Tlp(StrEnum):
    """Traffic Light Protocol 2.0."""

    CLEAR = "CLEAR"
    GREEN = "GREEN"
    AMBER = "AMBER"
    AMBER_STRICT = "AMBER_STRICT"
    RED = "RED"


class Caveat(StrEnum):
    ORCON = "ORCON"  # originator controlled: recipients may not pass it on
    NOFORN = "NOFORN"
    LAW_ENFORCEMENT_ONLY = "LAW_ENFORCEMENT_ONLY"
    NO_PUBLIC_RELEASE = "NO_PUBLIC_RELEASE"
    OTHER = "OTHER"


class SourceReliability(StrEnum):
    """Admiralty code, source reliability."""

    A = "A"  # completely reliable
    B = "B"  # usually reliable
    C = "C"  # fairly reliable
    D = "D"  # not usually reliable
    E = "E"  # unreliable
    F = "F"  # cannot be judged


class InfoCredibility(StrEnum):
    """Admiralty code, information credibility (Avro symbols cannot start with a digit)."""

    C1 = "C1"  # confirmed
    C2 = "C2"  # probably true
    C3 = "C3"  # possibly true
    C4 = "C4"  # doubtful
    C5 = "C5"  # improbable
    C6 = "C6"  # cannot be judged


class SourceType(StrEnum):
    PATROL = "PATROL"
    SEIZURE = "SEIZURE"
    CITIZEN_REPORT = "CITIZEN_REPORT"
    HUMINT = "HUMINT"
    SIGINT = "SIGINT"
    OSINT = "OSINT"
    IMINT = "IMINT"
    LIAISON = "LIAISON"
    FINANCIAL = "FINANCIAL"
    TECHNICAL = "TECHNICAL"
    OTHER = "OTHER"


class RouteMode(StrEnum):
    LAND = "LAND"
    AIR = "AIR"
    RIVER = "RIVER"
    SEA = "SEA"
    MIXED = "MIXED"
    UNKNOWN = "UNKNOWN"


class EntityKind(StrEnum):
    PERSON = "PERSON"
    ORGANIZATION = "ORGANIZATION"
    VESSEL = "VESSEL"
    AIRCRAFT = "AIRCRAFT"
    VEHICLE = "VEHICLE"
    PHONE = "PHONE"
    ACCOUNT = "ACCOUNT"
    OTHER = "OTHER"


class IndicatorType(StrEnum):
    IPV4 = "IPV4"
    IPV6 = "IPV6"
    DOMAIN = "DOMAIN"
    URL = "URL"
    EMAIL = "EMAIL"
    FILE_SHA256 = "FILE_SHA256"
    FILE_MD5 = "FILE_MD5"
    CRYPTO_WALLET = "CRYPTO_WALLET"
    OTHER = "OTHER"


class TrustEventKind(StrEnum):
    RECEIPT = "RECEIPT"
    FEEDBACK_ACTIONED = "FEEDBACK_ACTIONED"
    FEEDBACK_USEFUL = "FEEDBACK_USEFUL"
    FEEDBACK_NOT_USEFUL = "FEEDBACK_NOT_USEFUL"
    INCIDENT_MISHANDLING = "INCIDENT_MISHANDLING"
    INCIDENT_LEAK = "INCIDENT_LEAK"
    INCIDENT_CORRUPTION = "INCIDENT_CORRUPTION"
    OTHER = "OTHER"


class ReleaseKind(StrEnum):
    """What a partner receives: the ``enlace-release`` header value is the lowercase form."""

    FULL = "FULL"
    TEARLINE = "TEARLINE"
    WITHHELD = "WITHHELD"


class ReferenceKind(StrEnum):
    """How a bulletin relates to one it references."""

    RELATED = "RELATED"
    SUPERSEDES = "SUPERSEDES"
    UPDATES = "UPDATES"
