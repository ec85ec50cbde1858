"""The embedded SQLite store: bulletins keyed by id, quarantine, receipt state, feedback sent,
feed gaps.

Synchronous and single-connection by design: the async sink runs every call on one worker
thread (see :mod:`consumers.sinks.sqlite`), the CLI calls it directly. WAL lets ``enlace
inbox`` read while the consumer writes; ``synchronous=FULL`` because the Kafka offset is
committed right after a write returns, so the write must survive a power cut.

Duplicates are no-ops, so at-least-once delivery becomes exactly-once storage. Upgrade rule:
a FULL copy arriving after a TEARLINE copy of the same bulletin replaces the content (the
first ``received_at`` is kept, ``upgraded_at`` is set); a TEARLINE arriving after a FULL, or
any copy of a kind already held, changes nothing. A bulletin gets one receipt, whichever copy
came first.

Lifecycle (``consumers/lifecycle.py``, SQL in ``consumers/store_lifecycle.py``): a recall is
kept and withdraws the held bulletin of its origin (kept, flagged with the recall's id, time
and reason; its STIX objects get revoked versions in the TAXII index), or waits for it; a
withdrawn bulletin takes no later copy; supersede links are kept as received.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from consumers import store_lifecycle as lc
from consumers.gaps import FeedGap, uncovered
from consumers.lifecycle import plan_poll, revoke_objects
from consumers.records import (
    Delivered,
    Item,
    Quarantined,
    Recalled,
    RecallOutcome,
    Release,
    StoreOutcome,
    iso,
)
from consumers.stix_index import index as taxii_index
from consumers.stix_index.collections import CATALOG, collections_of
from consumers.stix_index.timestamps import to_us
from consumers.stix_mapping import bundle_json
from consumers.store_schema import MIGRATIONS, SCHEMA_VERSION, TAXII_INDEX_VERSION
from enlace.core.errors import SinkError
from schemas.models import ThreatBulletin

BUSY_TIMEOUT_MS = 10_000
_SHARED_BOUND = 100_000
INBOX_COLUMNS = (
    "bulletin_id, release, origin, category, severity, classification, tlp, caveats, title, "
    "issued_at, received_at, upgraded_at, key_id, verified, receipt_state, "
    f"recall_id, recalled_at, recall_reason, {lc.STATUS_SQL}"
)


@dataclass(frozen=True)
class InboxQuery:
    category: str | None = None
    origin: str | None = None
    release: str | None = None
    since: datetime | None = None  # received at or after
    search: str | None = None  # in title, summary and details
    limit: int = 100


@dataclass(frozen=True)
class InboxRow:
    bulletin_id: str
    release: str
    origin: str
    category: str
    severity: str
    classification: str
    tlp: str
    caveats: tuple[str, ...]
    title: str
    issued_at: str
    received_at: str
    upgraded_at: str | None
    key_id: str
    verified: bool
    receipt_state: str
    recall_id: str | None = None
    recalled_at: str | None = None
    recall_reason: str | None = None
    status: str = ""  # "withdrawn", "superseded" (by a bulletin of the same origin) or ""


@dataclass(frozen=True)
class StoredBulletin:
    row: InboxRow
    bulletin: ThreatBulletin
    value: bytes
    signature: bytes
    receipt_event_id: str | None
    receipt_sent_at: str | None
    source: str
    links: lc.Links = lc.NO_LINKS


@dataclass(frozen=True)
class QuarantineRow:
    id: int
    source: str
    reason: str
    detail: str
    origin: str | None
    bulletin_id: str | None
    quarantined_at: str


@dataclass(frozen=True)
class PollOutcomes:
    """What a poll's write did, by item index."""

    stored: dict[int, StoreOutcome]
    recalls: dict[int, RecallOutcome]
    links: int = 0  # supersede links new to the store


@dataclass(frozen=True)
class PendingReceipt:
    bulletin_id: str
    origin: str


