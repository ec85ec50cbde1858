"""Atomic, durable file writes for the file sinks (``stix:``, ``misp:``).

A file is written to a temporary name, fsynced, then renamed into place, so an importer
watching the directory never reads half a file, and a rename never exposes bytes that are not
on disk. One fsync at a time costs ~5 ms on ext4 (a journal commit each); a batch's files are
fsynced concurrently from a few threads, which share commits (~0.8 ms a file).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SYNC_THREADS = 8


def _tmp_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _write_synced(path: Path, data: bytes) -> None:
    with _tmp_of(path).open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_writes(files: Mapping[Path, bytes], pool: ThreadPoolExecutor) -> None:
    """Each file to a temporary name and fsynced (concurrently), then renamed into place:
    a rename never exposes a file whose bytes are not on disk."""
    for done in [pool.submit(_write_synced, path, data) for path, data in files.items()]:
        done.result()  # the first failure (disk full...) is raised; a retry rewrites them all
    for path in files:
        _tmp_of(path).replace(path)


def fsync_dir(path: Path) -> None:
    """Make the renames in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
