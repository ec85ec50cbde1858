"""A partner's feed filled with real sealed releases, as the router writes them.

Each bulletin is sealed by its originator for the partner (``seal_sealed``, wire format 2, as
a deployment's publishers do), admitted by the router's own checks (``broker.admission.admit``)
and turned into the partner's feed record by ``broker.outputs.release_record``: the bytes and
headers the consumer meets in production. One in ``TEARLINE_EVERY`` is released as a tearline.

Sealing and admission cost about 1.2 ms a bulletin in Python, so they run in a pool of
``WORKERS`` processes; this process only sends the records (acks=all, idempotent,
uncompressed like the router's producer).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.admission import Admitted, Limits, admit
from broker.outputs import release_record
from broker.release import ReleaseDecision, Rule
from enlace.core import clients
from enlace.core.settings import KafkaSettings
from schemas.agency_key import AgencyKey
from schemas.key_directory import KeyDirectory
from schemas.sealed import recipients_of, seal_sealed
from schemas.sealing import BoxCache
from schemas.vocab import ReleaseKind
from tests.samples import sample_bulletin

WORKERS = 2
CHUNK = 1_000  # bulletins per pool task
TEARLINE_EVERY = 4
SEND_WINDOW = 2_000  # records sent and not yet acknowledged

# key, value, headers
FeedRow = tuple[bytes, bytes, list[tuple[str, bytes]]]


@dataclass(frozen=True)
class Job:
    """``count`` releases to ``partner``, originators taken in turn, starting at ``first``."""

    origins: tuple[str, ...]
    partner: str
    first: int
    count: int


def release_kind(index: int) -> ReleaseKind:
    return (
        ReleaseKind.TEARLINE if index % TEARLINE_EVERY == TEARLINE_EVERY - 1 else ReleaseKind.FULL
    )


def build_releases(job: Job, keys: dict[str, AgencyKey]) -> list[FeedRow]:
    """The feed records of ``job`` (CPU only, no I/O): sealed, admitted, released."""
    now = datetime.now(UTC)
    directory = KeyDirectory.from_keys(keys.values())
    boxes = BoxCache()
    recipients = recipients_of(directory, [job.partner], now)
    out: list[FeedRow] = []
    for index in range(job.first, job.first + job.count):
        origin = job.origins[index % len(job.origins)]
        sealed = seal_sealed(sample_bulletin(origin), keys[origin], recipients, boxes=boxes)
        admitted = admit(
            origin,
            sealed.value,
            sealed.headers,
            keys=directory,
            limits=Limits(),
            received_at=now,
            now=now,
        )
        if not isinstance(admitted, Admitted):
            raise TypeError(f"the router would refuse a bench release: {admitted}")
        kind = release_kind(index)
        rule = Rule.SCORE_FULL if kind is ReleaseKind.FULL else Rule.SCORE_TEARLINE
        decision = ReleaseDecision(
            admitted.bulletin.bulletin_id,
            job.partner,
            kind,
            rule,
            "bench",
            None,
            admitted.bulletin.tlp,
            frozenset(admitted.bulletin.caveats),
        )
        record = release_record(admitted, decision)
        out.append((record.key or b"", record.value, list(record.headers)))
    return out


_KEYS: dict[str, AgencyKey] = {}


def _init(keys: dict[str, AgencyKey]) -> None:
    _KEYS.update(keys)


def _job(job: Job) -> list[FeedRow]:
    return build_releases(job, _KEYS)


def jobs(origins: Sequence[str], partner: str, count: int) -> list[Job]:
    return [
        Job(tuple(origins), partner, first, min(CHUNK, count - first))
        for first in range(0, count, CHUNK)
    ]


@dataclass(frozen=True)
class Filled:
    records: int
    build_s: float
    send_s: float
    value_bytes: int  # mean size of a record's value


async def fill_feed(
    settings: KafkaSettings,
    topic: str,
    *,
    keys: dict[str, AgencyKey],
    origins: Sequence[str],
    partner: str,
    count: int,
) -> Filled:
    """Build ``count`` releases to ``partner`` and write them to ``topic`` (acknowledged)."""
    started = time.perf_counter()
    # spawn: a forked child would inherit this process's running event loop.
    context = multiprocessing.get_context("spawn")
    with context.Pool(WORKERS, initializer=_init, initargs=(keys,)) as pool:
        chunks = await asyncio.to_thread(pool.map, _job, jobs(origins, partner, count))
    rows = [row for chunk in chunks for row in chunk]
    built = time.perf_counter()
    producer = clients.producer(settings)
    await producer.start()
    try:
        pending: list[asyncio.Future[object]] = []
        for key, value, headers in rows:
            pending.append(await producer.send(topic, value=value, key=key, headers=headers))
            if len(pending) >= SEND_WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    sent = time.perf_counter()
    mean = sum(len(value) for _, value, _ in rows) // max(1, len(rows))
    return Filled(len(rows), built - started, sent - built, mean)
