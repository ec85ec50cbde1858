"""One-shot trust reports: a partner's feedback on a bulletin, an originator's incident report.

Both go to the reporter's own ``enlace.receipts.<agency>`` topic, signed with its key (the
router verifies them like receipts). Feedback names the bulletin's originator as subject,
looked up in the partner's store unless given.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aiokafka.errors import KafkaConnectionError, KafkaError

from consumers.receipts import publish_events
from consumers.settings import ConsumerSettings
from consumers.store import BulletinStore
from enlace.core import clients
from enlace.core.closing import close_producer
from enlace.core.errors import BrokerError, ConfigError, KafkaUnavailable
from enlace.core.logs import get_logger
from schemas.models import TrustEvent
from schemas.signing import AgencyKey

log = get_logger(__name__)


def originator_of(bulletin_id: str, db: Path) -> str:
    """The origin of a bulletin this agency holds; ConfigError if it holds none such."""
    store = BulletinStore.open(db, create=False)
    try:
        origin = store.origin_of(bulletin_id)
    finally:
        store.close()
    if origin is None:
        raise ConfigError(f"bulletin {bulletin_id} is not in {db}; pass --origin")
    return origin


def record_feedback(event: TrustEvent, db: Path) -> None:
    """Remember feedback sent, next to the bulletin it is about (best effort)."""
    if not db.exists():
        return
    store = BulletinStore.open(db, create=False)
    try:
        store.record_feedback(
            event_id=event.event_id,
            kind=event.kind.value,
            bulletin_id=event.bulletin_id,
            subject=event.subject,
            note=event.note,
            sent_at=datetime.now(UTC),
        )
    finally:
        store.close()


async def send_event(settings: ConsumerSettings, event: TrustEvent, key: AgencyKey) -> str:
    """Publish ``event`` to the reporter's receipts topic; returns the topic."""
    if event.reporter != settings.agency:
        raise ConfigError(f"{settings.agency!r} cannot send a report as {event.reporter!r}")
    topic = settings.receipts_topic()
    producer = clients.producer(settings)
    try:
        await producer.start()
        await publish_events(producer, topic, [event], key, timeout_s=settings.send_timeout_s)
    except KafkaConnectionError as exc:
        raise KafkaUnavailable(f"cannot reach Kafka: {exc}") from exc
    except KafkaError as exc:
        raise BrokerError(f"cannot send the report: {exc!r}") from exc
    finally:
        await close_producer(producer)
    log.info(
        "trust_event_sent",
        kind=event.kind.value,
        bulletin_id=event.bulletin_id,
        subject=event.subject,
    )
    return topic
