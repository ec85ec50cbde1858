"""Settings of the country producer service (``ENLACE_*`` environment, read only by the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from enlace.core.registry import check_agency_id
from enlace.core.settings import KafkaSettings
from enlace.core.topics import outbound
from schemas.codec import DEFAULT_MAX_RECORD_BYTES

OnError = Literal["skip", "abort"]


class PublisherSettings(KafkaSettings):
    """How an agency publishes. Environment: ``ENLACE_<FIELD>`` (e.g. ``ENLACE_AGENCY``)."""

    agency: str = Field(description="The publishing agency's id, e.g. pa-senafront.")
    # Named so the environment variable reads ENLACE_PRODUCER_KEY_FILE.
    producer_key_file: Path | None = Field(
        default=None, description="Private key file written by `enlace keys generate`."
    )
    keys_file: Path | None = Field(
        default=None,
        description="Key directory (keys.yaml); when set, the publisher refuses to start "
        "unless its own key is listed there, matching and valid (the router would "
        "dead-letter everything otherwise).",
    )
    topic: str | None = Field(
        default=None,
        description="Override of the outbound topic (tests); default outbound(agency).",
    )
    # The router refuses records over DEFAULT_MAX_RECORD_BYTES; larger would only dead-letter.
    max_bulletin_bytes: int = Field(
        default=DEFAULT_MAX_RECORD_BYTES, ge=1024, le=DEFAULT_MAX_RECORD_BYTES
    )
    delivery_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long a bulletin may wait for the broker's acknowledgement before it "
        "is reported as not delivered (aiokafka's idempotent mode never times out itself).",
    )
    close_timeout_s: float = Field(default=10.0, gt=0, le=600)
    watch_dir: Path | None = None
    watch_interval_s: float = Field(default=1.0, gt=0, le=60)
    watch_retry_max_s: float = Field(
        default=60.0, gt=0, description="Longest pause between re-sends of an unacknowledged file."
    )
    intake_enabled: bool = Field(default=True, description="Serve POST /bulletins beside /metrics.")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8470, ge=0, le=65535)
    http_max_body_bytes: int = Field(default=4_194_304, ge=1024)
    http_read_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="Deadline for a request body to arrive (408)."
    )
    http_token: SecretStr | None = Field(
        default=None, description="When set, POST /bulletins requires 'Authorization: Bearer …'."
    )
    max_batch: int = Field(
        default=2000, ge=1, le=100_000, description="Bulletins per publish_many call from files."
    )
    on_error: OnError = "abort"

    @field_validator("agency")
    @classmethod
    def _agency_id(cls, value: str) -> str:
        return check_agency_id(value)

    @property
    def outbound_topic(self) -> str:
        return self.topic or outbound(self.agency)