SQLITE_IOERR = 10  # the primary result code; extended ones (disk full, short write) share it


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class BulletinStore:
    """One SQLite database file; not thread-safe (one owner thread)."""

    def __init__(
        self, conn: sqlite3.Connection, path: Path, agency_names: Mapping[str, str] | None = None
    ) -> None:
        self._conn = conn
        self.path = path
        # The names the STIX identities carry (the registry's); an agency's id otherwise.
        self._names = dict(agency_names or {})
        self._last_added_us = 0
        # Shared STIX objects already in the index (a few per agency and country): skipped
        # without a statement. Bounded: past it, INSERT OR IGNORE is still right, only slower.
        self._shared_indexed: set[taxii_index.SharedKey] = set()

    @classmethod
    def open(
        cls, path: Path, *, create: bool = True, agency_names: Mapping[str, str] | None = None
    ) -> BulletinStore:
        """Open (creating if allowed) and migrate the store at ``path``."""
        if not create and not path.exists():
            raise SinkError(f"no store at {path}; has this agency's consumer run yet?")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            store = cls(_connect(path), path, agency_names)
            store._migrate()
            store._last_added_us = taxii_index.last_added_us(store._conn, (c.name for c in CATALOG))
        except (sqlite3.Error, OSError) as exc:
            raise SinkError(f"cannot open store {path}: {exc}") from exc
        return store

    def _recover_from(self, exc: sqlite3.Error) -> None:
        """After a failed write: no transaction left open, and after an I/O error (a full
        disk) a fresh connection. One that met SQLITE_IOERR mid-WAL can keep answering
        "disk I/O error" after space returned (seen: a consumer stuck until restarted)."""
        with suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF != SQLITE_IOERR:
            return
        with suppress(sqlite3.Error):
            self._conn.close()
        with suppress(sqlite3.Error, OSError):
            self._conn = _connect(self.path)

    def close(self) -> None:
        self._conn.close()

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.schema_version
        if current > SCHEMA_VERSION:
            raise SinkError(
                f"store {self.path} is at schema version {current}, newer than this "
                f"release ({SCHEMA_VERSION}); upgrade Enlace"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            # One transaction per migration, version bump (and the TAXII backfill) included: a
            # crash leaves either the old or the new schema, never half of one.
            self._conn.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[version - 1]}")
            try:
                if version == TAXII_INDEX_VERSION:
                    self._index_held()
                self._conn.execute(f"PRAGMA user_version = {version}")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _index_held(self) -> None:
        """Index the bulletins a store held before it had a TAXII index, in receipt order
        (an upgraded bulletin holds only its full copy now, so it gets one version)."""
        rows = self._conn.execute(
            "SELECT body, release, received_at FROM bulletins ORDER BY received_at"
        )
        last, shared = 0, set[taxii_index.SharedKey]()
        while chunk := rows.fetchmany(500):
            batch = [
                self._indexed(
                    ThreatBulletin.model_validate_json(body),
                    Release(release),
                    datetime.fromisoformat(received_at),
                    upgrade=False,
                )
                for body, release, received_at in chunk
            ]
            last, added = taxii_index.add(self._conn, batch, last, shared)
            shared |= added

    def _indexed(
        self, bulletin: ThreatBulletin, release: Release, received_at: datetime, *, upgrade: bool
    ) -> taxii_index.IndexedBulletin:
        bundle = bundle_json(bulletin, release, agency_names=self._names)
        return taxii_index.IndexedBulletin(
            bulletin_id=bulletin.bulletin_id,
            collections=collections_of(bulletin.category),
            objects=bundle["objects"],
            received_us=to_us(received_at),
            upgrade=upgrade,
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._recover_from(exc)
            raise SinkError(f"store {self.path}: {exc}") from exc

    # -- writes -------------------------------------------------------------------------

    def store(self, items: Sequence[Delivered]) -> list[StoreOutcome]:
        """Store deliveries in one transaction; one outcome per item, in order."""
        return self.write(items, ())

    def quarantine(self, items: Sequence[Quarantined]) -> int:
        """Keep failed records with their reason; a redelivered record is kept once."""
        with self._transaction() as conn:
            return _quarantine_in(conn, items)

    def write(self, items: Sequence[Delivered], bad: Sequence[Quarantined]) -> list[StoreOutcome]:
        """Deliveries stored (one outcome per item, in order) and failed records
        quarantined, in one transaction (see :meth:`write_poll`)."""
        polled: list[Item] = [*items, *bad]
        stored = self.write_poll(polled).stored
        return [stored[i] for i in range(len(items))]

    def origins_of(self, ids: Sequence[str]) -> dict[str, str]:
        """The origin of each of ``ids`` held (recalls are checked against it)."""
        try:
            return lc.origins(self._conn, ids)
        except sqlite3.Error as exc:
            raise SinkError(f"store {self.path}: {exc}") from exc

    def write_poll(self, polled: Sequence[Item]) -> PollOutcomes:
        """A whole poll in one transaction (one fsync), in order: deliveries stored, recalls
        kept and applied, failed records quarantined. The consumer commits the offsets only
        after this returns, so all or none of the poll is held."""
        items = [i for i in polled if isinstance(i, Delivered)]
        recalls = [i for i in polled if isinstance(i, Recalled)]
        bad = [i for i in polled if isinstance(i, Quarantined)]
        with self._transaction() as conn:
            ids = [i.bulletin_id for i in items] + [r.bulletin_id for r in recalls]
            planned = plan_poll(lc.held(conn, ids), lc.recorded(conn, ids), polled)
            outcomes = [o for i, o in planned.items() if isinstance(polled[i], Delivered)]
            inserts, upgrades, indexed, stored = [], [], [], []
            for item, outcome in zip(items, outcomes, strict=True):
                if outcome is StoreOutcome.DUPLICATE:
                    continue
                stored.append(item)
                if outcome is StoreOutcome.INSERTED:
                    inserts.append(_insert_params(item))
                else:
                    upgrades.append(_upgrade_params(item))
                # In batch order: a tearline then its full copy index as two versions.
                indexed.append(
                    self._indexed(
                        item.bulletin,
                        item.release,
                        item.received_at,
                        upgrade=outcome is StoreOutcome.UPGRADED,
                    )
                )
            # Upgrades after inserts: a tearline and its full copy in one poll insert, then
            # replace, as they would one record at a time.
            conn.executemany(_INSERT, inserts)
            conn.executemany(_UPGRADE, upgrades)
            new_links = lc.record_links(conn, stored)
            kept = [
                r
                for i, r in enumerate(polled)
                if isinstance(r, Recalled) and planned.get(i) in _RECALL_KEPT
            ]
            lc.record_recalls(conn, kept)
            # A recall withdraws a bulletin held before or stored in this poll, in either
            # order; its revoked versions index after the bulletin's own.
            now = max((i.received_at for i in polled), default=None)
            if now is not None and (kept or stored):
                touched = [r.bulletin_id for r in kept] + [i.bulletin_id for i in stored]
                gone = lc.apply_recalls(conn, touched, now=now)
                indexed.extend(self._revoked(g, now) for g in gone)
            last, shared = taxii_index.add(conn, indexed, self._last_added_us, self._shared_indexed)
            if bad:
                _quarantine_in(conn, bad)
        self._last_added_us = last
        if len(self._shared_indexed) < _SHARED_BOUND:
            self._shared_indexed |= shared
        return PollOutcomes(
            stored={i: o for i, o in planned.items() if isinstance(o, StoreOutcome)},
            recalls={i: o for i, o in planned.items() if isinstance(o, RecallOutcome)},
            links=new_links,
        )

    def _revoked(self, gone: lc.Withdrawn, now: datetime) -> taxii_index.IndexedBulletin:
        bundle = bundle_json(gone.bulletin, gone.release, agency_names=self._names)
        return taxii_index.IndexedBulletin(
            bulletin_id=gone.bulletin.bulletin_id,
            collections=collections_of(gone.bulletin.category),
            objects=revoke_objects(bundle["objects"], gone.recalled_at),
            received_us=to_us(now),
            upgrade=True,
        )

    def pending_receipts(self, limit: int = 500) -> list[PendingReceipt]:
        rows = self._read(
            "SELECT bulletin_id, origin FROM bulletins WHERE receipt_state = 'pending' "
            "ORDER BY received_at LIMIT ?",
            (limit,),
        )
        return [PendingReceipt(bulletin_id=r[0], origin=r[1]) for r in rows]

    def mark_receipts_sent(self, sent: Sequence[tuple[str, str, datetime]]) -> None:
        """Record ``(bulletin_id, event_id, sent_at)`` for receipts the broker acknowledged."""
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE bulletins SET receipt_state = 'sent', receipt_event_id = ?, "
                "receipt_sent_at = ? WHERE bulletin_id = ?",
                [(event_id, iso(at), bulletin_id) for bulletin_id, event_id, at in sent],
            )

    def record_feedback(
        self,
        *,
        event_id: str,
        kind: str,
        bulletin_id: str | None,
        subject: str,
        note: str | None,
        sent_at: datetime,
    ) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO feedback (event_id, kind, bulletin_id, subject, note, "
                "sent_at) VALUES (?, ?, ?, ?, ?, ?)",
                (event_id, kind, bulletin_id, subject, note, iso(sent_at)),
            )

    def record_gaps(self, gaps: Sequence[FeedGap]) -> list[FeedGap]:
        """Keep feed gaps; return only what was not known yet (the parts of each gap no
        recorded gap of its partition covers), so a gap seen again after a restart, even
        grown, is reported once and its offsets never count twice."""
        added: list[FeedGap] = []
        with self._transaction() as conn:
            for gap in gaps:
                known = conn.execute(
                    "SELECT from_offset, to_offset FROM gaps "
                    "WHERE source_topic = ? AND source_partition = ? "
                    "AND from_offset < ? AND to_offset > ?",
                    (gap.topic, gap.partition, gap.to_offset, gap.from_offset),
                ).fetchall()
                for piece in uncovered(gap, [(int(r[0]), int(r[1])) for r in known]):
                    conn.execute(
                        "INSERT OR IGNORE INTO gaps (source_topic, source_partition, "
                        "from_offset, to_offset, detected_at) VALUES (?, ?, ?, ?, ?)",
                        (*piece.key, iso(piece.detected_at)),
                    )
                    added.append(piece)
        return added

    # -- reads --------------------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._conn.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise SinkError(f"store {self.path}: {exc}") from exc

    def inbox(self, query: InboxQuery) -> list[InboxRow]:
        """The newest bulletins first, filtered."""
        where: list[str] = []
        params: list[Any] = []
        if query.category:
            where.append("category = ?")
            params.append(query.category)
        if query.origin:
            where.append("origin = ?")
            params.append(query.origin)
        if query.release:
            where.append("release = ?")
            params.append(query.release)
        if query.since is not None:
            where.append("received_at >= ?")
            params.append(iso(query.since))
        if query.search:
            pattern = "%" + _escape_like(query.search) + "%"
            where.append(
                "(title LIKE ? ESCAPE '\\' OR summary LIKE ? ESCAPE '\\' "
                "OR details LIKE ? ESCAPE '\\')"
            )
            params.extend([pattern, pattern, pattern])
        sql = f"SELECT {INBOX_COLUMNS} FROM bulletins"  # noqa: S608 - fixed column list
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY received_at DESC, bulletin_id LIMIT ?"
        params.append(query.limit)
        return [_inbox_row(r) for r in self._read(sql, params)]

    def get(self, bulletin_id: str) -> StoredBulletin | None:
        rows = self._read(
            f"SELECT {INBOX_COLUMNS}, body, value, signature, receipt_event_id, "  # noqa: S608 - fixed columns
            "receipt_sent_at, source_topic, source_partition, source_offset "
            "FROM bulletins WHERE bulletin_id = ?",
            (bulletin_id,),
        )
        if not rows:
            return None
        r = rows[0]
        n = len(InboxRow.__dataclass_fields__)
        return StoredBulletin(
            row=_inbox_row(r[:n]),
            bulletin=ThreatBulletin.model_validate_json(r[n]),
            value=bytes(r[n + 1]),
            signature=bytes(r[n + 2]),
            receipt_event_id=r[n + 3],
            receipt_sent_at=r[n + 4],
            source=f"{r[n + 5]}[{r[n + 6]}]@{r[n + 7]}",
            links=self._links(bulletin_id, str(r[2])),
        )

    def _links(self, bulletin_id: str, origin: str) -> lc.Links:
        try:
            return lc.links(self._conn, bulletin_id, origin)
        except sqlite3.Error as exc:
            raise SinkError(f"store {self.path}: {exc}") from exc

    def recall_count(self) -> tuple[int, int]:
        """(recalls recorded, of which still pending: their bulletin not held)."""
        total, pending = self._read("SELECT count(*), count(*) - count(applied_at) FROM recalls")[0]
        return int(total), int(pending)

    def origin_of(self, bulletin_id: str) -> str | None:
        rows = self._read("SELECT origin FROM bulletins WHERE bulletin_id = ?", (bulletin_id,))
        return str(rows[0][0]) if rows else None

    def ids(self) -> list[str]:
        return [str(r[0]) for r in self._read("SELECT bulletin_id FROM bulletins")]

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM bulletins")[0][0])

    def quarantine_rows(self, limit: int = 100) -> list[QuarantineRow]:
        rows = self._read(
            "SELECT id, source_topic, source_partition, source_offset, reason, detail, origin, "
            "bulletin_id, quarantined_at FROM quarantine ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            QuarantineRow(
                id=r[0],
                source=f"{r[1]}[{r[2]}]@{r[3]}",
                reason=r[4],
                detail=r[5],
                origin=r[6],
                bulletin_id=r[7],
                quarantined_at=r[8],
            )
            for r in rows
        ]

    def gap_rows(self, limit: int = 100) -> list[FeedGap]:
        """Recorded feed gaps, the most recently detected first."""
        rows = self._read(
            "SELECT source_topic, source_partition, from_offset, to_offset, detected_at "
            "FROM gaps ORDER BY detected_at DESC, id DESC LIMIT ?",
            (limit,),
        )
        return [
            FeedGap(r[0], int(r[1]), int(r[2]), int(r[3]), datetime.fromisoformat(r[4]))
            for r in rows
        ]

    def gap_totals(self) -> tuple[int, int]:
        """(gaps, offsets missed) over every recorded gap."""
        count, missed = self._read(
            "SELECT count(*), coalesce(sum(to_offset - from_offset), 0) FROM gaps"
        )[0]
        return int(count), int(missed)


