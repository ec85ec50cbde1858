"""The TAXII index the store keeps: date_added only grows, versions on upgrade, backfill."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.records import Release
from consumers.stix_index import index
from consumers.stix_index.collections import ALL, category_collection
from consumers.stix_index.timestamps import format_us, parse_us, to_us
from consumers.store import BulletinStore
from consumers.store_schema import TAXII_INDEX_VERSION
from consumers.taxii.params import decode_next, encode_next
from schemas.vocab import Category
from tests.taxii_support import NOW, bulletins, deliver, fill, latest_objects


def _rows(path: Path, collection: str = ALL) -> list[tuple[int, str, str, int, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT added_us, object_id, version, latest, first FROM taxii_objects "
            "WHERE collection = ? ORDER BY added_us",
            (collection,),
        ).fetchall()
    finally:
        conn.close()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=-5_000, max_value=5_000), min_size=1, max_size=12))
def test_date_added_strictly_grows_whatever_the_clock_does(
    tmp_path_factory: pytest.TempPathFactory, steps: list[int]
) -> None:
    path = tmp_path_factory.mktemp("idx") / "s.db"
    store = BulletinStore.open(path)
    try:
        at = NOW
        for n, step in enumerate(steps):
            at += timedelta(microseconds=step)  # the wall clock may step back
            store.write([deliver(b, Release.FULL, at=at) for b in bulletins(2, seed=n + 1)], ())
    finally:
        store.close()
    for collection in (ALL, *(category_collection(c) for c in Category)):
        added = [r[0] for r in _rows(path, collection)]
        assert added == sorted(set(added))
    conn = sqlite3.connect(path)
    everything = [r[0] for r in conn.execute("SELECT added_us FROM taxii_objects")]
    conn.close()
    assert len(everything) == len(set(everything))


def test_every_object_once_per_collection_at_its_latest_version(tmp_path: Path) -> None:
    made = bulletins(30)
    store = BulletinStore.open(tmp_path / "s.db")
    fill(store, made[:10], release=Release.TEARLINE)
    fill(store, made, release=Release.FULL)  # ten upgrades, twenty new
    fill(store, made[20:], release=Release.TEARLINE)  # a tearline never replaces a full copy
    store.close()
    rows = _rows(tmp_path / "s.db")
    latest = {r[1]: r[2] for r in rows if r[3] == 1}
    expected = latest_objects([(b, Release.FULL) for b in made])
    assert latest == {k: v.get("modified") or v["created"] for k, v in expected.items()}
    # An upgraded report has two versions, the tearline's first.
    report_versions = [r for r in rows if r[1].startswith("report--") and r[4] == 0]
    assert len(report_versions) == 10
    assert all(r[3] == 1 for r in report_versions)


def test_a_tearline_and_its_full_copy_in_one_batch_are_two_versions(tmp_path: Path) -> None:
    (one,) = bulletins(1)
    store = BulletinStore.open(tmp_path / "s.db")
    store.write([deliver(one, Release.TEARLINE), deliver(one, Release.FULL, offset=1)], ())
    store.close()
    reports = [r for r in _rows(tmp_path / "s.db") if r[1].startswith("report--")]
    assert [(r[3], r[4]) for r in reports] == [(0, 1), (1, 0)]


def test_a_store_from_before_the_index_is_indexed_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    made = bulletins(12)
    store = BulletinStore.open(path)
    fill(store, made)
    store.close()
    fresh = _rows(path)
    conn = sqlite3.connect(path)
    # Back to the schema before the index, and before what later migrations (4: lifecycle) add.
    conn.executescript(
        "DROP TABLE taxii_objects; DROP TABLE stix_bodies; "
        "DROP TABLE recalls; DROP TABLE supersedes; ALTER TABLE bulletins DROP COLUMN recall_id; "
        "ALTER TABLE bulletins DROP COLUMN recalled_at; "
        "ALTER TABLE bulletins DROP COLUMN recall_reason; "
        f"PRAGMA user_version = {TAXII_INDEX_VERSION - 1};"
    )
    conn.close()
    BulletinStore.open(path).close()
    again = _rows(path)
    assert {r[1:] for r in again} == {r[1:] for r in fresh}


def test_pages_are_keyset_reads_that_see_every_row_once(tmp_path: Path) -> None:
    store = BulletinStore.open(tmp_path / "s.db")
    fill(store, bulletins(40))
    store.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    seen: list[str] = []
    after = None
    while True:
        page = index.objects_page(conn, ALL, index.ObjectFilter(), after_us=after, limit=7)
        seen += [r.object_id for r in page.rows]
        if not page.more:
            break
        after = page.rows[-1].added_us
    assert len(seen) == len(set(seen)) == len(_rows(tmp_path / "s.db"))
    plan = " ".join(
        str(r)
        for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT added_us FROM taxii_objects t WHERE t.collection = ? "
            "AND t.added_us > ? AND t.latest = 1 ORDER BY t.added_us LIMIT 5",
            (ALL, 0),
        )
    )
    assert "taxii_latest_by_added" in plan
    assert "TEMP B-TREE" not in plan


@given(st.integers(min_value=0, max_value=2**62))
def test_next_tokens_round_trip(value: int) -> None:
    assert decode_next(encode_next(value)) == value


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))  # noqa: DTZ001 - hypothesis wants naive bounds
def test_timestamps_round_trip(moment: datetime) -> None:
    value = to_us(moment.replace(tzinfo=UTC))
    assert parse_us(format_us(value)) == value
