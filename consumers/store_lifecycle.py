"""The store's lifecycle SQL: recalls kept and applied, supersede links (inside the
store's write transaction; the rules are :mod:`consumers.lifecycle`'s)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from consumers.lifecycle import superseded_ids
from consumers.records import Delivered, Recalled, Release, iso
from schemas.models import ThreatBulletin

_LOOKUP_CHUNK = 500


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), _LOOKUP_CHUNK):
        yield unique[start : start + _LOOKUP_CHUNK]


def _marks(chunk: Sequence[str]) -> str:
    return ", ".join("?" for _ in chunk)


def held(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, tuple[Release, str]]:
    """Release and origin of each of ``ids`` the store holds."""
    out: dict[str, tuple[Release, str]] = {}
    for chunk in _chunks(ids):
        sql = (
            "SELECT bulletin_id, release, origin FROM bulletins "  # noqa: S608 - only "?" marks
            f"WHERE bulletin_id IN ({_marks(chunk)})"
        )
        out.update((str(r[0]), (Release(r[1]), str(r[2]))) for r in conn.execute(sql, chunk))
    return out


def recorded(conn: sqlite3.Connection, ids: Sequence[str]) -> set[tuple[str, str]]:
    """(bulletin id, signer) of the recalls recorded for any of ``ids``."""
    out: set[tuple[str, str]] = set()
    for chunk in _chunks(ids):
        sql = f"SELECT bulletin_id, origin FROM recalls WHERE bulletin_id IN ({_marks(chunk)})"  # noqa: S608 - only "?" marks
        out.update((str(r[0]), str(r[1])) for r in conn.execute(sql, chunk))
    return out


def origins(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, str]:
    return {i: origin for i, (_, origin) in held(conn, ids).items()}


_INSERT_RECALL = (
    "INSERT OR IGNORE INTO recalls (bulletin_id, origin, recall_id, recalled_at, reason, "
    "key_id, value, signature, source_topic, source_partition, source_offset, received_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def record_recalls(conn: sqlite3.Connection, items: Sequence[Recalled]) -> None:
    conn.executemany(
        _INSERT_RECALL,
        [
            (
                item.bulletin_id,
                item.origin,
                item.recall.recall_id,
                iso(item.recall.recalled_at),
                item.recall.reason,
                item.key_id,
                item.record.value,
                item.signature,
                item.record.topic,
                item.record.partition,
                item.record.offset,
                iso(item.received_at),
            )
            for item in items
        ],
    )


def record_links(conn: sqlite3.Connection, items: Sequence[Delivered]) -> int:
    """Keep the supersede links of newly stored bulletins; how many were new."""
    rows = [
        (old, item.bulletin_id, item.origin)
        for item in items
        for old in superseded_ids(item.references)
    ]
    before = conn.total_changes
    conn.executemany(
        "INSERT OR IGNORE INTO supersedes (old_id, new_id, origin) VALUES (?, ?, ?)", rows
    )
    return conn.total_changes - before


@dataclass(frozen=True)
class Withdrawn:
    """A held bulletin a recall has just withdrawn."""

    bulletin: ThreatBulletin
    release: Release
    recalled_at: datetime


def apply_recalls(
    conn: sqlite3.Connection, ids: Sequence[str], *, now: datetime
) -> list[Withdrawn]:
    """Withdraw every held bulletin among ``ids`` that a recall of its own origin names and
    that is not withdrawn yet (so repeating this changes nothing)."""
    found: list[tuple[str, str, str, str, str, str]] = []
    for chunk in _chunks(ids):
        sql = (
            "SELECT b.bulletin_id, b.body, b.release, r.recall_id, r.recalled_at, r.reason "  # noqa: S608 - only "?" marks
            "FROM bulletins b JOIN recalls r ON r.bulletin_id = b.bulletin_id "
            "AND r.origin = b.origin WHERE b.recall_id IS NULL "
            f"AND b.bulletin_id IN ({_marks(chunk)}) ORDER BY r.received_at, r.recall_id"
        )
        found.extend(tuple(map(str, r)) for r in conn.execute(sql, chunk))  # type: ignore[misc]  # six columns, all text
    done: dict[str, Withdrawn] = {}
    for bulletin_id, body, release, recall_id, recalled_at, reason in found:
        if bulletin_id in done:
            continue
        conn.execute(
            "UPDATE bulletins SET recall_id = ?, recalled_at = ?, recall_reason = ? "
            "WHERE bulletin_id = ?",
            (recall_id, recalled_at, reason, bulletin_id),
        )
        conn.execute(
            "UPDATE recalls SET applied_at = ? WHERE bulletin_id = ? AND recall_id = ?",
            (iso(now), bulletin_id, recall_id),
        )
        done[bulletin_id] = Withdrawn(
            ThreatBulletin.model_validate_json(body),
            Release(release),
            datetime.fromisoformat(recalled_at),
        )
    return list(done.values())


@dataclass(frozen=True)
class Links:
    """A bulletin's supersede links, counting only same-origin ones."""

    superseded_by: tuple[str, ...]
    supersedes: tuple[str, ...]


NO_LINKS = Links((), ())


def links(conn: sqlite3.Connection, bulletin_id: str, origin: str) -> Links:
    by = conn.execute(
        "SELECT new_id FROM supersedes WHERE old_id = ? AND origin = ? ORDER BY new_id",
        (bulletin_id, origin),
    ).fetchall()
    old = conn.execute(
        "SELECT old_id FROM supersedes WHERE new_id = ? ORDER BY old_id", (bulletin_id,)
    ).fetchall()
    return Links(tuple(str(r[0]) for r in by), tuple(str(r[0]) for r in old))


# For the inbox: the status of a row of ``bulletins`` (unaliased), one expression.
STATUS_SQL = (
    "CASE WHEN recall_id IS NOT NULL THEN 'withdrawn' "
    "WHEN EXISTS (SELECT 1 FROM supersedes s WHERE s.old_id = bulletins.bulletin_id "
    "AND s.origin = bulletins.origin) THEN 'superseded' ELSE '' END"
)
