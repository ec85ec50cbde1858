"""Stores full of received bulletins, and a TAXII server over them, for the TAXII tests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consumers.records import Delivered, FeedRecord, Release
from consumers.stix_mapping import bundle_json
from consumers.store import BulletinStore
from schemas.envelope import seal
from schemas.models import ThreatBulletin
from schemas.projection import tearline
from schemas.signing import AgencyKey
from schemas.vocab import Category
from tests.feed_records import feed_message
from tests.samples import sample_bulletin

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
KEY = AgencyKey.generate("pa-senafront", valid_from=datetime(2026, 1, 1, tzinfo=UTC))
USER, PASSWORD, TOKEN = "opencti", "s3cret-pass", "t0ken-abc"
CATEGORIES = (Category.DRUG_TRAFFICKING, Category.CYBER, Category.GANGS)
CYBER = [{"type": "IPV4", "value": "192.0.2.10"}, {"type": "DOMAIN", "value": "evil.example"}]


def deliver(
    bulletin: ThreatBulletin, release: Release, *, offset: int = 0, at: datetime = NOW
) -> Delivered:
    msg = feed_message(seal(bulletin, KEY), release)
    record = FeedRecord("enlace.feed.cr-msp", 0, offset, msg.key, msg.value, tuple(msg.headers))
    shown = bulletin if release is Release.FULL else tearline(bulletin)
    return Delivered(record, shown, release, KEY.key_id, dict(msg.headers)["enlace-sig"], at)


def bulletins(count: int, *, start: datetime = NOW, seed: int = 0) -> list[ThreatBulletin]:
    made = []
    for n in range(count):
        category = CATEGORIES[n % len(CATEGORIES)]
        extra: dict[str, Any] = {"indicators": CYBER} if category is Category.CYBER else {}
        made.append(
            sample_bulletin(
                "pa-senafront",
                bulletin_id=str(uuid.UUID(int=(seed << 64) + n + 1, version=4)),
                category=category,
                issued_at=start - timedelta(minutes=5) + timedelta(milliseconds=n),
                tearline_classification="UNCLASSIFIED",
                **extra,
            )
        )
    return made


def fill(
    store: BulletinStore,
    items: Sequence[ThreatBulletin],
    *,
    release: Release = Release.FULL,
    at: datetime = NOW,
    batch: int = 200,
) -> None:
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        store.write([deliver(b, release, offset=start + i, at=at) for i, b in enumerate(chunk)], ())


def latest_objects(held: Sequence[tuple[ThreatBulletin, Release]]) -> dict[str, dict[str, Any]]:
    """Every object id the bundles of ``held`` name, at its latest version."""
    objects: dict[str, dict[str, Any]] = {}
    for bulletin, release in held:
        shown = bulletin if release is Release.FULL else tearline(bulletin)
        for obj in bundle_json(shown, release)["objects"]:
            version = obj.get("modified") or obj["created"]
            known = objects.get(obj["id"])
            if known is None or (known.get("modified") or known["created"]) < version:
                objects[obj["id"]] = obj
    return objects


def open_store(path: Path) -> BulletinStore:
    return BulletinStore.open(path)
