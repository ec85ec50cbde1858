"""Settings of the country producer service (``ENLACE_*`` environment, read only by the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from enlace.core.clock import MAX_DRILL_OFFSET_S, MAX_FUTURE, MAX_PAST
from enlace.core.errors import ConfigError
from enlace.core.http import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_IDLE_TIMEOUT_S
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
    wire_format: Literal[1, 2] | None = Field(
        default=None,
        description="2: bodies sealed so that only the partners the router releases to can "
        "read them (needs keys_file, the partners' keys); 1: signed but in clear. Default: 2 "
        "when keys_file is set, else 1 (with a warning).",
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
    admission_max_future_s: float = Field(
        default=MAX_FUTURE.total_seconds(),
        ge=0,
        description="The router's admission window (its max_future_seconds): a bulletin "
        "issued further ahead of this publisher's clock is refused before sending.",
    )
    admission_max_past_s: float = Field(
        default=MAX_PAST.total_seconds(),
        ge=60,
        description="The router's max_past_seconds: an older issued_at is refused before sending.",
    )
    fault_clock_offset_s: float = Field(
        default=0.0,
        ge=-MAX_DRILL_OFFSET_S,
        le=MAX_DRILL_OFFSET_S,
        description="Fault drills only: run the publisher's clock this many seconds ahead "
        "(negative: behind) of the host's, for issued_at, the clock checks and the records' "
        "Kafka timestamps alike, to rehearse a skewed host. Never set in production.",
    )
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
    http_header_timeout_s: float = Field(
        default=DEFAULT_HEADER_TIMEOUT_S,
        gt=0,
        le=600,
        description="Deadline for a request's line and headers, from its first byte (408).",
    )
    http_idle_timeout_s: float = Field(
        default=DEFAULT_IDLE_TIMEOUT_S,
        gt=0,
        le=3600,
        description="A connection with no request for this long is closed (keep-alive).",
    )
    http_token: SecretStr | None = Field(
        default=None, description="The bearer token POST /bulletins requires (Authorization)."
    )
    http_token_file: Path | None = Field(
        default=None, description="A file holding the bearer token (instead of http_token)."
    )
    http_insecure_no_auth: bool = Field(
        default=False,
        description="Serve POST /bulletins without a token; only on a loopback address.",
    )
    http_tls_cert: Path | None = Field(
        default=None, description="PEM certificate chain: serve HTTPS (with http_tls_key)."
    )
    http_tls_key: Path | None = Field(default=None, description="PEM private key of the cert.")
    max_batch: int = Field(
        default=2000, ge=1, le=100_000, description="Bulletins per publish_many call from files."
    )
    on_error: OnError = "abort"

    @field_validator("agency")
    @classmethod
    def _agency_id(cls, value: str) -> str:
        return check_agency_id(value)

    @model_validator(mode="after")
    def _sealing_needs_the_directory(self) -> PublisherSettings:
        if self.wire_format == 2 and self.keys_file is None:
            raise ConfigError(
                "wire format 2 seals each body for the partners' keys: set ENLACE_KEYS_FILE "
                "(--keys deploy/keys.yaml)"
            )
        return self

    @property
    def sealed(self) -> bool:
        return self.wire_format == 2 or (self.wire_format is None and self.keys_file is not None)

    @model_validator(mode="after")
    def _tls_pair(self) -> PublisherSettings:
        if (self.http_tls_cert is None) != (self.http_tls_key is None):
            raise ConfigError(
                "TLS needs both a certificate and its key: set --tls-cert and --tls-key "
                "(ENLACE_HTTP_TLS_CERT, ENLACE_HTTP_TLS_KEY), or neither"
            )
        return self

    @property
    def outbound_topic(self) -> str:
        return self.topic or outbound(self.agency)
