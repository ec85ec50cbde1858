"""The embedded store's SQL schema, as versioned migrations (``PRAGMA user_version``).

Migration N brings a database from version N-1 to N; released migrations are never edited,
only appended. Times are fixed-width UTC ISO 8601 text, so ``ORDER BY``/``>=`` on text is
chronological.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: bulletins (one row per bulletin id), quarantine, feedback sent.
    """
    CREATE TABLE bulletins (
        bulletin_id      TEXT PRIMARY KEY,
        release          TEXT NOT NULL CHECK (release IN ('full', 'tearline')),
        origin           TEXT NOT NULL,
        origin_country   TEXT NOT NULL,
        category         TEXT NOT NULL,
        severity         TEXT NOT NULL,
        classification   TEXT NOT NULL,
        tlp              TEXT NOT NULL,
        caveats          TEXT NOT NULL,          -- JSON array of caveat symbols
        title            TEXT NOT NULL,
        summary          TEXT NOT NULL,
        details          TEXT,
        issued_at        TEXT NOT NULL,
        valid_until      TEXT,
        received_at      TEXT NOT NULL,          -- first receipt of any copy
        upgraded_at      TEXT,                   -- when a full copy replaced the tearline
        body             TEXT NOT NULL,          -- the bulletin as JSON
        key_id           TEXT NOT NULL,
        verified         INTEGER NOT NULL CHECK (verified IN (0, 1)),
        value            BLOB NOT NULL,          -- the signed bytes, for re-verification
        signature        BLOB NOT NULL,
        source_topic     TEXT NOT NULL,
        source_partition INTEGER NOT NULL,
        source_offset    INTEGER NOT NULL,
        receipt_state    TEXT NOT NULL DEFAULT 'pending'
                         CHECK (receipt_state IN ('pending', 'sent')),
        receipt_event_id TEXT,
        receipt_sent_at  TEXT
    ) WITHOUT ROWID;
    CREATE INDEX bulletins_by_received ON bulletins (received_at);
    CREATE INDEX bulletins_by_category ON bulletins (category, received_at);
    CREATE INDEX bulletins_by_origin ON bulletins (origin, received_at);
    CREATE INDEX bulletins_by_issued ON bulletins (issued_at);
    CREATE INDEX bulletins_receipts_pending ON bulletins (received_at)
        WHERE receipt_state = 'pending';

    CREATE TABLE quarantine (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        source_topic     TEXT NOT NULL,
        source_partition INTEGER NOT NULL,
        source_offset    INTEGER NOT NULL,
        reason           TEXT NOT NULL,
        detail           TEXT NOT NULL,
        origin           TEXT,                   -- as claimed by the headers: unverified
        key_id           TEXT,
        bulletin_id      TEXT,
        release          TEXT,
        record_key       BLOB,
        value            BLOB NOT NULL,
        headers          TEXT NOT NULL,          -- JSON [{name, value_b64}]
        quarantined_at   TEXT NOT NULL,
        UNIQUE (source_topic, source_partition, source_offset)
    );
    CREATE INDEX quarantine_by_time ON quarantine (quarantined_at);

    CREATE TABLE feedback (
        event_id     TEXT PRIMARY KEY,
        kind         TEXT NOT NULL,
        bulletin_id  TEXT,
        subject      TEXT NOT NULL,
        note         TEXT,
        sent_at      TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX feedback_by_bulletin ON feedback (bulletin_id);
    """,
    # 2: feed gaps, offsets [from_offset, to_offset) the broker's retention deleted before
    # this partner read them; one row per distinct range, so a gap is reported once.
    """
    CREATE TABLE gaps (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        source_topic     TEXT NOT NULL,
        source_partition INTEGER NOT NULL,
        from_offset      INTEGER NOT NULL CHECK (from_offset >= 0),
        to_offset        INTEGER NOT NULL CHECK (to_offset > from_offset),
        detected_at      TEXT NOT NULL,
        UNIQUE (source_topic, source_partition, from_offset, to_offset)
    );
    CREATE INDEX gaps_by_time ON gaps (detected_at);
    """,
    # 3: the TAXII index (consumers/taxii/index.py): one row per version of a STIX object per
    # collection, in the order it was added (added_us only grows), and each body once. The
    # store fills it from the bulletins it already held right after this migration.
    """
    CREATE TABLE taxii_objects (
        collection   TEXT NOT NULL,
        added_us     INTEGER NOT NULL,           -- date_added, microseconds since the epoch
        object_id    TEXT NOT NULL,
        object_type  TEXT NOT NULL,
        version      TEXT NOT NULL,              -- modified (or created), as the object says
        version_us   INTEGER NOT NULL,
        spec_version TEXT NOT NULL,
        bulletin_id  TEXT NOT NULL,              -- the bulletin that brought it first
        latest       INTEGER NOT NULL CHECK (latest IN (0, 1)),
        first        INTEGER NOT NULL CHECK (first IN (0, 1)),
        UNIQUE (collection, object_id, version_us)
    );
    CREATE UNIQUE INDEX taxii_by_added ON taxii_objects (collection, added_us);
    CREATE INDEX taxii_latest_by_added ON taxii_objects (collection, added_us) WHERE latest = 1;
    CREATE INDEX taxii_by_type ON taxii_objects (collection, object_type, added_us);

    CREATE TABLE stix_bodies (
        object_id  TEXT NOT NULL,
        version_us INTEGER NOT NULL,
        body       TEXT NOT NULL,
        PRIMARY KEY (object_id, version_us)
    ) WITHOUT ROWID;
    """,
    # 4: the bulletin lifecycle (consumers/lifecycle.py). A withdrawn bulletin is kept, with
    # the recall that withdrew it; every verified recall is kept (its bytes and signature, to
    # re-verify), one per bulletin and signer, applied (applied_at) once a bulletin of that
    # origin is held. Supersede links as received (new -> old, with the new one's origin),
    # whichever of the two bulletins arrived first.
    """
    ALTER TABLE bulletins ADD COLUMN recall_id TEXT;
    ALTER TABLE bulletins ADD COLUMN recalled_at TEXT;
    ALTER TABLE bulletins ADD COLUMN recall_reason TEXT;

    CREATE TABLE recalls (
        bulletin_id      TEXT NOT NULL,
        origin           TEXT NOT NULL,          -- the signer (verified)
        recall_id        TEXT NOT NULL,
        recalled_at      TEXT NOT NULL,
        reason           TEXT NOT NULL,
        key_id           TEXT NOT NULL,
        value            BLOB NOT NULL,          -- the signed bytes, for re-verification
        signature        BLOB NOT NULL,
        source_topic     TEXT NOT NULL,
        source_partition INTEGER NOT NULL,
        source_offset    INTEGER NOT NULL,
        received_at      TEXT NOT NULL,
        applied_at       TEXT,                   -- when the held bulletin was withdrawn
        PRIMARY KEY (bulletin_id, origin)
    ) WITHOUT ROWID;

    CREATE TABLE supersedes (
        old_id      TEXT NOT NULL,
        new_id      TEXT NOT NULL,
        origin      TEXT NOT NULL,               -- the new bulletin's origin
        PRIMARY KEY (old_id, new_id)
    ) WITHOUT ROWID;
    CREATE INDEX supersedes_by_new ON supersedes (new_id);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
# The migration after which the store indexes the bulletins it already held for TAXII.
TAXII_INDEX_VERSION = 3
