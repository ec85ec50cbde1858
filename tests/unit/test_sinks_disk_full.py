"""File sinks past a file-size limit (``RLIMIT_FSIZE``, SIGXFSZ ignored as the consumer
service does): the write is a SinkError, no torn line is left, the store's transaction rolls
back, and once space returns the retry stores the batch once."""

from __future__ import annotations

import json
import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.records import Delivered, FeedRecord, Release
from consumers.sinks import JsonlSink, SqliteSink
from enlace.core.errors import SinkError
from schemas.envelope import seal
from schemas.signing import AgencyKey
from tests.feed_records import feed_message
from tests.samples import sample_bulletin

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
KEY = AgencyKey.generate("pa-senafront", valid_from=NOW - timedelta(days=30))


def _batch(first_offset: int, n: int) -> list[Delivered]:
    out = []
    for i in range(n):
        bulletin = sample_bulletin("pa-senafront", issued_at=NOW - timedelta(minutes=3))
        msg = feed_message(seal(bulletin, KEY), Release.FULL)
        record = FeedRecord(
            "enlace.feed.cr-msp", 0, first_offset + i, msg.key, msg.value, tuple(msg.headers)
        )
        sig = dict(msg.headers)["enlace-sig"]
        out.append(Delivered(record, bulletin, Release.FULL, KEY.key_id, sig, NOW))
    return out


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """This process's files may not grow past ``limit`` bytes for the block (nothing else
    writes meanwhile: the sinks' threads are the only writers of the test)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


async def test_jsonl_past_the_limit_leaves_no_torn_line_and_retries_once(tmp_path: Path) -> None:
    sink = JsonlSink(str(tmp_path / "feed.jsonl"))
    first = _batch(0, 2)
    await sink.start()
    try:
        await sink.put(first)
        size = sink.path.stat().st_size
        second = _batch(2, 3)
        with file_size_limit(size + size // 3), pytest.raises(SinkError, match="File too large"):
            await sink.put(second)  # part of the batch fits: it is cut off again
        assert sink.path.stat().st_size == size
        assert sink.held("enlace.feed.cr-msp", 0) == 2  # not held: nothing commits past it
        await sink.put(second)  # space returned
    finally:
        await sink.stop()
    lines = [json.loads(line) for line in sink.path.read_text().splitlines()]
    assert [line["bulletin_id"] for line in lines] == [i.bulletin_id for i in first + second]
    assert sink.held("enlace.feed.cr-msp", 0) == 5


async def test_sqlite_past_the_limit_rolls_back_and_retries_once(tmp_path: Path) -> None:
    sink = SqliteSink(str(tmp_path / "inbox.sqlite3"))
    await sink.start()
    try:
        await sink.put(_batch(0, 2))
        wal = Path(f"{sink.path}-wal")
        limit = max(sink.path.stat().st_size, wal.stat().st_size) + 4096
        second = _batch(2, 40)
        with file_size_limit(limit), pytest.raises(SinkError):
            await sink.put(second)
        assert sink.held("enlace.feed.cr-msp", 0) == 2
        result = await sink.put(second)  # space returned: the whole batch, once
        assert len(result.outcomes) == 40
        assert len({o.value for o in result.outcomes.values()}) == 1  # all inserted
    finally:
        await sink.stop()
