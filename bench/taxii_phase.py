"""The TAXII server at real history sizes, measured the way partners' tools use it.

A store is filled with received bulletins (the real store and its STIX index, timed), then
``enlace taxii serve`` runs over it as its own process and the OASIS ``taxii2-client`` (the
client OpenCTI-style tools build on) pulls the whole feed collection page by page, and polls
with ``added_after`` the way OpenCTI does. The same first-page reads run against a store of
``SMALL_OBJECTS`` too: a keyset page should cost the same at any depth and size.

For scale, the OASIS reference server medallion 3.0.0 (memory backend) measured on this
machine pulls 5,000 objects at 50 objects/s and answers an ``added_after`` poll at 14/s
(issue 16).

Run alone: ``python -m bench.taxii_phase --objects 100000`` (no Kafka needed).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taxii2client.v21 import Collection, Server, as_pages

from bench.report import Row, rows_table
from bench.stats import summarize_seconds
from consumers.records import Release
from consumers.stix_index.collections import ALL
from consumers.stix_index.timestamps import format_us
from consumers.store import BulletinStore
from tests.taxii_support import bulletins, deliver

USER, PASSWORD = "bench", "bench-password"
SMALL_OBJECTS = 1_000
PAGE = 1_000
POLLS = 30
BEHIND = 200  # objects a polling client has not seen yet
BATCH = 200  # bulletins per store write, the consumer's default poll size
START_TIMEOUT_S = 60.0


@dataclass
class TaxiiResult:
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM taxii_objects WHERE collection = ? AND latest = 1", (ALL,)
            ).fetchone()[0]
        )
    finally:
        conn.close()


def _rows_in(path: Path) -> tuple[int, list[int]]:
    """Objects (latest versions) of the whole-feed collection, and every date_added."""
    conn = sqlite3.connect(path)
    try:
        latest = conn.execute(
            "SELECT COUNT(*) FROM taxii_objects WHERE collection = ? AND latest = 1", (ALL,)
        ).fetchone()[0]
        added = [
            int(r[0])
            for r in conn.execute(
                "SELECT added_us FROM taxii_objects WHERE collection = ? AND latest = 1 "
                "ORDER BY added_us",
                (ALL,),
            )
        ]
    finally:
        conn.close()
    return int(latest), added


def fill_store(path: Path, objects: int, say: Callable[[str], None]) -> tuple[Row, int]:
    """Store bulletins until the whole-feed collection holds ``objects``; the row times the
    store's writes only (building the deliveries is the feed's cost, not the store's)."""
    store = BulletinStore.open(path)
    stored = written_s = 0.0
    seed = 0
    try:
        while (held := _count(path)) < objects:
            seed += 1
            batch = [
                deliver(b, Release.FULL, offset=n)
                for n, b in enumerate(bulletins(BATCH * 5, seed=seed))
            ]
            for start in range(0, len(batch), BATCH):
                began = time.perf_counter()
                store.write(batch[start : start + BATCH], ())
                written_s += time.perf_counter() - began
                stored += BATCH
            say(f"store: {int(stored):,} bulletins, {held:,} objects before this round")
    finally:
        store.close()
    held = _count(path)
    row = Row(
        "TAXII: store with its STIX index",
        f"batches of {BATCH}",
        int(stored),
        stored / written_s if written_s else None,
        "bulletins/s",
        None,
        f"{held:,} objects in the whole-feed collection; "
        f"{written_s / stored * 1e3:.2f} ms of store write a bulletin (fsynced, index included)",
    )
    return row, held


@contextmanager
def taxii_server(db: Path, log: Path) -> Iterator[str]:
    """``enlace taxii serve`` over ``db`` on a free loopback port; yields its URL."""
    env = {
        **os.environ,
        "ENLACE_TAXII_USERNAME": USER,
        "ENLACE_TAXII_PASSWORD": PASSWORD,
        "ENLACE_LOG_FORMAT": "json",
    }
    args = [sys.executable, "-m", "enlace.cli", "taxii", "serve", "--db", str(db)]
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [*args, "--listen", "127.0.0.1:0"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        url = None
        while url is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"enlace taxii serve did not start: {log.read_text()[-2000:]}")
            for line in log.read_bytes().splitlines():
                if line.startswith(b"{") and b"taxii_listening" in line:
                    url = str(json.loads(line)["url"])
            time.sleep(0.05)  # polling a child's log for its port, not synchronising work
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def _whole_feed(url: str) -> Collection:
    api = Server(f"{url}/taxii2/", user=USER, password=PASSWORD).api_roots[0]
    return next(c for c in api.collections if c.title == "Enlace feed")


def full_pull(url: str, expected: int) -> tuple[Row, list[str]]:
    collection = _whole_feed(url)
    began = time.perf_counter()
    ids: list[str] = []
    pages = 0
    for envelope in as_pages(collection.get_objects, per_request=PAGE):
        ids += [o["id"] for o in envelope.get("objects", [])]
        pages += 1
    seconds = time.perf_counter() - began
    problems = []
    if len(ids) != expected:
        problems.append(f"full pull got {len(ids):,} objects, the store holds {expected:,}")
    if len(set(ids)) != len(ids):
        problems.append(f"full pull got {len(ids) - len(set(ids)):,} objects twice")
    row = Row(
        "TAXII: full pull, taxii2-client",
        f"pages of {PAGE}",
        len(ids),
        len(ids) / seconds if seconds else None,
        "objects/s",
        None,
        f"{pages} pages in {seconds:.1f} s (client parsing included)",
    )
    return row, problems


def first_pages(url: str, added: Sequence[int], label: str) -> Row:
    """``POLLS`` OpenCTI-style polls by a poller ``BEHIND`` objects behind (``added_after``
    that many objects before the end), first page only: the same page whatever the size."""
    collection = _whole_feed(url)
    after = format_us(added[max(0, len(added) - BEHIND - 1)])
    times: list[float] = []
    got = 0
    for _ in range(POLLS):
        began = time.perf_counter()
        envelope: dict[str, Any] = collection.get_objects(added_after=after, limit=PAGE)
        times.append(time.perf_counter() - began)
        got = len(envelope.get("objects", []))
    summary = summarize_seconds(times)
    return Row(
        f"TAXII: added_after poll, first page ({label})",
        f"{POLLS} polls",
        POLLS,
        POLLS / sum(times),
        "polls/s",
        summary,
        f"{got} objects a page, of {len(added):,} in the collection",
    )


def taxii_phase(workdir: Path, objects: int, say: Callable[[str], None]) -> TaxiiResult:
    result = TaxiiResult()
    small, large = workdir / "small.sqlite3", workdir / "large.sqlite3"
    _, held_small = fill_store(small, SMALL_OBJECTS, say)
    row, held = fill_store(large, objects, say)
    result.rows.append(row)
    for db, label in ((large, f"{held:,} objects"), (small, f"{held_small:,} objects")):
        with taxii_server(db, workdir / f"{db.stem}.log") as url:
            if db == large:
                say("full pull")
                pull, problems = full_pull(url, held)
                result.rows.append(pull)
                result.problems += problems
            say(f"added_after polls ({label})")
            result.rows.append(first_pages(url, _rows_in(db)[1], label))
    return result


def _say(message: str) -> None:
    print(f"[taxii phase] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.taxii_phase", description=__doc__)
    parser.add_argument("--objects", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="enlace-bench-taxii-") as tmp:
        result = taxii_phase(Path(tmp), args.objects, _say)
    sys.stdout.write(rows_table(result.rows) + "\n")
    for problem in result.problems:
        sys.stdout.write(f"- PROBLEM: {problem}\n")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
