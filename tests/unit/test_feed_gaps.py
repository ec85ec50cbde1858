"""Feed gaps: the pure decision (consumers/gaps.py), the store's gaps table and its migration,
and how ``enlace inbox`` shows them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from consumers.gaps import FeedGap, resume_after_out_of_range, total_missed, uncovered
from consumers.inbox_view import gaps_text
from consumers.service import FeedConsumer
from consumers.settings import ConsumerSettings
from consumers.sinks import SqliteSink
from consumers.store import BulletinStore
from consumers.store_schema import MIGRATIONS, SCHEMA_VERSION
from enlace.cli import app
from enlace.core.errors import SinkError

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
TOPIC = "enlace.feed.cr-msp"

offsets = st.integers(min_value=0, max_value=10_000)


# -- the decision ---------------------------------------------------------------------------


def test_first_read_of_a_feed_whose_start_expired_is_a_gap_from_zero() -> None:
    resume = resume_after_out_of_range(TOPIC, 0, wanted=None, log_start=120, now=NOW)
    assert resume.position == 120
    assert resume.gap == FeedGap(TOPIC, 0, 0, 120, NOW)
    assert resume.gap.missed == 120
    assert resume.gap.describe() == f"{TOPIC} p0 offsets 0-120 expired unread"


def test_first_read_of_an_intact_feed_is_no_gap() -> None:
    assert resume_after_out_of_range(TOPIC, 2, wanted=None, log_start=0, now=NOW).gap is None


def test_committed_offset_behind_the_log_start_is_a_gap_from_the_committed_offset() -> None:
    resume = resume_after_out_of_range(TOPIC, 1, wanted=42, log_start=50, now=NOW)
    assert (resume.position, resume.gap) == (50, FeedGap(TOPIC, 1, 42, 50, NOW))


def test_refused_offset_past_the_log_start_is_a_reset_not_a_gap() -> None:
    # e.g. the log was truncated below our position: re-read what is there, lose nothing.
    resume = resume_after_out_of_range(TOPIC, 0, wanted=900, log_start=10, now=NOW)
    assert (resume.position, resume.gap) == (10, None)


@given(wanted=st.none() | offsets, log_start=offsets)
def test_resume_never_skips_anything_unreported(wanted: int | None, log_start: int) -> None:
    resume = resume_after_out_of_range(TOPIC, 0, wanted=wanted, log_start=log_start, now=NOW)
    assert resume.position == log_start  # never past what is still in the log
    start = wanted or 0
    if start < log_start:
        # Everything between where we were and where we resume is in the gap, nothing else.
        assert resume.gap is not None
        assert (resume.gap.from_offset, resume.gap.to_offset) == (start, log_start)
        assert resume.gap.missed == log_start - start > 0
    else:
        assert resume.gap is None


def test_an_empty_or_negative_gap_cannot_exist() -> None:
    with pytest.raises(ValueError, match="empty"):
        FeedGap(TOPIC, 0, 5, 5, NOW)
    with pytest.raises(ValueError, match="negative"):
        FeedGap(TOPIC, 0, -1, 5, NOW)


intervals = st.lists(st.tuples(offsets, offsets).map(lambda t: (min(t), max(t))), max_size=6)


@given(lo=offsets, size=st.integers(min_value=1, max_value=500), known=intervals)
def test_uncovered_is_exactly_the_gap_minus_what_is_known(
    lo: int, size: int, known: list[tuple[int, int]]
) -> None:
    gap = FeedGap(TOPIC, 0, lo, lo + size, NOW)
    pieces = uncovered(gap, known)
    covered = {o for a, b in known for o in range(a, b)}
    wanted = {o for o in range(gap.from_offset, gap.to_offset) if o not in covered}
    got = [o for p in pieces for o in range(p.from_offset, p.to_offset)]
    assert sorted(got) == sorted(wanted)  # nothing lost, nothing counted twice
    assert len(got) == len(set(got))
    assert total_missed(pieces) <= gap.missed
    assert all(p.topic == TOPIC and p.detected_at == NOW for p in pieces)


# -- the store ------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> BulletinStore:
    return BulletinStore.open(tmp_path / "inbox.sqlite3")


def test_a_gap_is_recorded_once_and_a_grown_one_only_by_its_new_part(
    store: BulletinStore,
) -> None:
    first = FeedGap(TOPIC, 0, 0, 120, NOW)
    assert store.record_gaps([first]) == [first]
    assert store.record_gaps([first]) == []  # a restart before the commit sees it again
    grown = FeedGap(TOPIC, 0, 0, 130, NOW + timedelta(minutes=1))
    assert store.record_gaps([grown]) == [FeedGap(TOPIC, 0, 120, 130, grown.detected_at)]
    other = FeedGap(TOPIC, 1, 0, 120, NOW)  # same offsets, another partition: another gap
    assert store.record_gaps([other]) == [other]
    assert store.gap_totals() == (3, 250)
    assert [(g.partition, g.from_offset, g.to_offset) for g in store.gap_rows()] == [
        (0, 120, 130),
        (1, 0, 120),
        (0, 0, 120),
    ]
    assert store.gap_rows(1)[0].detected_at == grown.detected_at


def test_gaps_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    store = BulletinStore.open(path)
    store.record_gaps([FeedGap(TOPIC, 0, 3, 9, NOW)])
    store.close()
    again = BulletinStore.open(path)
    try:
        assert again.record_gaps([FeedGap(TOPIC, 0, 3, 9, NOW)]) == []
        assert again.gap_rows() == [FeedGap(TOPIC, 0, 3, 9, NOW)]
    finally:
        again.close()


def test_a_version_1_store_is_migrated_keeping_its_bulletins(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(f"BEGIN;\n{MIGRATIONS[0]}\nPRAGMA user_version = 1;\nCOMMIT;")
    conn.execute(
        "INSERT INTO feedback (event_id, kind, subject, sent_at) VALUES ('e1', 'ACTIONED', "
        "'pa-senafront', '2026-03-14T12:00:00.000000Z')"
    )
    conn.close()
    store = BulletinStore.open(path)
    try:
        assert store.schema_version == SCHEMA_VERSION >= 2
        assert store.gap_totals() == (0, 0)
        store.record_gaps([FeedGap(TOPIC, 0, 0, 1, NOW)])
        assert store.gap_totals() == (1, 1)
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM feedback").fetchone()[0] == 1
    conn.close()


def test_the_gaps_table_refuses_an_empty_range(store: BulletinStore) -> None:
    conn = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO gaps (source_topic, source_partition, from_offset, to_offset, "
            "detected_at) VALUES ('t', 0, 5, 5, 'x')"
        )
    conn.close()


# -- enlace inbox ---------------------------------------------------------------------------


def test_gaps_text_names_each_gap_and_the_bound() -> None:
    gaps = [FeedGap(TOPIC, 0, 120, 130, NOW), FeedGap(TOPIC, 0, 0, 120, NOW)]
    text = gaps_text(gaps, total=3, missed=250)
    assert text is not None
    plain = text.plain
    assert plain.startswith("3 gaps: 250 feed offsets expired unread")
    assert f"{TOPIC} p0 offsets 0-120 expired unread (detected 2026-03-14 12:00:00 UTC)" in plain
    assert "and 1 more" in plain
    assert gaps_text([], total=0, missed=0) is None


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_enlace_inbox_shows_the_gaps(store: BulletinStore) -> None:
    path = str(store.path)
    assert "gap" not in _invoke("inbox", "--agency", "cr-msp", "--db", path)
    assert "no feed gaps" in _invoke("inbox", "gaps", "--agency", "cr-msp", "--db", path)
    store.record_gaps([FeedGap(TOPIC, 0, 0, 120, NOW), FeedGap(TOPIC, 0, 200, 210, NOW)])
    listing = _invoke("inbox", "--agency", "cr-msp", "--db", path, "--category", "CYBER")
    assert "2 gaps: 130 feed offsets expired unread" in listing
    assert f"{TOPIC} p0 offsets 0-120 expired unread" in listing
    assert f"{TOPIC} p0 offsets 200-210 expired unread" in listing
    assert f"{TOPIC} p0 offsets 0-120" in _invoke(
        "inbox", "--db", path, "gaps", "--agency", "cr-msp"
    )


# -- the consumer's glue (a fake Kafka consumer; the real one is in tests/faults) -----------


class FakeKafka:
    """What FeedConsumer._resume_out_of_range asks of an AIOKafkaConsumer."""

    def __init__(self, starts: dict[TopicPartition, int], assigned: set[TopicPartition]):
        self.starts = starts
        self.assigned = assigned
        self.seeks: list[tuple[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.starts[tp] for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


class DiskFullSink(SqliteSink):
    async def record_gaps(self, gaps: Sequence[FeedGap]) -> list[FeedGap]:
        raise SinkError(f"disk full: {len(gaps)} gaps not kept")


async def _glue(
    tmp_path: Path, kafka: FakeKafka, kind: type[SqliteSink] = SqliteSink
) -> tuple[FeedConsumer, SqliteSink]:
    settings = ConsumerSettings(agency="cr-msp", state_dir=tmp_path)
    consumer = FeedConsumer(settings, clock=lambda: NOW)
    sink = kind(str(tmp_path / "inbox.sqlite3"))
    await sink.start()
    consumer.store = sink
    consumer._consumer = kafka  # aiokafka is untyped: the stand-in needs no cast
    return consumer, sink


async def test_the_consumer_records_then_seeks_and_reports_a_gap_once(tmp_path: Path) -> None:
    p0, p1, p2 = (TopicPartition(TOPIC, p) for p in range(3))
    kafka = FakeKafka({p0: 50, p1: 0, p2: 9}, assigned={p0, p1})
    consumer, sink = await _glue(tmp_path, kafka)
    try:
        await consumer._resume_out_of_range(OffsetOutOfRangeError({p0: 42, p2: 3}))
        assert kafka.seeks == [(p0, 50)]  # p2 is no longer ours: untouched
        await consumer._resume_out_of_range(NoOffsetForPartitionError(p1))
        assert kafka.seeks[-1] == (p1, 0)  # a first read of an intact partition: no gap
        # A restart before the commit meets the same refusal: the same gap, not reported again.
        await consumer._resume_out_of_range(OffsetOutOfRangeError({p0: 42}))
        assert consumer.gaps == [FeedGap(TOPIC, 0, 42, 50, NOW)]
        registry = consumer.metrics.registry
        labels = {"agency": "cr-msp"}
        assert registry.get_sample_value("enlace_consumer_feed_gaps_total", labels) == 1
        assert registry.get_sample_value("enlace_consumer_feed_gap_offsets_total", labels) == 8
        assert consumer.health()[1]["feed_gaps"] == 1
    finally:
        await sink.stop()


async def test_no_seek_while_the_gap_is_not_in_the_store(tmp_path: Path) -> None:
    p0 = TopicPartition(TOPIC, 0)
    kafka = FakeKafka({p0: 50}, assigned={p0})
    consumer, sink = await _glue(tmp_path, kafka, DiskFullSink)
    try:
        await consumer._resume_out_of_range(OffsetOutOfRangeError({p0: 42}))
    finally:
        await sink.stop()
    assert kafka.seeks == []  # the fetch fails again and this runs again: never a silent skip
    assert consumer.gaps == []
