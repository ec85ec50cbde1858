"""Supersede links in the store (either order, same originator only), the references a sealed
tearline carries in its envelope, and what ``enlace inbox`` shows of the lifecycle."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from consumers.inbox_view import bulletin_panel, inbox_table
from consumers.records import Delivered, FeedRecord, Release
from consumers.store import BulletinStore, InboxQuery
from consumers.verify import open_feed_record
from schemas import headers as hdr
from schemas.key_directory import KeyDirectory
from schemas.models import ThreatBulletin
from schemas.sealed import recipients_of, release_for, seal_sealed, view_sealed
from schemas.sealing import TEARLINE, BoxCache
from schemas.signing import AgencyKey
from tests.unit.test_consumer_recall import (
    CO,
    NOW,
    PA,
    VALID_FROM,
    bulletin,
    delivered,
    recalled,
)


def _superseding(old: str, origin: str = "pa-senafront", **over: object) -> ThreatBulletin:
    refs = [
        {"bulletin_id": old, "relation": "SUPERSEDES"},
        {"bulletin_id": str(uuid.uuid4()), "relation": "RELATED"},
    ]
    return bulletin(origin, references=refs, **over)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BulletinStore]:
    s = BulletinStore.open(tmp_path / "inbox.sqlite3")
    yield s
    s.close()


def _status(store: BulletinStore, bulletin_id: str) -> str:
    got = store.get(bulletin_id)
    assert got is not None
    return got.row.status


@pytest.mark.parametrize("old_first", [True, False])
def test_a_superseded_bulletin_is_marked_whichever_arrives_first(
    store: BulletinStore, old_first: bool
) -> None:
    old = bulletin()
    new = _superseding(old.bulletin_id)
    order = [delivered(old), delivered(new)] if old_first else [delivered(new), delivered(old)]
    for item in order:
        store.write_poll([item])
    assert _status(store, old.bulletin_id) == "superseded"
    assert _status(store, new.bulletin_id) == ""
    got_old, got_new = store.get(old.bulletin_id), store.get(new.bulletin_id)
    assert got_old is not None
    assert got_new is not None
    assert got_old.links.superseded_by == (new.bulletin_id,)
    assert got_new.links.supersedes == (old.bulletin_id,)  # RELATED is not a supersede link
    rows = {r.bulletin_id: r.status for r in store.inbox(InboxQuery())}
    assert rows == {old.bulletin_id: "superseded", new.bulletin_id: ""}


def test_only_the_originator_supersedes_its_bulletins(store: BulletinStore) -> None:
    old = bulletin()
    claim = _superseding(old.bulletin_id, "co-ponal")
    store.write_poll([delivered(old), delivered(claim, key=CO)])
    assert _status(store, old.bulletin_id) == ""
    got = store.get(old.bulletin_id)
    assert got is not None
    assert got.links.superseded_by == ()


def test_withdrawn_shows_before_superseded(store: BulletinStore) -> None:
    old = bulletin()
    store.write_poll([delivered(old), delivered(_superseding(old.bulletin_id))])
    store.write_poll([recalled(old.bulletin_id)])
    assert _status(store, old.bulletin_id) == "withdrawn"


def test_a_sealed_tearline_carries_its_envelopes_references() -> None:
    cr = AgencyKey.generate("cr-msp", valid_from=VALID_FROM)
    directory = KeyDirectory.from_keys([PA, cr])
    old = str(uuid.uuid4())
    b = _superseding(old)
    sealed = seal_sealed(b, PA, recipients_of(directory, ["cr-msp"], NOW), boxes=BoxCache())
    value = release_for(view_sealed(sealed.value), "cr-msp", TEARLINE)
    assert value is not None
    headers = (*sealed.headers, (hdr.RELEASE, b"tearline"))
    record = FeedRecord("enlace.feed.cr-msp", 0, 0, sealed.key, value, headers)
    item = open_feed_record(record, directory, now=NOW, max_bytes=1_048_576, own=cr)
    assert isinstance(item, Delivered)
    assert item.release is Release.TEARLINE
    assert item.bulletin.references == ()  # the body drops them
    assert item.references == b.references  # the envelope keeps them


def _text(renderable: object) -> str:
    console = Console(record=True, width=250)
    console.print(renderable)
    return console.export_text()


def test_the_inbox_shows_withdrawn_and_superseded(store: BulletinStore) -> None:
    old, gone = bulletin(), bulletin()
    new = _superseding(old.bulletin_id)
    store.write_poll([delivered(old), delivered(new), delivered(gone)])
    store.write_poll([recalled(gone.bulletin_id, reason="wrong vessel named")])
    listing = _text(inbox_table(store.inbox(InboxQuery()), title="t"))
    assert "WITHDRAWN" in listing
    assert "SUPERSEDED" in listing
    shown_gone, shown_old, shown_new = (
        store.get(gone.bulletin_id),
        store.get(old.bulletin_id),
        store.get(new.bulletin_id),
    )
    assert shown_gone is not None
    assert shown_old is not None
    assert shown_new is not None
    text = _text(bulletin_panel(shown_gone, recheck="-"))
    assert "wrong vessel named" in text
    assert "WITHDRAWN" in text
    text_old = _text(bulletin_panel(shown_old, recheck="-"))
    assert "superseded by" in text_old
    assert new.bulletin_id in text_old
    assert "supersedes" in _text(bulletin_panel(shown_new, recheck="-"))
    assert "withdrawn" not in _text(bulletin_panel(shown_new, recheck="-")).lower()
