"""The STIX objects of a partner's stored bulletins, indexed for TAXII (SQL, no HTTP).

Written by the store in the transaction that stores the bulletins (``add``), so the index
holds exactly what the store holds; read by the TAXII server (``objects_page`` and friends)
over its own connection.

Every row is one version of one object in one collection, with its ``date_added`` as integer
microseconds. Within the store ``date_added`` only grows: each row takes the later of its
bulletin's receipt time and one microsecond after the last row, under SQLite's write lock, so
commit order is ``date_added`` order. A poller that resumes from the last ``date_added`` it saw
(OpenCTI reads ``X-TAXII-Date-Added-Last``) therefore never skips a row, even when the wall
clock steps back or many rows arrive in one microsecond.

Pages are keyset reads on ``(collection, added_us)``; the default (latest versions only) has
its own partial index, so a page costs the same at a hundred rows or a million. Versions: a
full copy that upgrades a tearline adds new versions of the bulletin's own objects (same ids,
later ``modified``) and marks the older ones not latest. Shared objects (markings,
identities, country locations) have one fixed content, so they are added once per
collection. Bodies are kept once per (id, version) and returned as stored, never re-encoded.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consumers.stix_index.timestamps import to_us

_LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class IndexedBulletin:
    """One stored bulletin's objects, for the collections it belongs to."""

    bulletin_id: str
    collections: tuple[str, ...]
    objects: Sequence[Mapping[str, Any]]
    received_us: int
    upgrade: bool  # a full copy replacing a tearline: own objects get new versions


@dataclass(frozen=True)
class VersionMatch:
    """``match[version]``: any of latest, first, every version, or exact versions."""

    latest: bool = True
    first: bool = False
    every: bool = False
    exact_us: tuple[int, ...] = ()


@dataclass(frozen=True)
class ObjectFilter:
    added_after_us: int | None = None
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: VersionMatch = field(default_factory=VersionMatch)
    spec_versions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    added_us: int
    object_id: str
    version: str
    body: str  # the object's JSON, as stored; empty for manifest and version reads


@dataclass(frozen=True)
class Page:
    rows: tuple[Row, ...]
    more: bool


def last_added_us(conn: sqlite3.Connection, collections: Iterable[str]) -> int:
    """The latest ``date_added`` of any row (one index probe per collection)."""
    last = 0
    for collection in collections:
        row = conn.execute(
            "SELECT MAX(added_us) FROM taxii_objects WHERE collection = ?", (collection,)
        ).fetchone()
        if row and row[0] is not None:
            last = max(last, int(row[0]))
    return last


def _version_of(obj: Mapping[str, Any]) -> str:
    """``modified``, else ``created`` (marking definitions have no ``modified``): TAXII 2.1
    3.4's rule for an object's version."""
    return str(obj.get("modified") or obj["created"])


