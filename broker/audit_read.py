"""Reading the audit trail (and, for what-if, the bulletins it names) from Kafka.

:func:`read_audit` reads ``enlace.audit`` with a plain read_committed consumer (no group: it
commits nothing) from the earliest offset, or from ``since`` through ``offsets_for_times``,
up to the end offsets seen at start, so a busy router does not keep it reading. Records it
cannot decode (another writer's, a newer schema) are counted and skipped.

:func:`read_subjects` is for records older than version 3, which do not carry the bulletin's
facts (a version-3 record does: ``broker.audit_query.subject_of_record``, no read needed). It
reads, for each bulletin, the outbound record at the audit's provenance (topic, partition,
offset) and keeps only what the release decision reads of it
(:class:`~broker.release.ReleaseSubject`: category, classifications, TLP, releasable_to...;
of a sealed bulletin only the cleartext envelope exists here). Only the router's principal
may read outbound topics (``deploy/acl_plan.py``), and only within outbound retention (14
days): as the operator, every such bulletin is reported missing with that reason, and
``enlace audit`` still works without them.

Every read is bounded by ``timeout``; an unreachable broker is :class:`KafkaUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from broker.audit_query import AuditedDecision
from broker.release import ReleaseSubject
from enlace.core import clients
from enlace.core.closing import close_consumer
from enlace.core.errors import BrokerError, CodecError, KafkaUnavailable, ValidationError
from enlace.core.settings import KafkaSettings
from enlace.core.topics import AUDIT, partitions_of
from schemas.catalog import Catalog
from schemas.codec import decode_audit, decode_bulletin, fingerprint
from schemas.models import AuditRecord
from schemas.sealed import SEALED_BULLETIN, SEALED_VERSION, view_sealed

DEFAULT_TIMEOUT_S = 60.0
FETCH_MAX = 5_000
Progress = Callable[[int, int], None]


@dataclass
class AuditRead:
    records: list[AuditRecord] = field(default_factory=list)
    undecodable: int = 0
    total: int = 0  # records in the range read (what the progress bar counts to)


def _unreachable(settings: KafkaSettings, timeout: float, what: str) -> KafkaUnavailable:
    return KafkaUnavailable(
        f"cannot read {what}: Kafka at {settings.kafka_bootstrap} did not answer (waited up "
        f"to {timeout:g} s; is it up, and are ENLACE_KAFKA_* set for it?)"
    )


async def read_audit(
    settings: KafkaSettings,
    *,
    since: datetime | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,  # noqa: ASYNC109 - one bound for the whole read
    on_progress: Progress = lambda _read, _total: None,
    topic: str = AUDIT,
) -> AuditRead:
    """Every audit record of ``topic`` from ``since`` (None: the beginning) to its end now."""
    try:
        async with asyncio.timeout(timeout):
            return await _read_audit(settings, topic, since, on_progress)
    except TimeoutError as exc:
        raise _unreachable(settings, timeout, topic) from exc
    except KafkaConnectionError as exc:
        raise _unreachable(settings, timeout, topic) from exc
    except TopicAuthorizationFailedError as exc:
        raise BrokerError(f"not authorised to read {topic}: {exc}") from exc
    except KafkaError as exc:
        raise BrokerError(f"reading {topic} failed: {exc!r}") from exc


async def _read_audit(
    settings: KafkaSettings, topic: str, since: datetime | None, on_progress: Progress
) -> AuditRead:
    try:
        layout = await partitions_of(settings, [topic])
    except BrokerError as exc:
        if isinstance(exc.__cause__, KafkaConnectionError):
            raise exc.__cause__ from exc  # the caller says "unreachable", with its bound
        raise
    partitions = [TopicPartition(topic, p) for p in layout[topic]]
    consumer = clients.consumer(settings, group_id=None)
    out = AuditRead()
    try:
        await consumer.start()
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await _starts(consumer, partitions, since, ends)
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        out.total = sum(max(0, ends[tp] - starts[tp]) for tp in partitions)
        read = 0
        on_progress(0, out.total)
        pending = {tp for tp in partitions if starts[tp] < ends[tp]}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=FETCH_MAX)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    read += 1
                    try:
                        out.records.append(decode_audit(record.value or b""))
                    except (CodecError, ValidationError):
                        out.undecodable += 1
            # Transaction markers and aborted records take offsets no record shows.
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
            on_progress(min(read, out.total), out.total)
        on_progress(out.total, out.total)
        return out
    finally:
        await close_consumer(consumer)


async def _starts(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    since: datetime | None,
    ends: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    begins = await consumer.beginning_offsets(partitions)
    if since is None:
        return dict(begins)
    found = await consumer.offsets_for_times(
        dict.fromkeys(partitions, int(since.timestamp() * 1000))
    )
    return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in partitions}


@dataclass
class Subjects:
    found: dict[str, ReleaseSubject] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # bulletin id -> why


def subject_of(value: bytes, bulletin_id: str) -> ReleaseSubject:
    """What the release decision reads of an outbound record (v1 or sealed); CodecError or
    ValidationError when it is not that bulletin."""
    sealed = Catalog.default().get(SEALED_BULLETIN, SEALED_VERSION).fingerprint
    if fingerprint(value) == sealed:
        view = view_sealed(value)
        subject = ReleaseSubject.of(view.envelope, sealed_for=frozenset(view.wraps))
    else:
        subject = ReleaseSubject.of(decode_bulletin(value))
    if subject.bulletin_id != bulletin_id:
        raise ValidationError(f"the record holds bulletin {subject.bulletin_id}, not {bulletin_id}")
    return subject


async def read_subjects(
    settings: KafkaSettings,
    rows: Iterable[AuditedDecision],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,  # noqa: ASYNC109 - one bound for the whole read
    on_progress: Progress = lambda _read, _total: None,
) -> Subjects:
    """The release subject of each bulletin the rows name, from its outbound record (pass
    only rows without facts of their own: ``audit_query.without_facts``,
    ``whatif.needs_outbound``)."""
    wanted: dict[TopicPartition, dict[int, str]] = defaultdict(dict)
    for row in rows:
        tp = TopicPartition(row.source_topic, row.source_partition)
        wanted[tp][row.source_offset] = row.bulletin_id
    out = Subjects()
    if not wanted:
        return out
    try:
        async with asyncio.timeout(timeout):
            await _read_subjects(settings, wanted, out, on_progress)
    except TimeoutError as exc:
        raise _unreachable(settings, timeout, "the outbound topics") from exc
    except KafkaConnectionError as exc:
        raise _unreachable(settings, timeout, "the outbound topics") from exc
    except TopicAuthorizationFailedError:
        why = "not authorised to read the outbound topics (only the router's principal is)"
        out.missing.update({b: why for offsets in wanted.values() for b in offsets.values()})
    except KafkaError as exc:
        raise BrokerError(f"reading the outbound topics failed: {exc!r}") from exc
    return out


async def _read_subjects(
    settings: KafkaSettings,
    wanted: dict[TopicPartition, dict[int, str]],
    out: Subjects,
    on_progress: Progress,
) -> None:
    consumer = clients.consumer(settings, group_id=None)
    try:
        await consumer.start()
        partitions = list(wanted)
        consumer.assign(partitions)
        begins = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        stop: dict[TopicPartition, int] = {}
        for tp, offsets in wanted.items():
            for offset, bulletin in offsets.items():
                if not begins[tp] <= offset < ends[tp]:
                    out.missing[bulletin] = (
                        f"its outbound record {tp.topic}/{tp.partition}@{offset} is gone "
                        "(outbound retention)"
                    )
            live = [o for o in offsets if begins[tp] <= o < ends[tp]]
            if live:
                consumer.seek(tp, min(live))
                stop[tp] = max(live) + 1
        total = sum(len(o) for o in wanted.values())
        done = len(out.missing)
        pending = set(stop)
        consumer.pause(*(set(partitions) - pending))
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=FETCH_MAX)
            for tp, records in batch.items():
                for record in records:
                    named = wanted[tp].get(record.offset)
                    if named is None or record.offset >= stop[tp]:
                        continue
                    done += 1
                    _keep(out, named, record.value)
            pending = {tp for tp in pending if await consumer.position(tp) < stop[tp]}
            on_progress(min(done, total), total)
        for offsets in wanted.values():
            for bulletin in offsets.values():
                if bulletin not in out.found and bulletin not in out.missing:
                    out.missing[bulletin] = "its outbound record was not found (aborted?)"
    finally:
        await close_consumer(consumer)


def _keep(out: Subjects, bulletin: str, value: Any) -> None:
    try:
        out.found[bulletin] = subject_of(value or b"", bulletin)
    except (CodecError, ValidationError) as exc:
        out.missing[bulletin] = f"its outbound record does not decode: {exc}"[:200]
