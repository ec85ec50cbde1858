"""The drop folder's file handling: which files are ready, claiming, finishing (sync file I/O).

Layout under the watched directory ``DIR``::

    DIR/*.json, DIR/*.jsonl      dropped by the agency's systems
    DIR/processing/NAME          claimed: being published (or waiting to be re-sent)
    DIR/processing/NAME.claim    when it was claimed (JSON), the default issued_at
    DIR/done/NAME                every bulletin in it was acknowledged by the broker
    DIR/failed/NAME, NAME.error  refused; the .error file names each problem

Partially written files: a file is picked up only once its size and mtime were the same in
two consecutive scans, and names starting with ``.`` or ending in ``.tmp``/``.part`` are
never picked up. Writers should write under such a name and rename into place (atomic on one
file system); the stability check is the safety net for writers that cannot.

Crash safety: a claimed file stays in ``processing/`` until the broker acknowledged every
bulletin in it; after a restart it is re-sent with the same bulletin ids (derived from the
file's content) and the same default ``issued_at`` (recorded in the claim, not the file's
mtime: mtime moves when a writer touches the file, and an old mtime would fall outside the
router's clock-skew window), so the router's replay protection drops what had already landed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from enlace.core.errors import ConfigError

SUFFIXES = (".json", ".jsonl", ".ndjson")
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".swp")
CLAIM_SUFFIX = ".claim"
ERROR_SUFFIX = ".error"

Stat = tuple[int, int]  # (size, mtime_ns)


def is_candidate(name: str) -> bool:
    lowered = name.lower()
    return (
        not name.startswith(".")
        and lowered.endswith(SUFFIXES)
        and not lowered.endswith(IGNORED_SUFFIXES)
    )


def stable(previous: Mapping[str, Stat], current: Mapping[str, Stat]) -> list[str]:
    """Names whose size and mtime did not change between two scans, in name order."""
    return sorted(name for name, stat in current.items() if previous.get(name) == stat)


@dataclass(frozen=True)
class Claim:
    path: Path  # the file in processing/
    claimed_at: datetime


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _free_name(directory: Path, name: str) -> Path:
    """``directory/name``, or ``stem-2.ext``… if taken: a finished file never overwrites."""
    target = directory / name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    counter = 2
    while any(
        target.with_name(target.name + extra).exists() for extra in ("", CLAIM_SUFFIX, ERROR_SUFFIX)
    ):
        target = directory / (f"{stem}-{counter}.{suffix}" if dot else f"{name}-{counter}")
        counter += 1
    return target


class DropFolder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.processing = root / "processing"
        self.done = root / "done"
        self.failed = root / "failed"

    def ensure(self) -> None:
        try:
            for directory in (self.root, self.processing, self.done, self.failed):
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot prepare drop folder {self.root}: {exc}") from exc

    def snapshot(self) -> dict[str, Stat]:
        """Candidate files directly in the folder with their (size, mtime_ns)."""
        found: dict[str, Stat] = {}
        with os.scandir(self.root) as entries:
            for entry in entries:
                if not is_candidate(entry.name):
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # renamed away between listing and stat
                found[entry.name] = (info.st_size, info.st_mtime_ns)
        return found

    def claim(self, name: str, now: datetime) -> Claim | None:
        """Move ``name`` into processing/ and record when; None if it vanished meanwhile."""
        target = _free_name(self.processing, name)
        try:
            (self.root / name).rename(target)
        except FileNotFoundError:
            return None
        self._record(target, now)
        return Claim(target, now)

    def _record(self, path: Path, claimed_at: datetime) -> None:
        body = json.dumps({"claimed_at": claimed_at.isoformat(), "name": path.name})
        _write_atomic(path.with_name(path.name + CLAIM_SUFFIX), body + "\n")
        _fsync_dir(path.parent)

    def pending(self, now: datetime) -> list[Claim]:
        """Claimed files left by an earlier run (their claim time kept); orphans cleaned."""
        claims: list[Claim] = []
        for path in sorted(self.processing.iterdir()):
            name = path.name
            if name.startswith("."):
                continue
            if name.endswith(CLAIM_SUFFIX):
                if not path.with_name(name.removesuffix(CLAIM_SUFFIX)).exists():
                    path.unlink()  # the file was finished; only its claim was left behind
                continue
            claimed_at = self._claimed_at(path)
            if claimed_at is None:
                # Crashed between the rename and the claim record: nothing was sent yet.
                self._record(path, now)
                claimed_at = now
            claims.append(Claim(path, claimed_at))
        return claims

    @staticmethod
    def _claimed_at(path: Path) -> datetime | None:
        claim = path.with_name(path.name + CLAIM_SUFFIX)
        try:
            raw = json.loads(claim.read_text(encoding="utf-8"))
            return datetime.fromisoformat(raw["claimed_at"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def finish_done(self, claim: Claim) -> Path:
        return self._finish(claim, self.done, _free_name(self.done, claim.path.name))

    def finish_failed(self, claim: Claim, problems: Iterable[str]) -> Path:
        target = _free_name(self.failed, claim.path.name)
        lines = list(problems)
        header = (
            f"# {target.name}: {len(lines)} problem(s); nothing from this file was published.\n"
            "# Fix the lines below and drop the file again.\n"
        )
        # The .error goes first: a crash in between leaves the file in processing/, not a
        # failed file without its reasons.
        error = target.with_name(target.name + ERROR_SUFFIX)
        _write_atomic(error, header + "\n".join(lines) + "\n")
        return self._finish(claim, self.failed, target)

    def _finish(self, claim: Claim, directory: Path, target: Path) -> Path:
        claim.path.rename(target)
        _fsync_dir(directory)
        claim.path.with_name(claim.path.name + CLAIM_SUFFIX).unlink(missing_ok=True)
        return target
