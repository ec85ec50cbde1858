"""The agency registry (``deploy/agencies.yaml``): which agencies take part in the exchange."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from enlace.core.errors import RegistryError

# Lowercase ASCII only: "cc-name". Confusable Unicode look-alikes are refused by construction.
AGENCY_ID_PATTERN = re.compile(r"^[a-z]{2}-[a-z0-9]{2,30}$")


def check_agency_id(value: str) -> str:
    """Return the agency id if well-formed, else raise ``ValueError`` naming the rule."""
    normalized = unicodedata.normalize("NFC", value)
    if not normalized.isascii():
        raise ValueError(
            f"agency id {value!r} contains non-ASCII characters (confusable look-alikes refused)"
        )
    if not AGENCY_ID_PATTERN.fullmatch(normalized):
        raise ValueError(
            f"agency id {value!r} must be lowercase 'cc-name' (2-letter country, dash, 2-30 a-z0-9)"
        )
    return normalized


class Quotas(BaseModel):
    """What one agency's principal may take from each broker (Kafka client quotas).

    A throttled client is delayed, not refused: a flood from one agency slows that agency and
    leaves the brokers' capacity to the others. The defaults are far above a real agency's
    traffic (a bulletin is a few KiB) and far below a broker's.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    producer_byte_rate: int = Field(default=1_048_576, ge=1024, description="bytes/s written")
    consumer_byte_rate: int = Field(default=8_388_608, ge=1024, description="bytes/s fetched")
    # An integer: Strimzi's KafkaUser takes only whole percentages.
    request_percentage: int = Field(
        default=50, ge=1, le=10_000, description="% of one broker request thread"
    )

    def kafka_configs(self) -> dict[str, float]:
        """As Kafka's user quota configs (what ConfigCommand sets and describes)."""
        return {
            "producer_byte_rate": float(self.producer_byte_rate),
            "consumer_byte_rate": float(self.consumer_byte_rate),
            "request_percentage": float(self.request_percentage),
        }


class Agency(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str = Field(min_length=1, max_length=200)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    quotas: Quotas | None = Field(default=None, description="Overrides the registry's quotas.")

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return check_agency_id(value)


class Registry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    agencies: tuple[Agency, ...]
    quotas: Quotas = Field(default_factory=Quotas, description="Every agency's, by default.")

    @field_validator("agencies")
    @classmethod
    def _unique(cls, agencies: tuple[Agency, ...]) -> tuple[Agency, ...]:
        seen: set[str] = set()
        for agency in agencies:
            if agency.id in seen:
                raise ValueError(f"agency {agency.id!r} is listed twice")
            if agency.id[:2] != agency.country.lower():
                raise ValueError(
                    f"agency {agency.id!r}: id prefix must be its country {agency.country!r}"
                )
            seen.add(agency.id)
        return agencies

    def __iter__(self) -> Iterator[Agency]:  # type: ignore[override]  # iterate agencies, not fields
        return iter(self.agencies)

    def __len__(self) -> int:
        return len(self.agencies)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(agency.id for agency in self.agencies)

    def __contains__(self, agency_id: object) -> bool:
        return agency_id in self.ids

    def get(self, agency_id: str) -> Agency:
        for agency in self.agencies:
            if agency.id == agency_id:
                return agency
        raise RegistryError(f"unknown agency {agency_id!r}; known: {', '.join(self.ids)}")

    def country_of(self, agency_id: str) -> str:
        return self.get(agency_id).country

    def quotas_of(self, agency_id: str) -> Quotas:
        return self.get(agency_id).quotas or self.quotas

    @property
    def all_quotas(self) -> dict[str, Quotas]:
        return {agency.id: agency.quotas or self.quotas for agency in self.agencies}

    @classmethod
    def load(cls, path: Path) -> Registry:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RegistryError(f"cannot read agency registry {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise RegistryError(f"agency registry {path} is not valid YAML: {exc}") from exc
        try:
            return cls.model_validate(raw)
        except PydanticValidationError as exc:
            raise RegistryError(f"agency registry {path} is invalid:\n{exc}") from exc
