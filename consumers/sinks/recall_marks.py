"""Recalls a file sink has seen (``DIR/recalls/<bulletin_id>-<origin>.json``), so that a
bulletin arriving after its recall is written withdrawn at once, and a later copy of a
withdrawn bulletin is never written live. Beside ``quarantine/``: an importer watching
``DIR/*.json`` never reads them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from consumers.records import Recalled


class RecallMarks:
    def __init__(self, directory: Path) -> None:
        self.directory = directory / "recalls"

    def path(self, bulletin_id: str, origin: str) -> Path:
        return self.directory / f"{bulletin_id}-{origin}.json"

    def mark(self, item: Recalled) -> tuple[Path, bytes]:
        text = json.dumps(item.summary_json(), indent=2, ensure_ascii=False)
        return self.path(item.bulletin_id, item.origin), text.encode("utf-8")

    def recalled_at(
        self, bulletin_id: str, origin: str, batch: Mapping[Path, bytes]
    ) -> datetime | None:
        """When ``origin`` recalled ``bulletin_id``, if this sink saw it (in this batch or
        before); None otherwise."""
        path = self.path(bulletin_id, origin)
        data = batch.get(path)
        if data is None:
            if not path.exists():
                return None
            data = path.read_bytes()
        return datetime.fromisoformat(json.loads(data)["recalled_at"])