def plan_batch(
    held: Mapping[str, Release], items: Sequence[tuple[str, Release]]
) -> list[StoreOutcome]:
    """What storing ``items`` (bulletin id, release) in order does, given the releases held
    (pure). Upgrade rule: a FULL copy replaces a held TEARLINE; anything else already held
    is a duplicate. An id seen earlier in the batch counts as held from then on."""
    now_held = dict(held)
    outcomes: list[StoreOutcome] = []
    for bulletin_id, release in items:
        before = now_held.get(bulletin_id)
        if before is None:
            outcomes.append(StoreOutcome.INSERTED)
        elif before is Release.TEARLINE and release is Release.FULL:
            outcomes.append(StoreOutcome.UPGRADED)
        else:
            outcomes.append(StoreOutcome.DUPLICATE)
            continue
        now_held[bulletin_id] = release
    return outcomes


_RECALL_KEPT = (RecallOutcome.APPLIED, RecallOutcome.PENDING)


def _quarantine_in(conn: sqlite3.Connection, items: Sequence[Quarantined]) -> int:
    added = 0
    for item in items:
        record = item.record
        cursor = conn.execute(
            "INSERT OR IGNORE INTO quarantine (source_topic, source_partition, "
            "source_offset, reason, detail, origin, key_id, bulletin_id, release, "
            "record_key, value, headers, quarantined_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.topic,
                record.partition,
                record.offset,
                item.reason,
                item.detail,
                item.origin,
                item.key_id,
                item.bulletin_id,
                item.release,
                record.key,
                record.value,
                json.dumps(record.headers_json()),
                iso(item.received_at),
            ),
        )
        added += cursor.rowcount
    return added


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _inbox_row(r: Sequence[Any]) -> InboxRow:
    return InboxRow(
        bulletin_id=r[0],
        release=r[1],
        origin=r[2],
        category=r[3],
        severity=r[4],
        classification=r[5],
        tlp=r[6],
        caveats=tuple(json.loads(r[7])),
        title=r[8],
        issued_at=r[9],
        received_at=r[10],
        upgraded_at=r[11],
        key_id=r[12],
        verified=bool(r[13]),
        receipt_state=r[14],
        recall_id=r[15],
        recalled_at=r[16],
        recall_reason=r[17],
        status=r[18],
    )


