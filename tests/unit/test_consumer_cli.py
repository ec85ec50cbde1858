"""``enlace inbox``, ``inbox show`` and ``inbox quarantine`` on a temporary store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consumers.records import Delivered, FeedRecord, Quarantined, Release
from consumers.store import BulletinStore
from enlace.cli import app
from schemas.envelope import seal
from schemas.key_directory import KeyDirectory
from schemas.signing import AgencyKey
from tests.feed_records import feed_message
from tests.samples import sample_bulletin

NOW = datetime.now(UTC)
KEY = AgencyKey.generate("pa-senafront", valid_from=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "inbox.sqlite3"
    store = BulletinStore.open(path)
    items = []
    for n, category in enumerate(["CYBER", "GANGS"]):
        bulletin = sample_bulletin(
            "pa-senafront",
            issued_at=NOW - timedelta(minutes=5),
            category=category,
            title=f"Report {category.lower()}",
        )
        msg = feed_message(seal(bulletin, KEY), "full")
        record = FeedRecord("enlace.feed.cr-msp", 0, n, msg.key, msg.value, tuple(msg.headers))
        sig = dict(msg.headers)["enlace-sig"]
        items.append(Delivered(record, bulletin, Release.FULL, KEY.key_id, sig, NOW))
    store.store(items)
    junk = FeedRecord("enlace.feed.cr-msp", 1, 0, None, b"junk", ())
    store.quarantine([Quarantined(junk, "bad_header", "header missing", NOW)])
    store.close()
    return path


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_inbox_lists_and_filters(db: Path) -> None:
    everything = _invoke("inbox", "--agency", "cr-msp", "--db", str(db))
    assert "Report cyber" in everything
    assert "Report gangs" in everything
    assert "2 of 2" in everything
    cyber = _invoke("inbox", "--agency", "cr-msp", "--db", str(db), "--category", "cyber")
    assert "Report cyber" in cyber
    assert "Report gangs" not in cyber
    found = _invoke("inbox", "--agency", "cr-msp", "--db", str(db), "--search", "gangs")
    assert "1 of 2" in found
    future = _invoke("inbox", "--agency", "cr-msp", "--db", str(db), "--since", "2099-01-01")
    assert "0 of 2" in future


def test_inbox_show_rechecks_signature(db: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    KeyDirectory.from_keys([KEY]).dump(keys)
    store = BulletinStore.open(db)
    first = store.ids()[0]
    store.close()
    out = _invoke(
        "inbox", "--agency", "cr-msp", "--db", str(db), "show", first[:8], "--keys", str(keys)
    )
    assert first in out
    assert "still valid" in out
    assert KEY.key_id in out
    KeyDirectory.from_keys([KEY]).revoke(KEY.key_id).dump(keys)
    out = _invoke(
        "inbox", "show", first, "--agency", "cr-msp", "--db", str(db), "--keys", str(keys)
    )
    assert "FAILS now: revoked_key" in out


def test_inbox_show_unknown_id(db: Path) -> None:
    result = CliRunner().invoke(app, ["inbox", "--agency", "cr-msp", "--db", str(db), "show", "zz"])
    assert result.exit_code != 0


def test_inbox_quarantine(db: Path) -> None:
    out = _invoke("inbox", "quarantine", "--agency", "cr-msp", "--db", str(db))
    assert "bad_header" in out
    assert "enlace.feed.cr-msp[1]@0" in out