def _held(conn: sqlite3.Connection, object_ids: Sequence[str]) -> set[str]:
    """Which of ``object_ids`` are indexed already (before an upgrade adds versions)."""
    held: set[str] = set()
    unique = list(dict.fromkeys(object_ids))
    for start in range(0, len(unique), _LOOKUP_CHUNK):
        chunk = unique[start : start + _LOOKUP_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        sql = (
            "SELECT DISTINCT object_id FROM taxii_objects "  # noqa: S608 - only "?" marks
            f"WHERE collection = 'all' AND object_id IN ({marks})"
        )
        held.update(str(r[0]) for r in conn.execute(sql, chunk))
    return held


def _fast_us(version: str) -> int:
    """A version our own mapping wrote (``...T12:00:00.123Z``): the C parser, not the
    strict one clients' parameters go through."""
    return to_us(datetime.fromisoformat(version))


_INSERT_ROW = (
    "INSERT OR IGNORE INTO taxii_objects (collection, added_us, object_id, object_type, "
    "version, version_us, spec_version, bulletin_id, latest, first) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)"
)
_INSERT_BODY = "INSERT OR IGNORE INTO stix_bodies (object_id, version_us, body) VALUES (?, ?, ?)"
_SUPERSEDE = (
    "UPDATE taxii_objects SET latest = 0 "
    "WHERE collection = ? AND object_id = ? AND version_us < ? AND latest = 1"
)
SharedKey = tuple[str, str, int]  # collection, object id, version


def add(
    conn: sqlite3.Connection,
    bulletins: Iterable[IndexedBulletin],
    last_us: int,
    shared_known: AbstractSet[SharedKey] = frozenset(),
) -> tuple[int, set[SharedKey]]:
    """Index ``bulletins`` (inside the caller's transaction). Returns the new last
    ``date_added`` and the shared objects this call indexed.

    Objects already indexed in a collection at the same version are kept as they were
    (first ``date_added`` wins). Shared objects (no ``created_by_ref``: markings, identities,
    country locations, one fixed content each) named in ``shared_known`` are skipped without
    a statement: the caller adds what this returns to that set once its transaction has
    committed, so a rolled-back batch never leaves the set claiming a row it lacks.
    """
    batch = list(bulletins)
    upgrades = [str(o["id"]) for b in batch if b.upgrade for o in b.objects]
    had_before = _held(conn, upgrades) if upgrades else set()
    rows: list[tuple[Any, ...]] = []
    bodies: list[tuple[Any, ...]] = []
    supersede: list[tuple[Any, ...]] = []
    shared_new: set[SharedKey] = set()
    for bulletin in batch:
        for obj in bulletin.objects:
            object_id = str(obj["id"])
            version = _version_of(obj)
            version_us = _fast_us(version)
            shared = "created_by_ref" not in obj
            # A tearline and its full copy may share a batch: the copy earlier in the batch
            # counts as held.
            renewed = bulletin.upgrade and object_id in had_before
            had_before.add(object_id)
            body: str | None = None
            for collection in bulletin.collections:
                if shared:
                    key = (collection, object_id, version_us)
                    if key in shared_known or key in shared_new:
                        continue
                    shared_new.add(key)
                if body is None:
                    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
                    bodies.append((object_id, version_us, body))
                last_us = max(bulletin.received_us, last_us + 1)
                rows.append(
                    (
                        collection,
                        last_us,
                        object_id,
                        obj["type"],
                        version,
                        version_us,
                        obj.get("spec_version", "2.1"),
                        bulletin.bulletin_id,
                        0 if renewed else 1,
                    )
                )
                if renewed:
                    supersede.append((collection, object_id, version_us))
    conn.executemany(_INSERT_BODY, bodies)
    conn.executemany(_INSERT_ROW, rows)
    conn.executemany(_SUPERSEDE, supersede)
    return last_us, shared_new


# -- reads --------------------------------------------------------------------------------

_SELECT_OBJECTS = (
    "SELECT t.added_us, t.object_id, t.version, b.body FROM taxii_objects t "
    "JOIN stix_bodies b ON b.object_id = t.object_id AND b.version_us = t.version_us"
)
_SELECT_MANIFEST = "SELECT t.added_us, t.object_id, t.version, '' FROM taxii_objects t"


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def _where(collection: str, flt: ObjectFilter, after_us: int | None) -> tuple[list[str], list[Any]]:
    terms = ["t.collection = ?"]
    params: list[Any] = [collection]
    floor = max(x for x in (flt.added_after_us, after_us, -1) if x is not None)
    if floor >= 0:
        terms.append("t.added_us > ?")
        params.append(floor)
    if flt.ids:
        terms.append(f"t.object_id IN ({_marks(flt.ids)})")
        params.extend(flt.ids)
    if flt.types:
        terms.append(f"t.object_type IN ({_marks(flt.types)})")
        params.extend(flt.types)
    if flt.spec_versions:
        terms.append(f"t.spec_version IN ({_marks(flt.spec_versions)})")
        params.extend(flt.spec_versions)
    match = flt.versions
    if not match.every:
        # The plain default stays a bare "latest = 1" term, so SQLite picks the partial index.
        either = []
        if match.latest:
            either.append("t.latest = 1")
        if match.first:
            either.append("t.first = 1")
        if match.exact_us:
            either.append(f"t.version_us IN ({_marks(match.exact_us)})")
            params.extend(match.exact_us)
        terms.append(either[0] if len(either) == 1 else f"({' OR '.join(either)})")
    return terms, params


def _page(
    conn: sqlite3.Connection,
    select: str,
    collection: str,
    *,
    flt: ObjectFilter,
    after_us: int | None,
    limit: int,
) -> Page:
    terms, params = _where(collection, flt, after_us)
    sql = f"{select} WHERE {' AND '.join(terms)} ORDER BY t.added_us LIMIT ?"
    found = conn.execute(sql, [*params, limit + 1]).fetchall()
    rows = tuple(Row(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in found[:limit])
    return Page(rows, more=len(found) > limit)


def objects_page(
    conn: sqlite3.Connection,
    collection: str,
    flt: ObjectFilter,
    *,
    after_us: int | None,
    limit: int,
) -> Page:
    """Up to ``limit`` objects of ``collection`` matching ``flt``, added after the page
    cursor ``after_us``, oldest first; ``more`` if any is left."""
    return _page(conn, _SELECT_OBJECTS, collection, flt=flt, after_us=after_us, limit=limit)


def manifest_page(
    conn: sqlite3.Connection,
    collection: str,
    flt: ObjectFilter,
    *,
    after_us: int | None,
    limit: int,
) -> Page:
    """As :func:`objects_page`, without the bodies."""
    return _page(conn, _SELECT_MANIFEST, collection, flt=flt, after_us=after_us, limit=limit)


def object_known(conn: sqlite3.Connection, collection: str, object_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM taxii_objects WHERE collection = ? AND object_id = ? LIMIT 1",
        (collection, object_id),
    ).fetchone()
    return row is not None
