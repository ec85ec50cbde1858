"""``misp:DIR`` — a MISP feed directory: ``DIR/<event-uuid>.json``, ``manifest.json``,
``hashes.csv``.

MISP cannot consume Kafka or pull TAXII; it pulls *feeds* (Sync Actions > Feeds, format
"MISP Feed"): a directory or URL with ``manifest.json`` (event uuid -> info, Orgc, Tag, date,
analysis, threat_level_id, timestamp: what MISP reads to decide which events to fetch), one
``{"Event": ...}`` file per event, and ``hashes.csv`` (``md5(attribute value),event uuid`` per
line, MISP's feed-correlation cache). The formats are pymisp's ``MISPEvent.to_feed`` /
``manifest`` and ``pymisp.tools.feed.feed_meta_generator``; the event is
``consumers.misp_mapping.event_json``.

Writes are atomic (temporary file, fsync, rename, directory fsync): MISP never reads half an
event. A batch writes its events first (fsynced concurrently from a few threads, as the STIX
sink does), then ``manifest.json`` and ``hashes.csv`` once, each atomically: the manifest
never lists an event whose file is not on disk. Manifest and hashes live in memory, loaded at
``start`` (events on disk that the manifest misses, after a crash between the two steps, are
read back once then), so a batch never rescans the directory.

Upgrade rule, as in the store: a full copy replaces a tearline event (same uuid, a newer
timestamp so MISP takes the update); a tearline copy never replaces a full one, and a repeat
of the same copy changes nothing (redelivery is idempotent: the same bytes). Which copy an
event is comes from its ``enlace:release`` tag, kept in the manifest.

Recalls: the event is rewritten withdrawn (``consumers.lifecycle.withdrawn_event``): tagged
``enlace:withdrawn="true"``, every attribute ``to_ids: false``, the event's and every
attribute's timestamp one second newer, and its manifest entry updated. MISP has no
revocation for events: on its next pull it sees the newer timestamp, updates the event and
its attributes (tag added, IDS flags cleared, so the values drop out of its IDS exports and
``to_ids`` searches) and keeps it; an analyst can filter on the tag. A recall is kept in
``DIR/recalls/`` (not to be served either) so that an event arriving after its recall is
written withdrawn, and a later copy of a withdrawn bulletin is not written. A recall whose
signer is not the event's ``Orgc`` changes no event.

Quarantined records land in ``DIR/quarantine/<topic>-<partition>-<offset>.json`` (plain JSON
with the record bytes, not MISP): a server publishing DIR to MISP should not serve that
subdirectory.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from consumers.lifecycle import is_withdrawn_event, withdrawn_event
from consumers.misp_mapping import attribute_values, event_json, manifest_entry
from consumers.records import Delivered, Item, Recalled, Release
from consumers.sinks import files as durable
from consumers.sinks.base import Sink, WriteResult
from consumers.sinks.recall_marks import RecallMarks
from enlace.core.errors import SinkError
from schemas import misp_vocab as mv

MANIFEST = "manifest.json"
HASHES = "hashes.csv"
_FULL_TAG = mv.enlace_tag(mv.RELEASE, Release.FULL.value)


def _dumps(obj: Any) -> bytes:
    # Compact: json's C encoder runs only without ``indent``.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _is_full(entry: Mapping[str, Any]) -> bool:
    return any(tag.get("name") == _FULL_TAG for tag in entry.get("Tag", ()))


def _md5s(event: Mapping[str, Any]) -> list[str]:
    return [hashlib.md5(v.encode("utf-8")).hexdigest() for v in attribute_values(event)]  # noqa: S324 - MISP's feed hash format, not security


class MispFeedSink(Sink):
    kind = "misp"

    def __init__(self, target: str, *, agency_names: Mapping[str, str] | None = None) -> None:
        super().__init__(target)
        self.directory = Path(target)
        self.quarantine_dir = self.directory / "quarantine"
        self.marks = RecallMarks(self.directory)
        self._names = dict(agency_names or {})
        self._pool: ThreadPoolExecutor | None = None
        self._manifest: dict[str, dict[str, Any]] = {}
        self._hashes: dict[str, list[str]] = {}  # event uuid -> md5 of each attribute value

    def event_path(self, event_uuid: str) -> Path:
        return self.directory / f"{event_uuid}.json"

    @property
    def manifest(self) -> Mapping[str, Mapping[str, Any]]:
        return self._manifest

    # -- start: load what the directory holds -------------------------------------------

    def _load(self) -> None:
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        self.marks.directory.mkdir(parents=True, exist_ok=True)
        manifest_path = self.directory / MANIFEST
        if manifest_path.exists():
            self._manifest = json.loads(manifest_path.read_bytes())
        hashes_path = self.directory / HASHES
        if hashes_path.exists():
            with hashes_path.open(newline="", encoding="utf-8") as handle:
                for row in csv.reader(handle):
                    if len(row) == 2:
                        self._hashes.setdefault(row[1], []).append(row[0])
        # Events written by a batch that crashed before its manifest: read them back once.
        for path in self.directory.glob("*.json"):
            uuid = path.stem
            if path.name != MANIFEST and uuid not in self._manifest:
                event = json.loads(path.read_bytes())
                self._manifest[uuid] = manifest_entry(event)
                self._hashes[uuid] = _md5s(event)

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._load)
        except (OSError, ValueError, KeyError) as exc:
            raise SinkError(f"sink {self.name}: {exc}") from exc
        self._pool = ThreadPoolExecutor(durable.SYNC_THREADS, thread_name_prefix="enlace-misp")

    async def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- a batch -------------------------------------------------------------------------

    def _plan(
        self, items: Sequence[Item]
    ) -> tuple[dict[Path, bytes], dict[str, dict[str, Any]], dict[str, list[str]]]:
        """Files the batch writes, and the manifest entries and hashes it changes (pure but
        for the in-memory state). Upgrade rule as in the module docstring."""
        files: dict[Path, bytes] = {}
        entries: dict[str, dict[str, Any]] = {}
        hashes: dict[str, list[str]] = {}
        for item in items:
            if isinstance(item, Recalled):
                event = self._withdraw(item, files)
                if event is not None:
                    uuid = event["Event"]["uuid"]
                    files[self.event_path(uuid)] = _dumps(event)
                    entries[uuid] = manifest_entry(event)
                    hashes[uuid] = _md5s(event)
                continue
            if isinstance(item, Delivered):
                uuid = mv.event_uuid(item.bulletin_id)
                held = entries.get(uuid) or self._manifest.get(uuid)
                withdrawn = self.marks.recalled_at(item.bulletin_id, item.origin, files)
                if held is not None and (
                    withdrawn is not None or _is_full(held) or item.release is Release.TEARLINE
                ):
                    continue  # we hold this copy already, or a better one, or it is withdrawn
                event = event_json(item.bulletin, item.release, agency_names=self._names)
                if withdrawn is not None:
                    event = withdrawn_event(event, withdrawn)
                files[self.event_path(uuid)] = _dumps(event)
                entries[uuid] = manifest_entry(event)
                hashes[uuid] = _md5s(event)
            else:
                rec = item.record
                path = self.quarantine_dir / f"{rec.topic}-{rec.partition}-{rec.offset}.json"
                text = json.dumps(item.summary_json(), indent=2, ensure_ascii=False)
                files[path] = text.encode("utf-8")
        return files, entries, hashes

    def _withdraw(self, item: Recalled, files: dict[Path, bytes]) -> dict[str, Any] | None:
        """The withdrawn event of a recall's bulletin, or None (not held, withdrawn already,
        or not the signer's event)."""
        mark, data = self.marks.mark(item)
        if mark not in files and not mark.exists():
            files[mark] = data
        path = self.event_path(mv.event_uuid(item.bulletin_id))
        held = files.get(path)
        if held is None:
            if not path.exists():
                return None  # not held (yet): the mark withdraws it on arrival
            held = path.read_bytes()
        event = json.loads(held)
        if is_withdrawn_event(event) or event["Event"]["Orgc"]["uuid"] != mv.org_uuid(item.origin):
            return None
        return withdrawn_event(event, item.recall.recalled_at)

    def _hashes_csv(self, hashes: Mapping[str, list[str]]) -> bytes:
        out = io.StringIO()
        for uuid, md5s in hashes.items():
            out.writelines(f"{md5},{uuid}\n" for md5 in md5s)
        return out.getvalue().encode("ascii")

    def _write_sync(self, items: Sequence[Item]) -> None:
        if self._pool is None:
            raise SinkError(f"sink {self.name} is not started")
        files, entries, hashes = self._plan(items)
        durable.atomic_writes(files, self._pool)
        if entries:
            manifest = {**self._manifest, **entries}
            all_hashes = {**self._hashes, **hashes}
            durable.atomic_writes(
                {
                    self.directory / MANIFEST: _dumps(manifest),
                    self.directory / HASHES: self._hashes_csv(all_hashes),
                },
                self._pool,
            )
        for directory in {path.parent for path in files} | ({self.directory} if entries else set()):
            durable.fsync_dir(directory)
        if entries:  # held on disk: now ours
            self._manifest, self._hashes = manifest, all_hashes

    async def write(self, items: Sequence[Item]) -> WriteResult:
        try:
            await asyncio.to_thread(self._write_sync, items)
        except OSError as exc:
            raise SinkError(f"sink {self.name}: {exc}") from exc
        return WriteResult()
