"""Recalls on the partner side: verification, the store (either order, idempotent, withdrawn
is final), the TAXII index's revoked versions, and the pure screening and planning rules."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.lifecycle import plan_poll, revoked_at, screen_recalls
from consumers.records import (
    Delivered,
    FeedRecord,
    Item,
    Quarantined,
    Recalled,
    RecallOutcome,
    Release,
    StoreOutcome,
)
from consumers.stix_index import index
from consumers.stix_index.collections import ALL
from consumers.stix_mapping import stix_id
from consumers.store import BulletinStore
from consumers.verify import (
    KEY_MISMATCH,
    RECALL_NOT_ORIGINATOR,
    RELEASE_MISMATCH,
    open_feed_record,
)
from schemas import headers as hdr
from schemas.envelope import seal
from schemas.key_directory import KeyDirectory
from schemas.models import ThreatBulletin
from schemas.projection import tearline
from schemas.recall import BulletinRecall, seal_recall
from schemas.signing import AgencyKey
from tests.feed_records import feed_message
from tests.samples import sample_bulletin

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
VALID_FROM = datetime(2026, 1, 1, tzinfo=UTC)
PA = AgencyKey.generate("pa-senafront", valid_from=VALID_FROM)
CO = AgencyKey.generate("co-ponal", valid_from=VALID_FROM)
DIRECTORY = KeyDirectory.from_keys([PA, CO])
FEED = "enlace.feed.cr-msp"


def recall_record(
    bulletin_id: str,
    key: AgencyKey = PA,
    *,
    offset: int = 10,
    reason: str = "source burned",
    at: datetime = NOW,
    recall: BulletinRecall | None = None,
    record_key: bytes | None = None,
) -> FeedRecord:
    recall = recall or BulletinRecall.new(key.agency, bulletin_id, reason, at)
    sealed = seal_recall(recall, key)
    headers = (*sealed.headers, (hdr.RELEASE, hdr.RELEASE_RECALL.encode("ascii")))
    return FeedRecord(FEED, 0, offset, record_key or sealed.key, sealed.value, tuple(headers))


def open_(record: FeedRecord) -> Delivered | Quarantined | Recalled:
    return open_feed_record(record, DIRECTORY, now=NOW, max_bytes=1_048_576)


def recalled(bulletin_id: str, key: AgencyKey = PA, **kw: object) -> Recalled:
    item = open_(recall_record(bulletin_id, key, **kw))  # type: ignore[arg-type]  # test kwargs
    assert isinstance(item, Recalled), item
    return item


def bulletin(origin: str = "pa-senafront", **over: object) -> ThreatBulletin:
    return sample_bulletin(origin, issued_at=NOW - timedelta(minutes=5), **over)


def delivered(
    b: ThreatBulletin, release: Release = Release.FULL, *, key: AgencyKey = PA, offset: int = 0
) -> Delivered:
    msg = feed_message(seal(b, key), release)
    record = FeedRecord(FEED, 0, offset, msg.key, msg.value, tuple(msg.headers))
    item = open_(record)
    assert isinstance(item, Delivered), item
    assert item.bulletin == (b if release is Release.FULL else tearline(b))
    return item


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BulletinStore]:
    s = BulletinStore.open(tmp_path / "inbox.sqlite3")
    yield s
    s.close()


# -- verification -------------------------------------------------------------------------


def test_a_signed_recall_is_opened_as_a_recall() -> None:
    item = open_(recall_record("3f1c7d2e-0000-4000-8000-000000000001", reason="retracted"))
    assert isinstance(item, Recalled)
    assert item.bulletin_id == "3f1c7d2e-0000-4000-8000-000000000001"
    assert item.origin == "pa-senafront"
    assert item.recall.reason == "retracted"
    assert item.key_id == PA.key_id
    assert item.summary_json()["type"] == "recall"


def test_a_recall_with_a_flipped_byte_is_quarantined_with_a_reason() -> None:
    good = recall_record("3f1c7d2e-0000-4000-8000-000000000001")
    value = bytearray(good.value)
    value[-3] ^= 0x01  # inside the reason text: still decodes, the signature fails
    item = open_(FeedRecord(FEED, 0, 1, good.key, bytes(value), good.headers))
    assert isinstance(item, Quarantined)
    assert item.reason == "bad_signature"
    assert item.release == "recall"
    assert item.bulletin_id == "3f1c7d2e-0000-4000-8000-000000000001"


def test_a_recall_claiming_another_origin_than_its_signer_is_quarantined() -> None:
    # Colombia signs a recall that names Panama as its origin, under Panama's headers.
    forged = BulletinRecall.new("pa-senafront", "3f1c7d2e-0000-4000-8000-000000000001", "x", NOW)
    sealed = seal_recall(forged, PA)
    headers = hdr.build(origin="pa-senafront", key_id=CO.key_id, sig=CO.sign(sealed.value))
    record = FeedRecord(FEED, 0, 1, sealed.key, sealed.value, (*headers, (hdr.RELEASE, b"recall")))
    item = open_(record)
    assert isinstance(item, Quarantined)
    assert item.reason == "key_not_of_agency"


def test_a_recall_of_an_unknown_agency_is_quarantined() -> None:
    stranger = AgencyKey.generate("mx-sedena", valid_from=VALID_FROM)
    item = open_(recall_record("3f1c7d2e-0000-4000-8000-000000000001", stranger))
    assert isinstance(item, Quarantined)
    assert item.reason == "unknown_key"


def test_the_record_key_must_be_the_recalled_bulletin() -> None:
    item = open_(
        recall_record(
            "3f1c7d2e-0000-4000-8000-000000000001",
            record_key=b"3f1c7d2e-0000-4000-8000-000000000002",
        )
    )
    assert isinstance(item, Quarantined)
    assert item.reason == KEY_MISMATCH


def test_a_recall_released_as_a_bulletin_and_a_bulletin_released_as_a_recall_are_refused() -> None:
    rec = recall_record("3f1c7d2e-0000-4000-8000-000000000001")
    as_full = [(k, b"full" if k == hdr.RELEASE else v) for k, v in rec.headers]
    item = open_(FeedRecord(FEED, 0, 1, rec.key, rec.value, tuple(as_full)))
    assert isinstance(item, Quarantined)
    assert item.reason == RELEASE_MISMATCH
    msg = feed_message(seal(bulletin(), PA), "full")
    as_recall = [(k, b"recall" if k == hdr.RELEASE else v) for k, v in msg.headers]
    item = open_(FeedRecord(FEED, 0, 2, msg.key, msg.value, tuple(as_recall)))
    assert isinstance(item, Quarantined)
    assert item.reason == "unknown_fingerprint"  # a bulletin is not a BulletinRecall


# -- screening: only the bulletin's originator recalls it ----------------------------------


def test_a_recall_by_another_agency_than_the_originator_is_screened_out() -> None:
    b = bulletin()
    by_co = recalled(b.bulletin_id, CO)
    held = screen_recalls([by_co], {b.bulletin_id: "pa-senafront"})
    assert isinstance(held[0], Quarantined)
    assert held[0].reason == RECALL_NOT_ORIGINATOR
    # The originator's own passes; so does one for a bulletin not known yet.
    own = recalled(b.bulletin_id)
    assert screen_recalls([own], {b.bulletin_id: "pa-senafront"}) == [own]
    assert screen_recalls([by_co], {}) == [by_co]
    # A delivery earlier in the poll makes the origin known.
    first = delivered(b)
    out = screen_recalls([first, by_co], {})
    assert isinstance(out[1], Quarantined)
    assert out[1].reason == RECALL_NOT_ORIGINATOR


# -- the store -----------------------------------------------------------------------------


def _row(store: BulletinStore, bulletin_id: str) -> tuple[object, ...]:
    got = store.get(bulletin_id)
    assert got is not None
    return (got.row, got.bulletin, got.value, got.signature)


def test_a_recall_after_its_bulletin_withdraws_it_and_a_repeat_changes_nothing(
    store: BulletinStore,
) -> None:
    b = bulletin()
    assert store.write_poll([delivered(b)]).stored == {0: StoreOutcome.INSERTED}
    recall = recalled(b.bulletin_id, reason="the source recanted")
    assert store.write_poll([recall]).recalls == {0: RecallOutcome.APPLIED}
    got = store.get(b.bulletin_id)
    assert got is not None
    assert got.row.status == "withdrawn"
    assert got.row.recall_id == recall.recall.recall_id
    assert got.row.recall_reason == "the source recanted"
    assert got.row.recalled_at is not None
    assert got.bulletin == b  # kept
    before = _row(store, b.bulletin_id)
    again = recalled(b.bulletin_id, recall=recall.recall, offset=11)
    assert store.write_poll([again]).recalls == {0: RecallOutcome.DUPLICATE}
    # A second, different recall of the same bulletin by the same originator: first wins.
    other = recalled(b.bulletin_id, reason="another reason", offset=12)
    assert store.write_poll([other]).recalls == {0: RecallOutcome.DUPLICATE}
    assert _row(store, b.bulletin_id) == before
    assert store.recall_count() == (1, 0)


def test_a_recall_before_its_bulletin_is_kept_and_applied_on_arrival(
    store: BulletinStore,
) -> None:
    b = bulletin()
    assert store.write_poll([recalled(b.bulletin_id)]).recalls == {0: RecallOutcome.PENDING}
    assert store.get(b.bulletin_id) is None
    assert store.recall_count() == (1, 1)
    assert store.write_poll([delivered(b, Release.TEARLINE)]).stored == {0: StoreOutcome.INSERTED}
    got = store.get(b.bulletin_id)
    assert got is not None
    assert got.row.status == "withdrawn"
    assert store.recall_count() == (1, 0)
    # Withdrawn is final: the full copy arriving later changes nothing.
    assert store.write_poll([delivered(b, Release.FULL)]).stored == {0: StoreOutcome.DUPLICATE}
    got = store.get(b.bulletin_id)
    assert got is not None
    assert got.row.release == "tearline"


def test_a_pending_recall_by_another_agency_does_not_withdraw_the_bulletin(
    store: BulletinStore,
) -> None:
    b = bulletin()
    store.write_poll([recalled(b.bulletin_id, CO)])
    store.write_poll([delivered(b)])
    got = store.get(b.bulletin_id)
    assert got is not None
    assert got.row.status == ""
    # The originator's own recall still applies afterwards.
    assert store.write_poll([recalled(b.bulletin_id, offset=20)]).recalls == {
        0: RecallOutcome.APPLIED
    }


def test_no_receipt_is_owed_for_a_recall(store: BulletinStore) -> None:
    b = bulletin()
    store.write_poll([recalled("3f1c7d2e-0000-4000-8000-000000000009")])
    store.write_poll([delivered(b), recalled(b.bulletin_id)])
    assert [p.bulletin_id for p in store.pending_receipts()] == [b.bulletin_id]


def test_the_quarantine_keeps_screened_recalls(store: BulletinStore) -> None:
    b = bulletin()
    store.write_poll([delivered(b)])
    bad = screen_recalls([recalled(b.bulletin_id, CO)], store.origins_of([b.bulletin_id]))
    done = store.write_poll(bad)
    assert done.recalls == {}
    assert [r.reason for r in store.quarantine_rows()] == [RECALL_NOT_ORIGINATOR]
    got = store.get(b.bulletin_id)
    assert got is not None
    assert got.row.status == ""


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(
        st.sampled_from([Release.TEARLINE, Release.FULL, None]), min_size=1, max_size=6
    ),
    cut=st.integers(0, 6),
)
def test_a_poll_in_one_write_does_what_its_records_do_one_by_one(
    tmp_path_factory: pytest.TempPathFactory, events: list[Release | None], cut: int
) -> None:
    b = bulletin()
    recall = recalled(b.bulletin_id)
    items: list[Item] = [
        recall if e is None else delivered(b, e, offset=n) for n, e in enumerate(events)
    ]
    base = tmp_path_factory.mktemp("polls")
    one = BulletinStore.open(base / "one.db")
    many = BulletinStore.open(base / "many.db")
    try:
        one.write_poll(items[:cut])
        one.write_poll(items[cut:])
        for item in items:
            many.write_poll([item])
        a, z = one.get(b.bulletin_id), many.get(b.bulletin_id)
        if a is None or z is None:
            assert a is None
            assert z is None
        else:
            assert (a.row.release, a.row.status, a.bulletin) == (
                z.row.release,
                z.row.status,
                z.bulletin,
            )
            # Withdrawn iff a recall came, whatever the order; after it, no copy upgrades.
            assert (a.row.status == "withdrawn") == (None in events)
            held = (
                [e for e in events[: events.index(None)] if e is not None] if None in events else []
            )
            if held and Release.FULL not in held:
                assert a.row.release == "tearline"
    finally:
        one.close()
        many.close()


def test_plan_poll_takes_no_later_copy_of_a_withdrawn_bulletin() -> None:
    b = bulletin()
    t, f = delivered(b, Release.TEARLINE), delivered(b, Release.FULL)
    r = recalled(b.bulletin_id)
    assert plan_poll({}, set(), [t, r, f, r]) == {
        0: StoreOutcome.INSERTED,
        1: RecallOutcome.APPLIED,
        2: StoreOutcome.DUPLICATE,
        3: RecallOutcome.DUPLICATE,
    }
    assert plan_poll({}, set(), [r, t, f]) == {
        0: RecallOutcome.PENDING,
        1: StoreOutcome.INSERTED,
        2: StoreOutcome.DUPLICATE,
    }


# -- the TAXII index -------------------------------------------------------------------------


def _versions(path: Path, object_id: str) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(path)
    try:
        flt = index.ObjectFilter(ids=(object_id,), versions=index.VersionMatch(every=True))
        page = index.objects_page(conn, ALL, flt, after_us=None, limit=100)
        return [(r.added_us, r.version, r.body) for r in page.rows]
    finally:
        conn.close()


def test_the_taxii_index_adds_revoked_versions_a_poller_sees_after_what_it_had(
    store: BulletinStore,
) -> None:
    b = bulletin()
    store.write_poll([delivered(b)])
    report = stix_id("report", b.bulletin_id)
    (first,) = _versions(store.path, report)
    later = NOW + timedelta(minutes=10)
    r = open_feed_record(
        recall_record(b.bulletin_id, at=NOW + timedelta(minutes=1)),
        DIRECTORY,
        now=later,
        max_bytes=1_048_576,
    )
    assert isinstance(r, Recalled)
    store.write_poll([r])
    versions = _versions(store.path, report)
    assert len(versions) == 2
    assert versions[0] == first
    added, version, body = versions[1]
    assert added > first[0]
    assert version > first[1]
    assert '"revoked":true' in body
    assert version.startswith((NOW + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"))
    # The default (latest) read after what the poller had shows only revoked objects.
    conn = sqlite3.connect(store.path)
    try:
        page = index.objects_page(
            conn, ALL, index.ObjectFilter(added_after_us=first[0]), after_us=None, limit=100
        )
    finally:
        conn.close()
    own = [row for row in page.rows if '"created_by_ref"' in row.body]
    assert own
    assert all('"revoked":true' in row.body for row in own if "identity--" not in row.object_id)
    # Redelivery adds nothing.
    store.write_poll([r])
    assert len(_versions(store.path, report)) == 2


def test_the_revoked_version_follows_every_copy_whatever_the_clocks() -> None:
    issued = NOW
    for recalled_at in (issued - timedelta(days=1), issued, issued + timedelta(seconds=3)):
        at = revoked_at(issued, recalled_at)
        assert at > issued + timedelta(milliseconds=1)  # after the full copy's version
        assert at >= recalled_at
