"""Settings of the partner consumer service (``ENLACE_*`` environment, frozen).

The feed topic is never configured directly: it is ``{topic_prefix}enlace.feed.{agency}``.
``topic_prefix`` exists so tests (and side-by-side exchanges) can namespace every topic; an
explicit ``feed_topic`` is accepted only when it names this agency's own feed, so a consumer
pointed at another agency's feed is refused at start, before it touches Kafka (the ACLs
refuse it again at the broker).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from consumers.drills import KillPoint
from enlace.core import topics
from enlace.core.errors import ConfigError
from enlace.core.registry import check_agency_id
from enlace.core.settings import DEFAULT_KEYS, DEFAULT_STATE_DIR, KafkaSettings
from schemas.codec import DEFAULT_MAX_RECORD_BYTES
from schemas.signing import DEFAULT_KEY_DIR

# A namespace for every topic, e.g. "t.3f9a0c.": lowercase, dot-terminated, and never itself an
# exchange prefix (so "enlace.feed.pa-senafront." cannot be smuggled in as a prefix).
_PREFIX = re.compile(r"^([a-z0-9][a-z0-9_-]*\.)*$")


class ConsumerSettings(KafkaSettings):
    """One agency's feed consumer. Environment: ``ENLACE_AGENCY``, ``ENLACE_SINKS``..."""

    agency: str
    sinks: tuple[str, ...] = Field(
        default=(),
        description="Sink URIs (sqlite:PATH, jsonl:PATH, stix:DIR, misp:DIR, webhook:URL).",
    )
    keys_file: Path = Field(default=DEFAULT_KEYS, description="The key directory (public keys).")
    key_file: Path | None = Field(
        default=None, description="This agency's private key; default: the one in key_dir."
    )
    key_dir: Path = DEFAULT_KEY_DIR
    state_dir: Path = DEFAULT_STATE_DIR
    topic_prefix: str = ""
    feed_topic: str | None = None
    group_id: str | None = None
    receipts: bool = True
    # A consumer killed without leaving the group holds its partitions until this expires.
    session_timeout_ms: int = Field(default=10_000, ge=6_000, le=300_000)
    batch_max_records: int = Field(default=200, ge=1, le=10_000)
    poll_timeout_ms: int = Field(default=500, ge=10, le=60_000)
    max_record_bytes: int = Field(default=DEFAULT_MAX_RECORD_BYTES, ge=1024)
    send_timeout_s: float = Field(default=30.0, gt=0)
    sink_retry_max_s: float = Field(default=10.0, gt=0)
    webhook_buffer: int = Field(default=1000, ge=1)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_max_backoff_s: float = Field(default=30.0, gt=0)
    http_port: int | None = Field(default=None, ge=0, le=65535)
    fault_kill_at: KillPoint | None = Field(
        default=None,
        description="Fault drills only: SIGKILL this process at after_sink_write, mid_batch "
        "or after_receipt (consumers/drills.py). Never set in production.",
    )
    fault_kill_after: int = Field(
        default=1, ge=1, description="Kill at this arrival at the drill's point."
    )
    fault_seed: int = Field(
        default=0, description="Non-zero: kill at a seeded arrival up to fault_kill_after."
    )

    @field_validator("agency")
    @classmethod
    def _agency(cls, value: str) -> str:
        return check_agency_id(value)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX.fullmatch(value) or "enlace." in value:
            raise ValueError(
                "topic_prefix must be empty or dot-terminated lowercase segments "
                "(like 't.3f9a0c.') and must not contain an exchange prefix"
            )
        return value

    def own_feed(self) -> str:
        """This agency's feed topic under ``topic_prefix``."""
        return f"{self.topic_prefix}{topics.feed(self.agency)}"

    def feed_topic_name(self) -> str:
        """The topic to consume; ConfigError if ``feed_topic`` names anything but our own feed."""
        own = self.own_feed()
        if self.feed_topic is not None and self.feed_topic != own:
            raise ConfigError(
                f"agency {self.agency!r} may consume only its own feed {own!r}, "
                f"not {self.feed_topic!r}"
            )
        return own

    def receipts_topic(self) -> str:
        return f"{self.topic_prefix}{topics.receipts(self.agency)}"

    def consumer_group(self) -> str:
        return self.group_id or topics.consumer_group(self.agency, self.topic_prefix)

    def default_store(self) -> Path:
        """Where the embedded SQLite store lives when no ``sqlite:`` sink is given."""
        return self.state_dir / "consumers" / self.agency / "inbox.sqlite3"

    def sink_uris(self) -> tuple[str, ...]:
        return self.sinks or (f"sqlite:{self.default_store()}",)
