"""What flows from the feed to the sinks: a verified delivery or a quarantined record.

Plain frozen values with no I/O; the Kafka record is copied into :class:`FeedRecord` at the
edge so everything below it is testable without aiokafka.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from schemas.bulletin import Reference
from schemas.models import ThreatBulletin
from schemas.recall import BulletinRecall


class Release(StrEnum):
    """The ``enlace-release`` header value."""

    FULL = "full"
    TEARLINE = "tearline"


class StoreOutcome(StrEnum):
    """What the embedded store did with a delivery."""

    INSERTED = "inserted"
    UPGRADED = "upgraded"  # a full copy replaced the tearline we held
    DUPLICATE = "duplicate"  # already held (at-least-once redelivery), nothing changed


class RecallOutcome(StrEnum):
    """What the embedded store did with a verified recall (a metrics label)."""

    APPLIED = "applied"  # the held bulletin is now withdrawn
    PENDING = "pending"  # not held (yet): kept, applied if the bulletin arrives
    DUPLICATE = "duplicate"  # this bulletin's recall was already recorded: nothing changed


@dataclass(frozen=True)
class FeedRecord:
    """A Kafka record of the feed, as received."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None = None

    @classmethod
    def from_kafka(cls, rec: Any) -> FeedRecord:
        """Copy an aiokafka ConsumerRecord (untyped) into our own value type."""
        return cls(
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            key=rec.key,
            value=bytes(rec.value) if rec.value is not None else b"",
            headers=tuple((k, bytes(v) if v is not None else b"") for k, v in rec.headers or ()),
            timestamp_ms=rec.timestamp,
        )

    def headers_json(self) -> list[dict[str, str]]:
        """Headers in a JSON-safe form (values base64), for quarantine evidence."""
        return [
            {"name": name, "value_b64": base64.b64encode(value).decode("ascii")}
            for name, value in self.headers
        ]


@dataclass(frozen=True)
class Delivered:
    """A record whose originator signature verified and which decoded to a bulletin."""

    record: FeedRecord
    bulletin: ThreatBulletin
    release: Release
    key_id: str
    signature: bytes
    received_at: datetime
    # The bytes ``signature`` covers when they are not the record's own: a sealed release's
    # opened body (wire format 2).
    signed_bytes: bytes | None = None
    # What the bulletin says it relates to, when not its own ``references``: a sealed
    # tearline's body drops them, but its signed envelope (in clear, read by the router and
    # every recipient) still carries them.
    envelope_references: tuple[Reference, ...] | None = None

    @property
    def references(self) -> tuple[Reference, ...]:
        if self.envelope_references is not None:
            return self.envelope_references
        return self.bulletin.references

    @property
    def signed_value(self) -> bytes:
        """What the originator signed, kept so a store can verify it again later."""
        return self.record.value if self.signed_bytes is None else self.signed_bytes

    @property
    def bulletin_id(self) -> str:
        return self.bulletin.bulletin_id

    @property
    def origin(self) -> str:
        return self.bulletin.origin

    def bulletin_json(self) -> dict[str, Any]:
        out: dict[str, Any] = self.bulletin.model_dump(mode="json")
        return out

    def summary_json(self) -> dict[str, Any]:
        """The delivery as one JSON object (JSONL lines, webhook bodies)."""
        return {
            "type": "bulletin",
            "bulletin_id": self.bulletin_id,
            "release": self.release.value,
            "origin": self.origin,
            "verification": {"verified": True, "key_id": self.key_id},
            "received_at": iso(self.received_at),
            "source": source_json(self.record),
            "bulletin": self.bulletin_json(),
        }


@dataclass(frozen=True)
class Recalled:
    """A recall (``enlace-release: recall``) whose originator signature verified: the
    originator withdraws ``recall.bulletin_id``. The store still checks it against the
    bulletin's own origin (:func:`consumers.lifecycle.screen_recalls`)."""

    record: FeedRecord
    recall: BulletinRecall
    key_id: str
    signature: bytes
    received_at: datetime

    @property
    def bulletin_id(self) -> str:
        return self.recall.bulletin_id

    @property
    def origin(self) -> str:
        return self.recall.origin

    def summary_json(self) -> dict[str, Any]:
        """The recall as one JSON object (JSONL lines, webhook bodies, sink markers)."""
        r = self.recall
        return {
            "type": "recall",
            "recall_id": r.recall_id,
            "bulletin_id": r.bulletin_id,
            "origin": r.origin,
            "recalled_at": iso(r.recalled_at),
            "reason": r.reason,
            "verification": {"verified": True, "key_id": self.key_id},
            "received_at": iso(self.received_at),
            "source": source_json(self.record),
        }


@dataclass(frozen=True)
class Quarantined:
    """A record that failed verification or decoding; kept with the reason, never dropped."""

    record: FeedRecord
    reason: str  # a stable code (metrics label)
    detail: str
    received_at: datetime
    origin: str | None = None
    key_id: str | None = None
    bulletin_id: str | None = None
    release: str | None = None

    def summary_json(self, *, with_bytes: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "quarantine",
            "reason": self.reason,
            "detail": self.detail,
            "origin": self.origin,
            "key_id": self.key_id,
            "bulletin_id": self.bulletin_id,
            "release": self.release,
            "received_at": iso(self.received_at),
            "source": source_json(self.record),
        }
        if with_bytes:
            out["headers"] = self.record.headers_json()
            out["key_b64"] = (
                base64.b64encode(self.record.key).decode("ascii") if self.record.key else None
            )
            out["value_b64"] = base64.b64encode(self.record.value).decode("ascii")
        return out


@dataclass(frozen=True)
class Delivery:
    """A bulletin this agency's store now holds (passed to ``on_delivery``)."""

    agency: str
    bulletin: ThreatBulletin
    release: Release
    key_id: str
    outcome: StoreOutcome
    latency_s: float
    topic: str
    partition: int
    offset: int


Item = Delivered | Quarantined | Recalled


def source_json(record: FeedRecord) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def iso(value: datetime) -> str:
    """Fixed-width UTC ISO 8601 (sorts lexicographically, as SQLite compares text)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def deliveries(items: Sequence[Item]) -> list[Delivered]:
    return [item for item in items if isinstance(item, Delivered)]


def quarantined(items: Sequence[Item]) -> list[Quarantined]:
    return [item for item in items if isinstance(item, Quarantined)]


def recalls(items: Sequence[Item]) -> list[Recalled]:
    return [item for item in items if isinstance(item, Recalled)]
