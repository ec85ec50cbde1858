"""Consumer settings (own-feed guard, topic prefix), --since parsing, receipt events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError as PydanticValidationError

from consumers.inbox_view import parse_since
from consumers.receipts import (
    feedback_event,
    incident_event,
    load_agency_key,
    receipt_event,
    receipt_event_id,
)
from consumers.settings import ConsumerSettings
from enlace.core.errors import ConfigError, ValidationError
from schemas.signing import AgencyKey
from schemas.vocab import TrustEventKind

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_topics_follow_the_agency() -> None:
    s = ConsumerSettings(agency="cr-msp")
    assert s.feed_topic_name() == "enlace.feed.cr-msp"
    assert s.receipts_topic() == "enlace.receipts.cr-msp"
    assert s.consumer_group() == "enlace.consumer.cr-msp"
    t = ConsumerSettings(agency="cr-msp", topic_prefix="t.ab12.")
    assert t.feed_topic_name() == "t.ab12.enlace.feed.cr-msp"
    assert t.receipts_topic() == "t.ab12.enlace.receipts.cr-msp"
    assert t.consumer_group() == "t.ab12.enlace.consumer.cr-msp"


@pytest.mark.parametrize(
    "topic", ["enlace.feed.pa-senafront", "enlace.feed.cr-msp2", "enlace.outbound.cr-msp", "x"]
)
def test_foreign_feed_is_refused(topic: str) -> None:
    with pytest.raises(ConfigError, match="only its own feed"):
        ConsumerSettings(agency="cr-msp", feed_topic=topic).feed_topic_name()


@pytest.mark.parametrize(
    "prefix", ["enlace.feed.pa-senafront.", "t.enlace.", "no-dot", "UPPER.", ".x.", "a..b."]
)
def test_prefix_cannot_smuggle_a_feed(prefix: str) -> None:
    with pytest.raises(PydanticValidationError):
        ConsumerSettings(agency="cr-msp", topic_prefix=prefix)


def test_agency_id_is_checked_and_settings_are_frozen() -> None:
    with pytest.raises(PydanticValidationError):
        ConsumerSettings(agency="CR-MSP")
    s = ConsumerSettings(agency="cr-msp")
    with pytest.raises(PydanticValidationError):
        s.agency = "pa-senafront"  # type: ignore[misc]  # frozen: the point of the test


def test_default_sink_is_the_embedded_store(tmp_path: Path) -> None:
    s = ConsumerSettings(agency="cr-msp", state_dir=tmp_path)
    assert s.sink_uris() == (f"sqlite:{tmp_path}/consumers/cr-msp/inbox.sqlite3",)
    assert ConsumerSettings(agency="cr-msp", sinks=("jsonl:x",)).sink_uris() == ("jsonl:x",)


def test_sinks_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENLACE_AGENCY", "cr-msp")
    monkeypatch.setenv("ENLACE_SINKS", '["sqlite:a.db", "stix:out"]')
    assert ConsumerSettings().sinks == ("sqlite:a.db", "stix:out")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2026-05-01", datetime(2026, 5, 1, tzinfo=UTC)),
        ("2026-05-01T10:00:00Z", datetime(2026, 5, 1, 10, tzinfo=UTC)),
        ("2026-05-01T10:00:00-05:00", datetime(2026, 5, 1, 15, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "5y", "-3d", ""])
def test_parse_since_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_since(text, NOW)


def test_receipts_have_stable_ids() -> None:
    bid = "6f1c7d2e-8b3a-4c5d-9e0f-1a2b3c4d5e6f"
    a = receipt_event("cr-msp", "pa-senafront", bid, now=NOW)
    b = receipt_event("cr-msp", "pa-senafront", bid, now=NOW + timedelta(hours=1))
    assert a.event_id == b.event_id == receipt_event_id("cr-msp", bid)
    assert receipt_event_id("gt-pnc", bid) != a.event_id
    assert (a.kind, a.reporter, a.subject, a.bulletin_id) == (
        TrustEventKind.RECEIPT,
        "cr-msp",
        "pa-senafront",
        bid,
    )


def test_feedback_and_incident_events() -> None:
    bid = "6f1c7d2e-8b3a-4c5d-9e0f-1a2b3c4d5e6f"
    fb = feedback_event("cr-msp", "pa-senafront", bid, "not-useful", note="stale", now=NOW)
    assert fb.kind is TrustEventKind.FEEDBACK_NOT_USEFUL
    assert fb.note == "stale"
    inc = incident_event("pa-senafront", "cr-msp", "leak", bid, note=None, now=NOW)
    assert (inc.kind, inc.reporter, inc.subject) == (
        TrustEventKind.INCIDENT_LEAK,
        "pa-senafront",
        "cr-msp",
    )
    with pytest.raises(ConfigError):
        feedback_event("cr-msp", "pa-senafront", bid, "great", note=None, now=NOW)
    with pytest.raises(ConfigError):
        incident_event("pa-senafront", "cr-msp", "rumour", bid, note=None, now=NOW)


def test_self_report_is_invalid() -> None:
    with pytest.raises((ValidationError, ValueError)):
        receipt_event("cr-msp", "cr-msp", "6f1c7d2e-8b3a-4c5d-9e0f-1a2b3c4d5e6f", now=NOW)


def test_load_agency_key(tmp_path: Path) -> None:
    old = AgencyKey.generate("cr-msp", "cr-msp-old", valid_from=NOW - timedelta(days=30))
    new = AgencyKey.generate("cr-msp", "cr-msp-new", valid_from=NOW)
    other = AgencyKey.generate("pa-senafront", valid_from=NOW)
    for key in (old, new, other):
        key.save(tmp_path)
    assert load_agency_key("cr-msp", None, tmp_path).key_id == "cr-msp-new"
    assert load_agency_key("cr-msp", tmp_path / old.file_name(), tmp_path).key_id == "cr-msp-old"
    with pytest.raises(ConfigError, match="belongs to"):
        load_agency_key("cr-msp", tmp_path / other.file_name(), tmp_path)
    with pytest.raises(ConfigError, match="no signing key"):
        load_agency_key("gt-pnc", None, tmp_path)
