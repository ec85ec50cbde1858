"""Trust snapshots in Kafka: a compacted topic (``enlace.router.trust``), one writer at a time.

A snapshot is an encoded :class:`broker.trust_image.TrustImage` split into chunk records (key
``chunk/<i>``, header ``enlace-snapshot`` = the snapshot's id) followed by one manifest record
(key ``manifest``: the id, the chunk count, the first chunk's offset, the SHA-256 and size of
the whole), all in **one Kafka transaction** with the fixed transactional id
:func:`enlace.core.topics.trust_snapshot_transactional_id`. So:

* a reader (``read_committed``) sees a snapshot whole or not at all; a writer that crashes
  mid-snapshot leaves an open transaction that the coordinator aborts (or the next writer's
  ``init_transactions`` fences), and the previous snapshot stays the newest committed one;
* two routers that both believe they are the writer cannot both commit: the second to start
  fences the first;
* compaction keeps the newest value of each key, which is the newest snapshot's chunks and
  manifest (an aborted transaction's records never shadow them).

The reader finds the newest manifest by reading backwards from the end in growing windows
(a manifest is the last record of its transaction), then reads exactly its chunks from the
offset it names: the cost is the snapshot's size, not the topic's history.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from enlace.core import clients
from enlace.core.closing import close_consumer, close_producer
from enlace.core.errors import BrokerError, ValidationError, started
from enlace.core.logs import get_logger
from enlace.core.settings import KafkaSettings
from enlace.core.topics import partitions_of

log = get_logger(__name__)

CHUNK_BYTES = 512 * 1024  # well under the broker's default 1 MiB message limit
SNAPSHOT_HEADER = "enlace-snapshot"
MANIFEST_KEY = b"manifest"
_TAIL_WINDOW = 16  # records read back from the end first; the window grows 8x per miss


@dataclass(frozen=True, slots=True)
class Manifest:
    snapshot_id: str
    chunks: int
    first_offset: int
    size: int
    sha256: str
    created_at: str
    note: str = ""  # what it holds, for an operator reading the topic

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Manifest:
        try:
            fields = json.loads(raw)
            return cls(**fields)
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"not a snapshot manifest: {exc!r}"[:300]) from exc


def chunk_key(index: int) -> bytes:
    return f"chunk/{index}".encode()


def split(blob: bytes, size: int = CHUNK_BYTES) -> list[bytes]:
    return [blob[i : i + size] for i in range(0, len(blob), size)] or [b""]


class SnapshotWriter:
    """Writes snapshots transactionally; :meth:`start` fences any earlier writer."""

    def __init__(self, settings: KafkaSettings, transactional_id: str, topic: str) -> None:
        self._settings = settings
        self._transactional_id = transactional_id
        self._topic = topic
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = clients.producer(self._settings, transactional_id=self._transactional_id)
        try:
            await producer.start()
        except KafkaError as exc:
            await close_producer(producer)
            raise BrokerError(f"trust snapshot writer could not start: {exc!r}") from exc
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await close_producer(self._producer, drain=False)
            self._producer = None

    async def write(self, blob: bytes, created_at: datetime, note: str = "") -> Manifest:
        """One snapshot, all chunks and the manifest in one transaction."""
        producer = started(self._producer, "trust snapshot writer")
        snapshot_id = uuid.uuid4().hex
        headers = [(SNAPSHOT_HEADER, snapshot_id.encode())]
        chunks = split(blob)
        try:
            async with producer.transaction():
                sent = [
                    await producer.send(self._topic, chunk, key=chunk_key(i), headers=headers)
                    for i, chunk in enumerate(chunks)
                ]
                first = (await asyncio.gather(*sent))[0].offset
                manifest = Manifest(
                    snapshot_id, len(chunks), first, len(blob),
                    hashlib.sha256(blob).hexdigest(), created_at.isoformat(), note,
                )  # fmt: skip
                await (await producer.send(self._topic, manifest.encode(), key=MANIFEST_KEY))
        except KafkaError as exc:
            raise BrokerError(f"trust snapshot not written: {exc!r}") from exc
        return manifest


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    manifest: Manifest
    blob: bytes


async def read_newest(settings: KafkaSettings, topic: str) -> StoredSnapshot | None:
    """The newest committed snapshot, or None when there is none.

    Raises :class:`ValidationError` when the newest manifest's chunks do not add up (the
    caller then replays history) and :class:`BrokerError` when the topic cannot be read.
    """
    await partitions_of(settings, [topic])  # a missing topic: BrokerError now, not a timeout
    consumer = clients.consumer(settings, group_id=None)
    tp = TopicPartition(topic, 0)
    try:
        await consumer.start()
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        found = await _newest_manifest(consumer, tp, begin, end)
        if found is None:
            return None
        manifest, manifest_offset = found
        blob = await _chunks(consumer, tp, manifest, manifest_offset)
    except KafkaError as exc:
        raise BrokerError(f"cannot read {topic}: {exc!r}") from exc
    finally:
        await close_consumer(consumer)
    if len(blob) != manifest.size or hashlib.sha256(blob).hexdigest() != manifest.sha256:
        raise ValidationError(f"snapshot {manifest.snapshot_id}: chunks do not match its digest")
    return StoredSnapshot(manifest, blob)


async def _newest_manifest(
    consumer: AIOKafkaConsumer, tp: TopicPartition, begin: int, end: int
) -> tuple[Manifest, int] | None:
    window = _TAIL_WINDOW
    upper = end
    while upper > begin:
        lower = max(begin, upper - window)
        consumer.seek(tp, lower)
        newest: tuple[bytes, int] | None = None
        async for key, value, offset, _headers in _chunk_records(consumer, tp, upper):
            if key == MANIFEST_KEY:
                newest = (value, offset)
        if newest is not None:
            return Manifest.decode(newest[0]), newest[1]
        upper, window = lower, window * 8
    return None


async def _chunks(
    consumer: AIOKafkaConsumer, tp: TopicPartition, manifest: Manifest, manifest_offset: int
) -> bytes:
    parts: dict[int, bytes] = {}
    consumer.seek(tp, manifest.first_offset)
    wanted = manifest.snapshot_id.encode()
    async for key, value, _offset, headers in _chunk_records(consumer, tp, manifest_offset):
        if dict(headers).get(SNAPSHOT_HEADER) != wanted or not key.startswith(b"chunk/"):
            continue  # another writer's interleaved (and fenced) records
        parts[int(key.removeprefix(b"chunk/"))] = value
    missing = [i for i in range(manifest.chunks) if i not in parts]
    if missing:
        raise ValidationError(f"snapshot {manifest.snapshot_id}: chunks {missing[:5]} missing")
    return b"".join(parts[i] for i in range(manifest.chunks))


async def _chunk_records(
    consumer: AIOKafkaConsumer, tp: TopicPartition, upper: int
) -> AsyncIterator[tuple[bytes, bytes, int, Sequence[tuple[str, bytes]]]]:
    """Records of ``tp`` from the current position up to (excluding) offset ``upper``."""
    while await consumer.position(tp) < upper:
        batch = await consumer.getmany(tp, timeout_ms=500, max_records=64)
        for record in batch.get(tp, []):
            if record.offset >= upper:
                return
            if record.key is not None and record.value is not None:
                yield record.key, record.value, record.offset, record.headers


async def out_of_range(settings: KafkaSettings, offsets: Mapping[tuple[str, int], int]) -> str:
    """Why a snapshot's source offsets cannot be resumed from (a partition whose records
    before the offset were deleted, or that holds fewer records than that: a recreated
    topic), or "" when every one can."""
    if not offsets:
        return ""
    partitions = [TopicPartition(t, p) for t, p in offsets]
    consumer = clients.consumer(settings, group_id=None)
    try:
        await consumer.start()
        begins = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
    except KafkaError as exc:
        raise BrokerError(f"cannot check the snapshot's offsets: {exc!r}") from exc
    finally:
        await close_consumer(consumer)
    for tp in partitions:
        offset = offsets[tp.topic, tp.partition]
        if not begins[tp] <= offset <= ends[tp]:
            return f"{tp.topic}/{tp.partition} offset {offset} outside [{begins[tp]}, {ends[tp]}]"
    return ""
