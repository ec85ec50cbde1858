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
* work that is due without new input (a release when trust is earned, ``DueSource``) is
  collected off the loop every ``due_interval_s``, then chained behind the partition's batches
  like a batch (handled in chain order, so later batches see what it staged) and committed in
  a transaction of the partition's own producer with no offsets: fencing and the exactly-once
  argument are the same as for input;
* the next poll overlaps the commits of the last: each partition's batches run as a chain of
  tasks (one transaction at a time per partition, in offset order), and the loop fetches and
  handles other partitions meanwhile; a partition with a batch already queued is paused
  until it catches up. A batch whose predecessor failed is dropped unhandled:
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


@dataclass(eq=False)  # identity: the engine tracks each batch's outcome, not equal ones
class BatchOutcome:
    """What one input batch produces, and the state to apply only once it is committed."""

    outputs: list[OutRecord] = field(default_factory=list)
    on_commit: list[Callable[[], None]] = field(default_factory=list)
    # Run instead when the batch will not commit (aborted, or dropped behind a failure).
    on_abandon: list[Callable[[], None]] = field(default_factory=list)

    def abandon(self) -> None:
        for undo in self.on_abandon:
            undo()


class BatchHandler(Protocol):
    async def prepare(self, assigned: set[TopicPartition]) -> None:
        """Bring derived state up to date before records of ``assigned`` are processed."""

    def handle(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> BatchOutcome:
        """Turn records into outputs. Must not raise for bad input (dead-letter it).

        Called in offset order per partition, possibly while the partition's previous
        batch is still committing: what a batch will commit must be visible to the next
        one's handling at once, and withdrawn by ``on_abandon``."""


class DueSource(Protocol):
    """Work a partition's owner must do without new input records."""

    async def collect_due(self, tp: TopicPartition) -> object | None:
        """Gather what is due for ``tp`` (may read Kafka; must not change state), or None."""

    def handle_due(self, tp: TopicPartition, work: object) -> BatchOutcome:
        """Turn gathered work into outputs, like :meth:`BatchHandler.handle` (same rules)."""


DUE_COLLECT_TIMEOUT_S = 30.0


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
        due: DueSource | None = None,
        due_interval_s: float = 1.0,
    ) -> None:
        self._settings = settings
        self._due = due
        self._due_interval_s = due_interval_s
        self._next_due = 0.0
        self._collecting: asyncio.Task[None] | None = None
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
        self._held: set[TopicPartition] = set()  # paused here until their chain catches up
        self._epoch: dict[TopicPartition, int] = {}  # rewinds (seeks back) so far
        # Outcomes handled ahead of their commit, per partition, until committed or abandoned.
        self._unsettled: dict[TopicPartition, list[BatchOutcome]] = {}
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
        if self._collecting is not None:
            self._collecting.cancel()
            await asyncio.gather(self._collecting, return_exceptions=True)
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
            # Enough for a batch of every partition: a poll capped at one batch in total
            # fed one or two partitions at a time while the others waited for their turn.
            limit = self._max_batch * max(1, len(self._producers))
            batch = await consumer.getmany(timeout_ms=self._poll_ms, max_records=limit)
            self._maybe_collect_due()
            if not batch or self._stopping.is_set():
                continue
            # Which seek these records were fetched after, read before anything can yield: a
            # batch fetched before a later rewind of its partition is dropped, never
            # committed past the records the rewind will fetch again.
            fetched = {tp: self._epoch.get(tp, 0) for tp in batch}
            async with self._lock:
                for tp, records in batch.items():
                    for start in range(0, len(records), self._max_batch):
                        self._chain(tp, records[start : start + self._max_batch], fetched[tp])

    def _maybe_collect_due(self) -> None:
        if self._due is None or self._stopping.is_set():
            return
        now = time.monotonic()
        if now < self._next_due or (self._collecting is not None and not self._collecting.done()):
            return
        self._next_due = now + self._due_interval_s
        self._collecting = asyncio.create_task(self._collect_due(), name="collect-due")

    async def _collect_due(self) -> None:
        """Gather each owned partition's due work and chain it. A failure (Kafka, or a bug)
        costs this round only: the next one collects again."""
        assert self._due is not None
        for tp in list(self._producers):
            epoch = self._epoch.get(tp, 0)
            try:
                async with asyncio.timeout(DUE_COLLECT_TIMEOUT_S):
                    work = await self._due.collect_due(tp)
            except (TimeoutError, KafkaError, OSError, BrokerError) as exc:
                log.warning("due_collect_failed", topic=tp.topic, partition=tp.partition,
                            error=repr(exc))  # fmt: skip
                continue
            except Exception:
                log.exception("due_collect_bug", topic=tp.topic, partition=tp.partition)
                continue
            if work is None:
                continue
            async with self._lock:
                # Still ours, prepared, and not rewound meanwhile (what was collected may be
                # stale then; the next round collects again).
                if (
                    self._stopping.is_set()
                    or tp not in self._producers
                    or tp not in self._next_offset
                    or epoch != self._epoch.get(tp, 0)
                ):
                    continue
                self._chain(tp, (), epoch, due_work=work)

    def _chain(
        self,
        tp: TopicPartition,
        records: Sequence[ConsumerRecord[Any, Any]],
        epoch: int,
        *,
        due_work: object | None = None,
    ) -> None:
        """Queue ``records`` (or ``due_work``) behind the partition's last batch. A partition
        with a batch waiting behind the one committing is paused (fetch ahead by one batch at
        most) and resumed when it has caught up; the others are fetched meanwhile."""
        previous = self._chains.get(tp)
        self._depth[tp] = self._depth.get(tp, 0) + 1
        step = (
            self._after(previous, tp, records, epoch)
            if due_work is None
            else self._after_due(previous, tp, due_work, epoch)
        )
        task = asyncio.create_task(step, name=f"txn-{tp.topic}-{tp.partition}")
        task.add_done_callback(lambda _done: self._settled(tp))
        self._chains[tp] = task
        if self._depth[tp] > 1 and self._consumer is not None and tp not in self._held:
            self._held.add(tp)
            self._consumer.pause(tp)

    def _settled(self, tp: TopicPartition) -> None:
        self._depth[tp] -= 1
        if self._depth[tp] <= 1 and tp in self._held:
            self._held.discard(tp)
            consumer = self._consumer
            if consumer is not None and tp in consumer.assignment():
                consumer.resume(tp)

    def _raise_failure(self) -> None:
        """A batch that raised (a bug: bad input is dead-lettered, broker errors abort) stops
        the engine, as it did when batches ran in the loop itself: never a silent stall of
        its partition."""
        for task in self._chains.values():
            if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
                raise exc

    async def _after(
        self,
        previous: asyncio.Task[bool] | None,
        tp: TopicPartition,
        records: Sequence[ConsumerRecord[Any, Any]],
        epoch: int,
    ) -> bool:
        """Handle ``records`` now and commit them once ``previous`` (the partition's last
        batch) is done: the handling overlaps that commit. True when committed. If the
        partition was rewound since they were fetched (``epoch``: a failure sought back to
        the last commit), they come again from the broker and this copy is abandoned."""
        if epoch != self._epoch.get(tp, 0):
            # Rewound before this batch was handled: handling it now would hold its ids
            # against the same records fetched again (they would pass as duplicates).
            return False
        handled = self._handle(tp, records)
        committed = False
        try:
            await _after_previous(previous)
            if epoch != self._epoch.get(tp, 0):
                return False  # rewound while this batch waited
            if handled is not None and handled[0][0].offset < self._next_offset.get(tp, 0):
                # A lazy offset reset handed back committed records: handle the rest again.
                self._settle(tp, handled[1], abandon=True)
                handled = self._handle(tp, handled[0])
            if handled is None:
                return True
            committed = await self._process(tp, *handled)
            return committed
        finally:
            if handled is not None:
                # Every way out but a commit withdraws what the batch held.
                self._settle(tp, handled[1], abandon=not committed)

    async def _after_due(
        self, previous: asyncio.Task[bool] | None, tp: TopicPartition, work: object, epoch: int
    ) -> bool:
        """Like :meth:`_after` for due work: handled in chain order, committed with no
        offsets once ``previous`` is done."""
        if epoch != self._epoch.get(tp, 0) or self._due is None:
            return False
        outcome = self._due.handle_due(tp, work)
        if not outcome.outputs:
            outcome.abandon()
            return True
        self._unsettled.setdefault(tp, []).append(outcome)
        committed = False
        try:
            await _after_previous(previous)
            if epoch != self._epoch.get(tp, 0):
                return False
            committed = await self._process(tp, (), outcome)
            return committed
        finally:
            self._settle(tp, outcome, abandon=not committed)

    def _settle(self, tp: TopicPartition, outcome: BatchOutcome, *, abandon: bool) -> None:
        """Forget a handled batch's outcome (committed or abandoned by now), abandoning it
        first if asked (withdrawing an outcome twice is harmless)."""
        unsettled = self._unsettled.get(tp, [])
        if outcome in unsettled:
            unsettled.remove(outcome)
        if abandon:
            outcome.abandon()

    def _handle(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> tuple[Sequence[ConsumerRecord[Any, Any]], BatchOutcome] | None:
        """The records at or past the committed position we track (aiokafka may apply a lazy
        offset reset after our seek and hand back committed ones) and their outcome; None
        when none are left."""
        kept = [r for r in records if r.offset >= self._next_offset.get(tp, 0)]
        if not kept:
            return None
        outcome = self._handler.handle(tp, kept)
        self._unsettled.setdefault(tp, []).append(outcome)
        return kept, outcome

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
        self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]], outcome: BatchOutcome
    ) -> bool:
        """Commit one partition's batch, or make sure it will be fetched again.

        Invariant: a batch that is not committed never moves the position forward. Every
        path that drops one seeks back to the committed position we know, and abandons its
        outcome.
        """
        if self._consumer is None or tp not in self._consumer.assignment():
            outcome.abandon()
            return False  # revoked while fetching: the new owner reads it from the commit
        if tp not in self._producers:
            outcome.abandon()
            # No producer: a failed transaction, a broker outage or a failed assignment.
            # Re-initialise (which resolves any transaction of ours left open), re-read the
            # committed offset and seek there; the records come again on the next fetch.
            self._rewind(tp, self._resume_at(tp, records))
            await self._recover(tp)
            return False
        return await self._commit_partition(tp, records, outcome)

    async def _commit_partition(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]], outcome: BatchOutcome
    ) -> bool:
        started = time.perf_counter()
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
                    if records:  # due work (no input) commits outputs only
                        await producer.send_offsets_to_transaction(
                            {tp: records[-1].offset + 1}, self.group_id
                        )
        except ProducerFenced:
            # Another instance owns this partition now; it will process these records.
            log.warning("router_fenced", topic=tp.topic, partition=tp.partition)
            self._observer.aborted(tp, "fenced")
            outcome.abandon()
            await self._abandon(tp, self._resume_at(tp, records))
            return False
        except (TimeoutError, KafkaError, OSError, BrokerError) as exc:
            log.warning(
                "router_txn_aborted", topic=tp.topic, partition=tp.partition, error=repr(exc)
            )
            self._observer.aborted(tp, type(exc).__name__)
            outcome.abandon()
            await self._abandon(tp, self._resume_at(tp, records))
            return False
        if inject:
            # A clean abort leaves the producer usable: only the position goes back.
            log.info("router_txn_aborted_on_purpose", topic=tp.topic, partition=tp.partition)
            self._observer.aborted(tp, "injected")
            outcome.abandon()
            self._rewind(tp, self._resume_at(tp, records))
            return False
        if records:
            self._next_offset[tp] = records[-1].offset + 1
        for apply in outcome.on_commit:
            apply()
        self._observer.committed(
            tp, len(records), len(outcome.outputs), time.perf_counter() - started
        )
        return True

    def _resume_at(self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]) -> int:
        """Where a batch that will not commit goes back to: the committed position we know,
        else its first record (due work has none, and is chained only once one is known)."""
        known = self._next_offset.get(tp)
        return known if known is not None else records[0].offset

    def _rewind(self, tp: TopicPartition, offset: int) -> None:
        """Seek ``tp`` to ``offset`` (the committed position); batches fetched before this
        are stale from now on."""
        assert self._consumer is not None
        self._consumer.seek(tp, offset)
        self._epoch[tp] = self._epoch.get(tp, 0) + 1
        # Batches handled ahead will not commit: what they staged must not make the records
        # fetched again look like duplicates of themselves.
        for outcome in self._unsettled.pop(tp, []):
            outcome.abandon()

    async def _abandon(self, tp: TopicPartition, first_offset: int) -> None:
        """Give up this batch: back to the last commit we know, producer closed; the next
        batch of the partition recovers (the outcome of the failed commit may be unknown)."""
        assert self._consumer is not None
        if tp in self._consumer.assignment():
            self._rewind(tp, self._next_offset.get(tp, first_offset))
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
            self._rewind(tp, committed)
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


async def _after_previous(previous: asyncio.Task[bool] | None) -> None:
    """Wait for a partition's previous batch; a bug in it stops the engine (see run)."""
    if previous is None:
        return
    await asyncio.wait([previous])
    if not previous.cancelled() and (exc := previous.exception()) is not None:
        raise exc


async def _write_and_abort(producer: AIOKafkaProducer, outcome: BatchOutcome) -> None:
    """A fault drill's transaction: every output written, marked, then aborted."""
    marker = (INJECTED_ABORT_HEADER, b"1")
    await producer.begin_transaction()
    for out in outcome.outputs:
        await producer.send(out.topic, out.value, key=out.key, headers=[*out.headers, marker])
    await producer.flush()
    await producer.abort_transaction()
