"""Which Kafka the benchmark runs against, and its private topics there.

The configured broker (``ENLACE_KAFKA_BOOTSTRAP``) when it answers; otherwise a private
single-node Kafka under ``<repo>/.enlace/bench-kafka`` on port 9292, stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from deploy.localkafka import DEFAULT_DATA_DIR, LocalKafka
from enlace.core import clients
from enlace.core.errors import BrokerError
from enlace.core.settings import REPO_ROOT, KafkaSettings
from enlace.core.topics import partitions_of

BENCH_KAFKA_DIR = REPO_ROOT / ".enlace" / "bench-kafka"
BENCH_KAFKA_PORT = 9292

Progress = Callable[[str], None]


async def answers(settings: KafkaSettings, within: float = 5.0) -> bool:
    """True if the brokers at ``settings`` answer a metadata request in time."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=int(within * 1000))
    try:
        async with asyncio.timeout(within):
            await admin.start()
            await admin.list_topics()
    except (TimeoutError, KafkaError, OSError):
        return False
    else:
        return True
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


@contextlib.contextmanager
def kafka_for_bench(
    settings: KafkaSettings,
    progress: Progress,
    *,
    private: bool = False,
    port: int = BENCH_KAFKA_PORT,
    data_dir: Path = BENCH_KAFKA_DIR,
) -> Iterator[tuple[KafkaSettings, str]]:
    """The settings to use and where they point; starts (and later stops) a private broker
    when the configured one does not answer, or when asked to. Call outside the event loop:
    start-up blocks. ``port`` and ``data_dir`` let a second private broker (a standalone
    phase) run beside the main bench's."""
    if not private:
        if asyncio.run(answers(settings)):
            yield settings, f"configured broker {settings.kafka_bootstrap}"
            return
        progress(f"no broker answers at {settings.kafka_bootstrap}")
    progress(f"starting a private broker on 127.0.0.1:{port} ({data_dir})")
    local = LocalKafka(data_dir)
    if not any(node.alive for node in local.status()) and data_dir.exists():
        # Fresh data each time: the router reads the audit topic from its start, so leftovers
        # of earlier runs would lengthen its start-up from run to run.
        shutil.rmtree(data_dir)
    spec = local.up(1, port=port)
    try:
        yield (
            settings.model_copy(update={"kafka_bootstrap": spec.bootstrap}),
            f"private broker {spec.bootstrap} (started by the bench, fresh data)",
        )
    finally:
        progress("stopping the private broker")
        local.down()


def broker_pid(bootstrap: str, *, extra: Iterable[Path] = ()) -> int | None:
    """The pid of the single local broker at ``bootstrap`` if ``enlace kafka up`` or this bench
    started it (for its CPU use; ``extra``: other data directories it may live in); None for
    any other Kafka."""
    for data_dir in (DEFAULT_DATA_DIR, BENCH_KAFKA_DIR, *extra):
        nodes = LocalKafka(data_dir).status()
        if len(nodes) == 1 and nodes[0].alive and bootstrap == f"127.0.0.1:{nodes[0].port}":
            return nodes[0].pid
    return None


async def delete_topics(settings: KafkaSettings, names: Iterable[str]) -> None:
    """Delete the run's private topics (best effort: a leftover topic is only clutter)."""
    wanted = sorted(set(names))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=30_000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        doomed = [name for name in wanted if name in existing]
        if doomed:
            await admin.delete_topics(doomed, timeout_ms=30_000)
    except KafkaError as exc:
        raise BrokerError(f"could not delete bench topics: {exc!r}") from exc
    finally:
        await admin.close()


async def topic_records(settings: KafkaSettings, topic: str) -> int:
    """Records currently held by ``topic`` (end minus beginning offsets; transaction markers
    count too, so this is an upper bound)."""
    layout = await partitions_of(settings, [topic])
    partitions = [TopicPartition(topic, p) for p in layout[topic]]
    consumer = clients.consumer(settings, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()
    return sum(ends[tp] - starts[tp] for tp in partitions)
