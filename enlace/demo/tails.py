"""Following the router's output topics from the start of the run (audit, dead letters,
trust scores) into the demo's books and view."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from enlace.core import clients
from enlace.core.closing import close_consumer
from enlace.core.errors import CodecError, ValidationError, started
from enlace.core.settings import KafkaSettings
from enlace.core.topics import AUDIT, DEADLETTER, TRUST_SCORES, partitions_of
from schemas.codec import decode_audit
from schemas.models import AuditRecord


@dataclass(frozen=True, slots=True)
class ScoreSnapshot:
    originator: str
    partner: str
    score: float
    reaches: str | None
    at: datetime


AuditHook = Callable[[AuditRecord], None]
DeadHook = Callable[[bytes | None, str, str], None]  # key, reason, source topic
ScoreHook = Callable[[ScoreSnapshot], None]


class Tails:
    """One group-less consumer over the three topics, starting at their current end."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        on_audit: AuditHook,
        on_dead: DeadHook,
        on_score: ScoreHook,
    ) -> None:
        self._settings = settings
        self._on_audit = on_audit
        self._on_dead = on_dead
        self._on_score = on_score
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        layout = await partitions_of(self._settings, [AUDIT, DEADLETTER, TRUST_SCORES])
        partitions = [TopicPartition(t, p) for t, ids in layout.items() for p in ids]
        consumer = clients.consumer(self._settings, group_id=None)
        await consumer.start()
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            # The trust matrix is wanted as it stands; audit and dead letters of this run only.
            consumer.seek(tp, 0 if tp.topic == TRUST_SCORES else ends[tp])
        self._consumer = consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await close_consumer(self._consumer)
            self._consumer = None

    async def poll(self) -> int:
        consumer = started(self._consumer, "feed tail")
        batch = await consumer.getmany(timeout_ms=250, max_records=5000)
        count = 0
        for tp, records in batch.items():
            for record in records:
                self._apply(tp.topic, record)
                count += 1
        return count

    def _apply(self, topic: str, record: Any) -> None:
        if topic == AUDIT:
            try:
                decisions = decode_audit(record.value).per_partner()
            except (CodecError, ValidationError):
                return
            for decision in decisions:
                self._on_audit(decision)
        elif topic == DEADLETTER:
            headers = dict(record.headers or ())
            reason = headers.get("enlace-dlq-reason", b"?").decode("ascii", "replace")
            source = headers.get("enlace-dlq-topic", b"").decode("utf-8", "replace")
            self._on_dead(record.key, reason, source)
        else:
            try:
                body = json.loads(record.value)
                self._on_score(
                    ScoreSnapshot(
                        body["originator"],
                        body["partner"],
                        float(body["score"]),
                        body.get("reaches"),
                        datetime.fromisoformat(body["at"]),
                    )
                )
            except (ValueError, KeyError, TypeError):
                return
