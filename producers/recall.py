"""Recalling a bulletin: the originator withdraws one it published (docs: "Bulletin lifecycle").

A recall is a small signed :class:`~schemas.recall.BulletinRecall` on the originator's
outbound topic, keyed by the recalled bulletin's id and placed on that id's owner partition
(:func:`~enlace.core.topics.owner_partition`), as the bulletin itself was: the router reads
each partition in order, so it meets the recall after the bulletin, and it dead-letters a
record anywhere else (``wrong_partition``).

What the publisher cannot know: whether the router routed that bulletin and whether this
agency originated it. The router checks both and dead-letters a recall that fails
(``recall_unknown``, ``recall_not_originator``); it forwards an accepted one only to the
partners that received the bulletin. An acknowledged recall was stored by Kafka, no more.

:func:`new_recall` validates (pure); :func:`send_recall` sends one sealed recall on a started
Kafka client within a deadline, with the client's acks=all and idempotence (enlace/core/clients).
:meth:`producers.publisher.Publisher.recall` joins them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from pydantic import ValidationError as PydanticValidationError

from enlace.core.clock import to_millis
from enlace.core.errors import DeliveryError, DeliveryTimeout, ValidationError
from enlace.core.topics import owner_partition
from producers.skew import timestamp_refusal
from schemas.envelope import Sealed
from schemas.models import problems_of
from schemas.recall import MAX_REASON, BulletinRecall

# Which field a pydantic problem is about → the name a person typed it as.
_FIELD_NAMES = {"bulletin_id": "bulletin id", "reason": "reason"}


@dataclass(frozen=True)
class RecallReceipt:
    """The broker acknowledged the recall (acks=all) at this position."""

    recall_id: str
    bulletin_id: str
    topic: str
    partition: int
    offset: int

    def describe(self) -> str:
        return (
            f"recall {self.recall_id} of bulletin {self.bulletin_id} published "
            f"(topic {self.topic}, partition {self.partition}, offset {self.offset})"
        )


def new_recall(origin: str, bulletin_id: str, reason: str, at: datetime) -> BulletinRecall:
    """A fresh recall of ``bulletin_id`` by ``origin``; :class:`ValidationError` with one
    line per problem (a bulletin id that is not a canonical UUID, a blank reason or one over
    :data:`MAX_REASON` characters, control characters)."""
    try:
        return BulletinRecall.new(origin, bulletin_id, reason, at)
    except PydanticValidationError as exc:
        problems = problems_of(exc)
        listing = "; ".join(f"{_FIELD_NAMES.get(path, path)}: {rule}" for path, rule in problems)
        raise ValidationError(f"recall is invalid: {listing}", problems) from exc


async def send_recall(
    producer: AIOKafkaProducer,
    topic: str,
    recall: BulletinRecall,
    sealed: Sealed,
    *,
    timeout: float,  # noqa: ASYNC109 - one bound for the send and its acknowledgement
    stamped: datetime,
) -> RecallReceipt:
    """Send ``sealed`` (``recall`` sealed by :func:`~schemas.recall.seal_recall`) to the owner
    partition of the recalled bulletin's id; the receipt once acknowledged.

    Raises :class:`DeliveryTimeout` (nothing acknowledged in ``timeout`` seconds: the client
    may be wedged, the caller replaces it), :class:`~enlace.core.errors.ClockSkewRefused`
    (the broker refused ``stamped``, this host's clock) or :class:`DeliveryError`."""
    what = f"recall {recall.recall_id} of bulletin {recall.bulletin_id}"
    try:
        async with asyncio.timeout(timeout):
            partitions = len(await producer.partitions_for(topic))
            future: asyncio.Future[Any] = await producer.send(
                topic,
                sealed.value,
                key=sealed.key,
                partition=owner_partition(recall.bulletin_id, partitions),
                headers=sealed.headers,
                timestamp_ms=to_millis(stamped),
            )
            metadata = await future
    except (TimeoutError, KafkaTimeoutError) as exc:
        raise DeliveryTimeout(
            f"{what} not acknowledged within {timeout:g} s; it may still land: look for it on "
            f"{topic} before recalling again (a second recall has a new id)"
        ) from exc
    except KafkaError as exc:
        skewed = timestamp_refusal(recall.bulletin_id, exc, stamped)
        if skewed is not None:
            raise skewed from exc
        raise DeliveryError(f"broker refused {what}: {exc!r}") from exc
    return RecallReceipt(
        recall.recall_id, recall.bulletin_id, metadata.topic, metadata.partition, metadata.offset
    )


__all__ = ["MAX_REASON", "RecallReceipt", "new_recall", "send_recall"]
