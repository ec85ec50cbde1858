"""Field types shared by the models: each carries the rule Avro cannot express.

Every string is NFC-normalized before its length is checked, so two spellings of the same
text encode to the same bytes (signatures depend on it). Bidirectional-override characters
are refused everywhere: they let a title display differently from what was signed.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict

from enlace.core.registry import check_agency_id
from schemas.countries import check_country

_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")
_SCHEME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _text_rule(min_len: int, max_len: int, *, multiline: bool) -> Callable[[str], str]:
    allowed_controls = {"\n", "\t"} if multiline else set()
    # One regex pass finds any candidate (Cc controls, bidi controls); the slow loop below only
    # runs to name the offending character. Decoding validates every string of every record.
    suspicious = re.compile(
        "[\x00-\x08\x0b-\x1f\x7f-\x9f" + "".join(sorted(_BIDI_CONTROLS)) + "]"
        if multiline
        else "[\x00-\x1f\x7f-\x9f" + "".join(sorted(_BIDI_CONTROLS)) + "]"
    )

    def check(value: str) -> str:
        if not unicodedata.is_normalized("NFC", value):
            value = unicodedata.normalize("NFC", value)
        if not min_len <= len(value) <= max_len:
            raise ValueError(f"must be {min_len}-{max_len} characters after NFC (got {len(value)})")
        if min_len and not value.strip():
            raise ValueError("must not be blank")
        if suspicious.search(value) is None:
            return value
        for char in value:
            if char in _BIDI_CONTROLS:
                raise ValueError(f"must not contain bidirectional control U+{ord(char):04X}")
            if unicodedata.category(char) == "Cc" and char not in allowed_controls:
                raise ValueError(f"must not contain control character U+{ord(char):04X}")
        return value

    return check


def _uuid(value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None
    canonical = str(parsed)
    # Only the canonical spelling: braces, urn: prefixes and missing hyphens are refused so an
    # id compares equal to itself everywhere (dedup, keys, references).
    if canonical != value.lower():
        raise ValueError(f"{value!r} is not a canonical hyphenated UUID")
    return canonical


def _utc_millis(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must be timezone-aware (e.g. 2026-01-31T12:00:00Z)")
    value = value.astimezone(UTC)
    # Avro timestamp-millis keeps milliseconds: truncate now so the model round-trips exactly.
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _agency(value: str) -> str:
    return check_agency_id(value)


def _recipient(value: str) -> str:
    """A releasable_to entry: an ISO country code (``CR``) or an agency id (``cr-msp``)."""
    if len(value) == 2:
        return check_country(value)
    return check_agency_id(value)


def _language(value: str) -> str:
    if not _LANGUAGE.fullmatch(value):
        raise ValueError(f"{value!r} is not a BCP 47 language tag like 'es' or 'es-PA'")
    return value


def _scheme(value: str) -> str:
    if not _SCHEME.fullmatch(value):
        raise ValueError(f"{value!r} must be a lowercase scheme name like 'imo' or 'passport'")
    return value


Uuid = Annotated[str, AfterValidator(_uuid)]
UtcTime = Annotated[datetime, AfterValidator(_utc_millis)]
AgencyId = Annotated[str, AfterValidator(_agency)]
Country = Annotated[str, AfterValidator(check_country)]
Recipient = Annotated[str, AfterValidator(_recipient)]
Language = Annotated[str, AfterValidator(_language)]
Scheme = Annotated[str, AfterValidator(_scheme)]
Title = Annotated[str, AfterValidator(_text_rule(1, 200, multiline=False))]
Summary = Annotated[str, AfterValidator(_text_rule(1, 2000, multiline=True))]
Details = Annotated[str, AfterValidator(_text_rule(1, 20000, multiline=True))]
Name = Annotated[str, AfterValidator(_text_rule(1, 200, multiline=False))]
ShortText = Annotated[str, AfterValidator(_text_rule(1, 100, multiline=False))]
Unit = Annotated[str, AfterValidator(_text_rule(1, 20, multiline=False))]
IndicatorValue = Annotated[str, AfterValidator(_text_rule(1, 2000, multiline=False))]
Note = Annotated[str, AfterValidator(_text_rule(0, 2000, multiline=True))]


def _to_avro(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _to_avro(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_to_avro(item) for item in value]
    if isinstance(value, str):
        return str(value)  # StrEnum members become their plain symbol
    return value


def _from_avro(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _from_avro(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_avro(item) for item in value]
    if isinstance(value, uuid.UUID):
        return str(value)  # fastavro reads logicalType uuid as uuid.UUID
    return value


class WireModel(BaseModel):
    """Frozen, strict-shape base of every model that mirrors an Avro record."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # The schema version this model mirrors: the codec reads into it and writes with it, so a
    # catalog that already holds a newer version never hands the model fields it lacks.
    avro_version: ClassVar[int] = 1

    def to_avro(self) -> dict[str, Any]:
        """The datum for fastavro: plain str symbols, lists, tz-aware datetimes."""
        datum: dict[str, Any] = _to_avro(self.model_dump())
        return datum

    @classmethod
    def from_avro(cls, datum: dict[str, Any]) -> Self:
        """Build from a fastavro datum (raises pydantic's ValidationError on rule violations)."""
        return cls.model_validate(_from_avro(datum))