_CONTENT_COLUMNS = (
    "release",
    "origin",
    "origin_country",
    "category",
    "severity",
    "classification",
    "tlp",
    "caveats",
    "title",
    "summary",
    "details",
    "issued_at",
    "valid_until",
    "body",
    "key_id",
    "verified",
    "value",
    "signature",
    "source_topic",
    "source_partition",
    "source_offset",
)
# Column names are the fixed tuple above, never input: values always go through "?".
_COLUMNS = ", ".join(_CONTENT_COLUMNS)
_MARKS = ", ".join("?" for _ in _CONTENT_COLUMNS)
_SETS = ", ".join(f"{c} = ?" for c in _CONTENT_COLUMNS)
_INSERT = f"INSERT INTO bulletins (bulletin_id, received_at, {_COLUMNS}) VALUES (?, ?, {_MARKS})"  # noqa: S608 - fixed columns
_UPGRADE = f"UPDATE bulletins SET upgraded_at = ?, {_SETS} WHERE bulletin_id = ?"  # noqa: S608 - fixed columns


def _content_params(item: Delivered) -> tuple[Any, ...]:
    b = item.bulletin
    return (
        item.release.value,
        b.origin,
        b.origin_country,
        b.category.value,
        b.severity.value,
        b.classification.value,
        b.tlp.value,
        json.dumps([c.value for c in b.caveats]),
        b.title,
        b.summary,
        b.details,
        iso(b.issued_at),
        iso(b.valid_until) if b.valid_until else None,
        b.model_dump_json(),
        item.key_id,
        1,
        item.signed_value,
        item.signature,
        item.record.topic,
        item.record.partition,
        item.record.offset,
    )


def _insert_params(item: Delivered) -> tuple[Any, ...]:
    return (item.bulletin_id, iso(item.received_at), *_content_params(item))


def _upgrade_params(item: Delivered) -> tuple[Any, ...]:
    return (iso(item.received_at), *_content_params(item), item.bulletin_id)
