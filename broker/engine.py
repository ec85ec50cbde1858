"""Exactly-once consume → process → produce, one Kafka transaction per input partition batch.

aiokafka speaks the v0 transaction protocol (no KIP-447 fencing by group generation), so the
router uses the pre-KIP-447 pattern:

* one transactional producer per *input partition*, ``transactional.id =
  <prefix><topic>.<partition>``: whichever instance owns the partition owns that id, and
  ``init_transactions`` on a new owner fences the old one (its commit then fails);
* producers are created on assignment and closed on revocation, and revocation waits for the
  batch in flight to commit (one lock around batch processing and rebalance callbacks);
* the assignment callback only pauses the new partitions and hands their preparation
  (producers, state catch-up, seeks) to a task: aiokafka starts heartbeating only after the
  callback returns, so a callback that outlives the session timeout (a dozen
  ``init_transactions`` on a loaded host) gets the member expelled and the group storms;
* after fencing, the new owner re-reads the committed offset of each assigned partition and
  seeks there, so a zombie's commit that raced the rebalance is seen, never replayed; records
  below it that a late lazy offset reset hands back are skipped;
* outputs and ``send_offsets_to_transaction`` ride in the same transaction. Any failure (a
  broker outage included) aborts it and closes the producer; the partition's next batch
  recreates the producer, re-reads the committed offset and seeks there. A batch that is not
  committed never moves the position forward;
* the next poll overlaps the commits of the last: each partition's batches run as a chain of
  tasks (one transaction at a time per partition, in offset order), and the loop fetches and
  handles other partitions meanwhile. A batch whose predecessor failed is dropped unhandled:
  the failure sought back, and those records come again. A revocation or the stop waits for
  the chains of its partitions before their producers close.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError, ProducerFenced

from enlace.core import clients
from enlace.core.closing import close_consumer, close_producer
from enlace.core.errors import BrokerError, started
from enlace.core.logs import get_logger
from enlace.core.partitioning import murmur2
from enlace.core.settings import KafkaSettings
from enlace.core.topics import router_transactional_id

log = get_logger(__name__)

RECOVERY_TIMEOUT_S = 30.0
RECOVERY_BACKOFF_S = 1.0


INJECTED_ABORT_HEADER = "enlace-test-aborted"


@dataclass(frozen=True)
class OutRecord:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class BatchOutcome:
    """What one input batch produces, and the state to apply only once it is committed."""

    outputs: list[OutRecord] = field(default_factory=list)
    on_commit: list[Callable[[], None]] = field(default_factory=list)


class BatchHandler(Protocol):
    async def prepare(self, assigned: set[TopicPartition]) -> None:
        """Bring derived state up to date before records of ``assigned`` are processed."""

    def handle(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> BatchOutcome:
        """Turn records into outputs. Must not raise for bad input (dead-letter it)."""


class EngineObserver(Protocol):
    def committed(self, tp: TopicPartition, records: int, outputs: int, seconds: float) -> None: ...

    def aborted(self, tp: TopicPartition, reason: str) -> None: ...


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no types
    def __init__(self, engine: TransactionalEngine) -> None:
        self._engine = engine

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._engine.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._engine.on_assigned(assigned)


class TransactionalEngine:
    def __init__(
        self,
        settings: KafkaSettings,
        handler: BatchHandler,
        observer: EngineObserver,
        *,
        topics: Sequence[str],
        group_id: str,
        transactional_prefix: str,
        max_batch: int = 500,
        poll_ms: int = 100,
        session_timeout_ms: int = 10_000,
        metadata_max_age_ms: int = 300_000,
        abort_ratio: float = 0.0,
        abort_seed: int = 0,
    ) -> None:
        self._settings = settings
        self._metadata_max_age_ms = metadata_max_age_ms
        self._handler = handler
        self._observer = observer
        self._topics = list(topics)
        self.group_id = group_id
        self._prefix = transactional_prefix
        self._max_batch = max_batch
        self._poll_ms = poll_ms
        self._session_timeout_ms = session_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self._next_offset: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        # Per partition, the task of its newest batch (which awaits its predecessor's).
        self._chains: dict[TopicPartition, asyncio.Task[bool]] = {}
        self._depth: dict[TopicPartition, int] = {}  # batches of a partition started, not done
        self._stopping = asyncio.Event()
        self._preparing: asyncio.Task[None] | None = None
        # Fault drills: abort some transactions after their outputs are written, so a
        # read_committed reader that ever sees a marked record has read an aborted one.
        self._abort_ratio = abort_ratio
        self._abort_rng = random.Random(abort_seed)  # noqa: S311 - drill choices, not crypto

    def transactional_id(self, tp: TopicPartition) -> str:
        return router_transactional_id(tp.topic, tp.partition, self._prefix)

    def partition_count(self, topic: str) -> int | None:
        """Partitions of ``topic`` in the group consumer's metadata (None before start)."""
        if self._consumer is None:
            return None
        found = self._consumer.partitions_for_topic(topic)
        return len(found) if found else None

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._producers)

    async def start(self) -> None:
        self._consumer = clients.consumer(
            self._settings,
            group_id=self.group_id,
            max_poll_records=self._max_batch,
            # Revocation waits for the batch in flight; leave it room.
            max_poll_interval_ms=120_000,
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(1_000, self._session_timeout_ms // 5),
            # A partition added to an input topic is noticed within this, and the group
            # rebalances (the owner rule of each bulletin id changes only then).
            metadata_max_age_ms=self._metadata_max_age_ms,
        )
        self._consumer.subscribe(self._topics, listener=_Rebalance(self))
        try:
            await self._consumer.start()
        except KafkaError as exc:
            raise BrokerError(f"router consumer could not start: {exc!r}") from exc

    async def stop(self) -> None:
        """Stop after the batches in flight: their transactions commit or abort, never half."""
        self._stopping.set()
        await self._settle_preparation()
        async with self._lock:
            await self._finish_chains(set(self._chains))
            if self._consumer is not None:
                await close_consumer(self._consumer)
                self._consumer = None
            producers, self._producers = list(self._producers.values()), {}
        await asyncio.gather(*(close_producer(p) for p in producers), return_exceptions=True)

    async def run(self) -> None:
        consumer = started(self._consumer, "transactional engine")
        while not self._stopping.is_set():
            self._raise_failure()
            await self._keep_up()
            batch = await consumer.getmany(timeout_ms=self._poll_ms, max_records=self._max_batch)
            if not batch or self._stopping.is_set():
                continue
            async with self._lock:
                for tp, records in batch.items():
                    if records:
                        self._chain(tp, records)

    def _chain(self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        previous = self._chains.get(tp)
        self._depth[tp] = self._depth.get(tp, 0) + 1
        task = asyncio.create_task(
            self._after(previous, tp, records), name=f"txn-{tp.topic}-{tp.partition}"
        )
        task.add_done_callback(lambda _done: self._depth.__setitem__(tp, self._depth[tp] - 1))
        self._chains[tp] = task

    def _raise_failure(self) -> None:
        """A batch that raised (a bug: bad input is dead-lettered, broker errors abort) stops
        the engine, as it did when batches ran in the loop itself: never a silent stall of
        its partition."""
        for task in self._chains.values():
            if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
                raise exc

    async def _keep_up(self) -> None:
        """Fetch ahead by one batch per partition at most: while a partition has a batch
        queued behind the one committing, wait for it before fetching more."""
        while behind := [t for tp, t in self._chains.items() if self._depth.get(tp, 0) > 1]:
            await asyncio.wait(behind, return_when=asyncio.FIRST_COMPLETED)

    async def _after(
        self,
        previous: asyncio.Task[bool] | None,
        tp: TopicPartition,
        records: Sequence[ConsumerRecord[Any, Any]],
    ) -> bool:
        """Commit ``records`` once ``previous`` (the partition's last batch) has: True when
        committed. If ``previous`` failed it sought back, and these records come again."""
        if previous is not None and not await previous:
            return False
        return await self._process(tp, records)

    async def _finish_chains(self, partitions: set[TopicPartition]) -> None:
        """Let the batches of ``partitions`` commit or fail (never cut mid-transaction)."""
        tasks = [self._chains.pop(tp) for tp in partitions if tp in self._chains]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> TransactionalEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- transactions --------------------------------------------------------------------
    async def _process(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> bool:
        """Commit one partition's batch, or make sure it will be fetched again.

        Invariant: a batch that is not committed never moves the position forward. Every
        path that drops one seeks back to the committed position we know.
        """
        if self._consumer is None or tp not in self._consumer.assignment():
            return False  # revoked while fetching: the new owner reads it from the commit
        if tp not in self._producers:
            # No producer: a failed transaction, a broker outage or a failed assignment.
            # Re-initialise (which resolves any transaction of ours left open), re-read the
            # committed offset and seek there; the records come again on the next fetch.
            self._consumer.seek(tp, self._next_offset.get(tp, records[0].offset))
            await self._recover(tp)
            return False
        return await self._commit_partition(tp, records)

    async def _commit_partition(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> bool:
        started = time.perf_counter()
        # aiokafka may apply a lazy offset reset after our seek and hand back records already
        # committed; the committed position we track is the authority.
        records = [r for r in records if r.offset >= self._next_offset.get(tp, 0)]
        if not records:
            return True
        outcome = self._handler.handle(tp, records)
        producer = self._producers[tp]
        inject = self._abort_ratio > 0 and self._abort_rng.random() < self._abort_ratio
        try:
            if inject:
                await _write_and_abort(producer, outcome)
            else:
                async with producer.transaction():
                    place = _Placement(producer)
                    for out in outcome.outputs:
                        await producer.send(
                            out.topic,
                            out.value,
                            key=out.key,
                            partition=place(out),
                            headers=list(out.headers),
                        )
                    await producer.send_offsets_to_transaction(
                        {tp: records[-1].offset + 1}, self.group_id
                    )
        except ProducerFenced:
            # Another instance owns this partition now; it will process these records.
            log.warning("router_fenced", topic=tp.topic, partition=tp.partition)
            self._observer.aborted(tp, "fenced")
            await self._abandon(tp, records[0].offset)
            return False
        except (TimeoutError, KafkaError, OSError, BrokerError) as exc:
            log.warning(
                "router_txn_aborted", topic=tp.topic, partition=tp.partition, error=repr(exc)
            )
            self._observer.aborted(tp, type(exc).__name__)
            await self._abandon(tp, records[0].offset)
            return False
        if inject:
            # A clean abort leaves the producer usable: only the position goes back.
            log.info("router_txn_aborted_on_purpose", topic=tp.topic, partition=tp.partition)
            self._observer.aborted(tp, "injected")
            assert self._consumer is not None
            self._consumer.seek(tp, self._next_offset.get(tp, records[0].offset))
            return False
        self._next_offset[tp] = records[-1].offset + 1
        for apply in outcome.on_commit:
            apply()
        self._observer.committed(
            tp, len(records), len(outcome.outputs), time.perf_counter() - started
        )
        return True

    async def _abandon(self, tp: TopicPartition, first_offset: int) -> None:
        """Give up this batch: back to the last commit we know, producer closed; the next
        batch of the partition recovers (the outcome of the failed commit may be unknown)."""
        assert self._consumer is not None
        if tp in self._consumer.assignment():
            self._consumer.seek(tp, self._next_offset.get(tp, first_offset))
        await self._close_producer(tp)

    async def _drop_producer(self, tp: TopicPartition) -> None:
        """The partition is gone (revoked or stopping): forget its position too."""
        self._next_offset.pop(tp, None)
        await self._close_producer(tp)

    async def _close_producer(self, tp: TopicPartition) -> None:
        producer = self._producers.pop(tp, None)
        if producer is not None:
            await asyncio.gather(close_producer(producer), return_exceptions=True)

    async def _recover(self, tp: TopicPartition) -> bool:
        """Fresh producer (init_transactions resolves any half-finished transaction of this
        id), state caught up, and the consumer at the authoritative committed offset."""
        try:
            async with asyncio.timeout(RECOVERY_TIMEOUT_S):
                await self._open_producer(tp)
                await self._handler.prepare({tp})
                await self._seek_committed({tp})
        except (TimeoutError, KafkaError, OSError, BrokerError) as exc:
            log.warning(
                "router_recovery_failed", topic=tp.topic, partition=tp.partition, error=repr(exc)
            )
            await self._abandon(tp, self._next_offset.get(tp, 0))
            await asyncio.sleep(RECOVERY_BACKOFF_S)
            return False
        log.info("router_partition_recovered", topic=tp.topic, partition=tp.partition)
        return True

    # -- rebalance -----------------------------------------------------------------------
    async def _open_producer(self, tp: TopicPartition) -> None:
        producer = clients.producer(self._settings, transactional_id=self.transactional_id(tp))
        try:
            await producer.start()  # init_transactions: fences any previous owner of the id
        except KafkaError as exc:
            await close_producer(producer)
            raise BrokerError(f"transactional producer for {tp} failed: {exc!r}") from exc
        except asyncio.CancelledError:
            # A preparation cancelled by a revocation: no producer may outlive it unclosed.
            await asyncio.shield(close_producer(producer))
            raise
        self._producers[tp] = producer

    async def _seek_committed(self, partitions: set[TopicPartition]) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        for tp in partitions:
            committed = await consumer.committed(tp)
            if committed is None:
                # seek() rather than seek_to_beginning(): the latter resets lazily, and a fetch
                # already in flight would deliver records that the reset then replays.
                committed = (await consumer.beginning_offsets([tp]))[tp]
            consumer.seek(tp, committed)
            self._next_offset[tp] = committed

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Paused until prepared; the preparation runs after the callback, heartbeats on."""
        await self._settle_preparation()
        if not assigned:
            return
        assert self._consumer is not None
        self._consumer.pause(*assigned)
        self._preparing = asyncio.create_task(self._prepare(assigned))

    async def _prepare(self, assigned: set[TopicPartition]) -> None:
        started = time.perf_counter()
        async with self._lock:
            fresh = {tp for tp in assigned if tp not in self._producers}
            try:
                async with asyncio.timeout(RECOVERY_TIMEOUT_S):
                    await asyncio.gather(*(self._open_producer(tp) for tp in fresh))
                    await self._handler.prepare(assigned)
                    # The committed offsets aiokafka fetched may predate the fence above.
                    await self._seek_committed(assigned)
            except (TimeoutError, KafkaError, OSError, BrokerError) as exc:
                # Partitions left without a producer recover on their first batch.
                log.warning("router_assign_incomplete", error=repr(exc))
                for tp in assigned:
                    await self._close_producer(tp)
            finally:
                if self._consumer is not None:
                    owned = self._consumer.assignment()
                    self._consumer.resume(*(tp for tp in assigned if tp in owned))
            log.info(
                "router_assigned",
                partitions=len(assigned),
                new=len(fresh),
                seconds=round(time.perf_counter() - started, 3),
            )

    async def _settle_preparation(self) -> None:
        """Cancel an assignment's preparation still running before the next rebalance step
        or the stop touches the same producers: its partitions are being revoked, and
        waiting for it (up to its timeout) would hold this member's rejoin and the whole
        group's rebalance with it."""
        task, self._preparing = self._preparing, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._settle_preparation()
        async with self._lock:
            await self._finish_chains(revoked)
            await asyncio.gather(*(self._drop_producer(tp) for tp in revoked))
            log.info("router_revoked", partitions=len(revoked))


class _Placement:
    """The partition aiokafka's default partitioner would pick for a record, hashing each
    key once per batch (murmur2 is pure Python), and a bulletin's releases and
    audit record share one key. Same placement as the partitioner, so keyed topics (the
    compacted replay index) keep each key on one partition."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._cluster = producer.client.cluster
        self._hashes: dict[bytes, int] = {}
        self._partitions: dict[str, list[int] | None] = {}

    def __call__(self, out: OutRecord) -> int | None:
        if out.key is None:
            return None  # the partitioner's random choice
        partitions = self._partitions.get(out.topic)
        if partitions is None:
            known = self._cluster.partitions_for_topic(out.topic)
            if not known:
                return None  # no metadata yet: aiokafka waits for it and hashes itself
            partitions = self._partitions[out.topic] = list(known)
        hashed = self._hashes.get(out.key)
        if hashed is None:
            hashed = self._hashes[out.key] = murmur2(out.key) & 0x7FFFFFFF
        return partitions[hashed % len(partitions)]


async def _write_and_abort(producer: AIOKafkaProducer, outcome: BatchOutcome) -> None:
    """A fault drill's transaction: every output written, marked, then aborted."""
    marker = (INJECTED_ABORT_HEADER, b"1")
    await producer.begin_transaction()
    for out in outcome.outputs:
        await producer.send(out.topic, out.value, key=out.key, headers=[*out.headers, marker])
    await producer.flush()
    await producer.abort_transaction()
