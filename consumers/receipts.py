"""Trust events a partner sends back: receipts, feedback and incident reports.

Receipts have a deterministic ``event_id`` (UUIDv5 of reporter and bulletin), so a receipt
re-sent after a crash between the broker's acknowledgement and the store's "sent" mark is
the same event and the router can count it once. Feedback and incidents are deliberate acts
and get fresh ids.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from enlace.core.errors import ConfigError, DeliveryError, DeliveryTimeout
from schemas.envelope import seal_event
from schemas.models import TrustEvent
from schemas.signing import AgencyKey
from schemas.vocab import TrustEventKind

RECEIPT_NAMESPACE = uuid.UUID("0e7d5a52-93c1-4f0b-8f61-2a4c9d3b7e15")

FEEDBACK_KINDS: Mapping[str, TrustEventKind] = {
    "actioned": TrustEventKind.FEEDBACK_ACTIONED,
    "useful": TrustEventKind.FEEDBACK_USEFUL,
    "not-useful": TrustEventKind.FEEDBACK_NOT_USEFUL,
}
INCIDENT_KINDS: Mapping[str, TrustEventKind] = {
    "mishandling": TrustEventKind.INCIDENT_MISHANDLING,
    "leak": TrustEventKind.INCIDENT_LEAK,
    "corruption": TrustEventKind.INCIDENT_CORRUPTION,
}


def receipt_event_id(reporter: str, bulletin_id: str) -> str:
    return str(uuid.uuid5(RECEIPT_NAMESPACE, f"receipt|{reporter}|{bulletin_id}"))


def receipt_event(reporter: str, origin: str, bulletin_id: str, *, now: datetime) -> TrustEvent:
    """The receipt ``reporter`` sends to ``origin`` for one stored bulletin."""
    return TrustEvent(
        event_id=receipt_event_id(reporter, bulletin_id),
        kind=TrustEventKind.RECEIPT,
        reporter=reporter,
        subject=origin,
        bulletin_id=bulletin_id,
        occurred_at=now,
    )


def feedback_event(
    reporter: str, origin: str, bulletin_id: str, verdict: str, *, note: str | None, now: datetime
) -> TrustEvent:
    kind = FEEDBACK_KINDS.get(verdict)
    if kind is None:
        raise ConfigError(f"feedback must be one of {', '.join(FEEDBACK_KINDS)}, not {verdict!r}")
    return TrustEvent(
        event_id=str(uuid.uuid4()),
        kind=kind,
        reporter=reporter,
        subject=origin,
        bulletin_id=bulletin_id,
        occurred_at=now,
        note=note,
    )


def incident_event(
    reporter: str,
    against: str,
    kind_name: str,
    bulletin_id: str | None,
    *,
    note: str | None,
    now: datetime,
) -> TrustEvent:
    kind = INCIDENT_KINDS.get(kind_name)
    if kind is None:
        raise ConfigError(f"incident kind must be one of {', '.join(INCIDENT_KINDS)}")
    return TrustEvent(
        event_id=str(uuid.uuid4()),
        kind=kind,
        reporter=reporter,
        subject=against,
        bulletin_id=bulletin_id,
        occurred_at=now,
        note=note,
    )


async def publish_events(
    producer: AIOKafkaProducer,
    topic: str,
    events: Sequence[TrustEvent],
    key: AgencyKey,
    *,
    timeout_s: float,
) -> None:
    """Seal, send and await the acknowledgement of every event (idempotent producer).

    The deadline is ours: aiokafka's idempotent mode never times a batch out by itself.
    """
    sealed = [seal_event(event, key) for event in events]
    try:
        async with asyncio.timeout(timeout_s):
            futures = [
                await producer.send(topic, value=s.value, key=s.key, headers=s.headers)
                for s in sealed
            ]
            await asyncio.gather(*futures)
    except TimeoutError as exc:
        raise DeliveryTimeout(
            f"{len(events)} trust events not acknowledged in {timeout_s}s"
        ) from exc
    except KafkaError as exc:
        raise DeliveryError(f"trust events to {topic} failed: {exc!r}") from exc


def load_agency_key(agency: str, key_file: Path | None, key_dir: Path) -> AgencyKey:
    """The agency's signing key: ``key_file``, else the newest ``<agency>.*.key`` in ``key_dir``."""
    if key_file is not None:
        key = AgencyKey.load(key_file)
    else:
        directory = key_dir.expanduser()
        candidates = sorted(directory.glob(f"{agency}.*.key")) if directory.is_dir() else []
        if not candidates:
            raise ConfigError(
                f"no signing key for {agency!r} in {directory}; pass --key or create one with "
                "`enlace keys generate`"
            )
        key = max((AgencyKey.load(p) for p in candidates), key=lambda k: k.valid_from)
    if key.agency != agency:
        raise ConfigError(f"key {key.key_id!r} belongs to {key.agency!r}, not {agency!r}")
    return key
