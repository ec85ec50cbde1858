"""The consumer benchmark's pure parts: the releases it builds, the jobs, the rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.consumer_feed import CHUNK, TEARLINE_EVERY, Job, build_releases, jobs, release_kind
from bench.consumer_phase import SinkRun
from bench.cpu import CpuUse
from consumers.records import Delivered, FeedRecord, Release
from consumers.verify import open_feed_record
from schemas.agency_key import AgencyKey
from schemas.key_directory import KeyDirectory
from schemas.sealing import BoxCache
from schemas.vocab import ReleaseKind

NOW = datetime.now(UTC)
KEYS = {a: AgencyKey.generate(a, valid_from=NOW - timedelta(days=1))
        for a in ("pa-senafront", "us-jiatfs", "cr-msp")}  # fmt: skip


def test_jobs_cover_every_index_once() -> None:
    made = jobs(["pa-senafront"], "cr-msp", 2 * CHUNK + 7)
    indexes = [i for job in made for i in range(job.first, job.first + job.count)]
    assert indexes == list(range(2 * CHUNK + 7))


def test_one_release_in_four_is_a_tearline() -> None:
    kinds = [release_kind(i) for i in range(4 * TEARLINE_EVERY)]
    assert kinds.count(ReleaseKind.TEARLINE) == 4


def test_built_releases_open_for_the_partner_as_the_router_released_them() -> None:
    rows = build_releases(Job(("pa-senafront", "us-jiatfs"), "cr-msp", 0, 8), KEYS)
    directory = KeyDirectory.from_keys(KEYS.values())
    boxes = BoxCache()
    releases = []
    for offset, (key, value, headers) in enumerate(rows):
        record = FeedRecord("feed", 0, offset, key, value, tuple(headers))
        item = open_feed_record(record, directory, now=NOW, max_bytes=1_000_000,
                                own=KEYS["cr-msp"], boxes=boxes)  # fmt: skip
        assert isinstance(item, Delivered), item
        releases.append(item.release)
    assert releases.count(Release.TEARLINE) == 2
    assert len({key for key, _, _ in rows}) == 8


def _run(stored: int, duplicates: int = 0, quarantined: int = 0) -> SinkRun:
    cpu = CpuUse(seconds=2.0, processes={}, bench_s=1.0, machine_busy=None)
    return SinkRun("sqlite", 1000, stored, stored, duplicates, quarantined, stored, 2.0, cpu)


def test_a_complete_run_is_no_failure_and_reports_its_rate_and_cpu() -> None:
    run = _run(1000)
    assert run.failures() == []
    assert run.rate == 500.0
    assert run.cpu_ms_per_record == 1.0
    row = run.row(baseline=10_000.0)
    assert row.rate == 500.0
    assert row.unit == "records/s"
    assert "5.0% of the raw read" in row.note
    assert row.cpu is not None
    assert row.cpu["stored"] == 1000


def test_lost_duplicated_or_quarantined_records_are_failures() -> None:
    assert _run(990).failures() == ["10 of 1000 NOT STORED"]
    assert _run(1000, duplicates=3).failures() == ["3 DUPLICATED"]
    assert "2 QUARANTINED" in _run(1000, quarantined=2).row(None).note
