"""The embedded SQLite store: exactly-once storage, upgrade rule, receipts, inbox queries."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.records import Delivered, FeedRecord, Quarantined, Release, StoreOutcome
from consumers.store import BulletinStore, InboxQuery, plan_batch
from consumers.store_schema import SCHEMA_VERSION
from enlace.core.errors import SinkError
from schemas.envelope import seal
from schemas.key_directory import KeyDirectory
from schemas.models import ThreatBulletin
from schemas.projection import tearline
from schemas.signing import AgencyKey
from tests.feed_records import feed_message
from tests.samples import sample_bulletin

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
KEY = AgencyKey.generate("pa-senafront", valid_from=datetime(2026, 1, 1, tzinfo=UTC))


def _delivered(
    release: Release = Release.FULL, *, offset: int = 0, at: datetime = NOW, **over: object
) -> Delivered:
    bulletin = sample_bulletin("pa-senafront", issued_at=at - timedelta(minutes=1), **over)
    return _deliver(bulletin, release, offset=offset, at=at)


def _deliver(
    bulletin: ThreatBulletin, release: Release, *, offset: int = 0, at: datetime = NOW
) -> Delivered:
    msg = feed_message(seal(bulletin, KEY), release)
    record = FeedRecord("enlace.feed.cr-msp", 0, offset, msg.key, msg.value, tuple(msg.headers))
    shown = bulletin if release is Release.FULL else tearline(bulletin)
    sig = dict(msg.headers)["enlace-sig"]
    return Delivered(record, shown, release, KEY.key_id, sig, at)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BulletinStore]:
    s = BulletinStore.open(tmp_path / "inbox.sqlite3")
    yield s
    s.close()


def test_schema_is_migrated_with_wal(store: BulletinStore) -> None:
    assert store.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_duplicates_are_no_ops(store: BulletinStore) -> None:
    item = _delivered()
    assert store.store([item]) == [StoreOutcome.INSERTED]
    assert store.store([item, item]) == [StoreOutcome.DUPLICATE, StoreOutcome.DUPLICATE]
    assert store.count() == 1


def test_full_upgrades_tearline_but_not_the_reverse(store: BulletinStore) -> None:
    bulletin = sample_bulletin("pa-senafront", issued_at=NOW - timedelta(minutes=1))
    teared = _deliver(bulletin, Release.TEARLINE, at=NOW)
    full = _deliver(bulletin, Release.FULL, offset=1, at=NOW + timedelta(minutes=1))
    assert store.store([teared]) == [StoreOutcome.INSERTED]
    got = store.get(bulletin.bulletin_id)
    assert got is not None
    assert got.row.release == "tearline"
    assert got.bulletin.details is None
    assert store.store([full]) == [StoreOutcome.UPGRADED]
    got = store.get(bulletin.bulletin_id)
    assert got is not None
    assert got.row.release == "full"
    assert got.bulletin == bulletin
    assert got.row.received_at.startswith("2026-06-01T12:00:00")  # first receipt kept
    assert got.row.upgraded_at is not None
    assert store.store([teared]) == [StoreOutcome.DUPLICATE]
    assert store.get(bulletin.bulletin_id).row.release == "full"  # type: ignore[union-attr]


def test_stored_bytes_reverify(store: BulletinStore) -> None:
    item = _delivered()
    store.store([item])
    got = store.get(item.bulletin_id)
    assert got is not None
    assert got.row.verified
    assert got.row.key_id == KEY.key_id
    KeyDirectory.from_keys([KEY]).verify(
        "pa-senafront", got.row.key_id, got.value, got.signature, at=got.bulletin.issued_at
    )


def test_receipt_state(store: BulletinStore) -> None:
    a, b = _delivered(offset=0), _delivered(offset=1)
    store.store([a, b])
    pending = store.pending_receipts()
    assert {p.bulletin_id for p in pending} == {a.bulletin_id, b.bulletin_id}
    assert {p.origin for p in pending} == {"pa-senafront"}
    store.mark_receipts_sent([(a.bulletin_id, "ev-1", NOW)])
    assert [p.bulletin_id for p in store.pending_receipts()] == [b.bulletin_id]
    store.store([a])  # a redelivery does not make a receipt pending again
    assert [p.bulletin_id for p in store.pending_receipts()] == [b.bulletin_id]
    got = store.get(a.bulletin_id)
    assert got is not None
    assert got.receipt_event_id == "ev-1"


def test_quarantine_is_kept_once_per_record(store: BulletinStore) -> None:
    record = FeedRecord("enlace.feed.cr-msp", 2, 41, b"k", b"junk", (("enlace-origin", b"x"),))
    item = Quarantined(record, "bad_magic", "not avro", NOW, origin="pa-senafront")
    assert store.quarantine([item]) == 1
    assert store.quarantine([item]) == 0
    rows = store.quarantine_rows()
    assert len(rows) == 1
    assert rows[0].reason == "bad_magic"
    assert rows[0].source == "enlace.feed.cr-msp[2]@41"


def test_inbox_filters(store: BulletinStore) -> None:
    drug = _delivered(offset=0, at=NOW - timedelta(days=2))
    cyber = _delivered(
        offset=1, at=NOW, category="CYBER", title="Phishing kit 100% targeting customs"
    )
    store.store([drug, cyber])
    everything = store.inbox(InboxQuery())
    assert [r.bulletin_id for r in everything] == [cyber.bulletin_id, drug.bulletin_id]
    assert [r.bulletin_id for r in store.inbox(InboxQuery(category="CYBER"))] == [cyber.bulletin_id]
    since = store.inbox(InboxQuery(since=NOW - timedelta(days=1)))
    assert [r.bulletin_id for r in since] == [cyber.bulletin_id]
    assert [r.bulletin_id for r in store.inbox(InboxQuery(search="100%"))] == [cyber.bulletin_id]
    assert store.inbox(InboxQuery(search="100%x")) == []
    # Search covers details too (full copies only).
    assert len(store.inbox(InboxQuery(search="twin outboards"))) == 2
    assert store.inbox(InboxQuery(release="tearline")) == []
    assert len(store.inbox(InboxQuery(limit=1))) == 1


def test_reopen_keeps_data_and_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    first = BulletinStore.open(path)
    item = _delivered()
    first.store([item])
    first.close()
    again = BulletinStore.open(path)
    assert again.origin_of(item.bulletin_id) == "pa-senafront"
    again.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SinkError, match="newer"):
        BulletinStore.open(path)


def test_open_without_create(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="no store"):
        BulletinStore.open(tmp_path / "missing.sqlite3", create=False)


# -- one transaction per poll -------------------------------------------------------------

_POOL = [sample_bulletin("pa-senafront", issued_at=NOW - timedelta(minutes=1)) for _ in range(3)]
_COPIES = {
    (n, release): _deliver(b, release, offset=n) for n, b in enumerate(_POOL) for release in Release
}
_picks = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(list(Release))), max_size=12)


@given(held=_picks, batch=_picks)
@settings(max_examples=40, deadline=None)
def test_a_poll_in_one_write_does_what_its_records_do_one_by_one(
    tmp_path_factory: pytest.TempPathFactory,
    held: list[tuple[int, Release]],
    batch: list[tuple[int, Release]],
) -> None:
    """The batched write (one lookup, one transaction) against the rule applied one record
    at a time, in-batch repeats and tearline-then-full upgrades included."""
    root = tmp_path_factory.mktemp("poll")
    one, many = BulletinStore.open(root / "one.db"), BulletinStore.open(root / "many.db")
    try:
        for store_ in (one, many):
            store_.store([_COPIES[p] for p in held])
        expected = [outcome for p in batch for outcome in one.store([_COPIES[p]])]
        bad = Quarantined(FeedRecord("t", 0, 99, None, b"junk", ()), "bad_magic", "no", NOW)
        assert many.write([_COPIES[p] for p in batch], [bad]) == expected
        for b in _POOL:
            a, c = one.get(b.bulletin_id), many.get(b.bulletin_id)
            assert (a is None) == (c is None)
            if a is not None and c is not None:
                assert (a.row.release, a.row.upgraded_at) == (c.row.release, c.row.upgraded_at)
        assert [q.reason for q in many.quarantine_rows()] == ["bad_magic"]
    finally:
        one.close()
        many.close()


def test_plan_batch_counts_an_id_seen_earlier_in_the_batch_as_held() -> None:
    t, f = Release.TEARLINE, Release.FULL
    assert plan_batch({}, [("a", t), ("a", f), ("a", f), ("a", t)]) == [
        StoreOutcome.INSERTED,
        StoreOutcome.UPGRADED,
        StoreOutcome.DUPLICATE,
        StoreOutcome.DUPLICATE,
    ]
    assert plan_batch({"a": f}, [("a", f), ("b", t)]) == [
        StoreOutcome.DUPLICATE,
        StoreOutcome.INSERTED,
    ]
