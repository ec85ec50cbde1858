"""The README's simulated year as a trust history file, for ``enlace trust plot``.

``tests/unit/test_trust_scenario.py`` folds the year straight into a ledger; this writes the
same year (its constants, seed and random draws, in the same order) as the JSONL records
``enlace trust explain|plot --events`` read: each release, its receipt 30 min later (on time),
90 min later (late: the deadline is 60 min) or never (missing at the deadline), the
feedback 6 h after the release, the releases back, and the leak on day 75 at 21:00. Its
score each day at 23:59 is the scenario's to within 0.00001 (the scenario dates a late or
missing receipt at 30 min, a file cannot), so it is the README's table::

    python -m bench.trust_year /tmp/trust-year.jsonl
    enlace trust plot us-jiatfs pa-senafront --events /tmp/trust-year.jsonl \\
        --since 2026-01-01 --until 2027-01-01 --out docs/trust-year.png
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from tests.unit.test_trust_scenario import (
    ACTIONED,
    IN_PER_DAY,
    LATE,
    LEAK_DAY,
    NOT_USEFUL,
    ON_TIME,
    ORIG,
    OUT_PER_DAY,
    PART,
    START,
    USEFUL,
)

ON_TIME_AFTER = timedelta(minutes=30)
LATE_AFTER = timedelta(minutes=90)
FEEDBACK_AFTER = timedelta(hours=6)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def year_records(seed: int = 2026, days: int = 365) -> Iterator[dict[str, str]]:
    """The scenario's ``simulate_year(policy)`` as file records, in time order per day."""
    rng = random.Random(seed)  # a reproducible simulation, not a secret
    for day in range(days):
        base = START + timedelta(days=day)
        for n in range(OUT_PER_DAY):
            released = base + timedelta(hours=7 + 2 * n)
            bulletin = f"year-{day:03d}-{n}"
            yield {
                "record": "release",
                "originator": ORIG,
                "partner": PART,
                "released_at": _iso(released),
                "bulletin_id": bulletin,
            }
            roll = rng.random()
            after = (
                ON_TIME_AFTER if roll < ON_TIME else LATE_AFTER if roll < ON_TIME + LATE else None
            )
            if after is not None:
                yield _event("RECEIPT", PART, ORIG, released + after, bulletin)
            roll = rng.random()
            kind = (
                "FEEDBACK_ACTIONED"
                if roll < ACTIONED
                else "FEEDBACK_USEFUL"
                if roll < ACTIONED + USEFUL
                else "FEEDBACK_NOT_USEFUL"
                if roll < ACTIONED + USEFUL + NOT_USEFUL
                else None
            )
            if kind is not None:
                yield _event(kind, PART, ORIG, released + FEEDBACK_AFTER, bulletin)
        for n in range(IN_PER_DAY):
            at = base + timedelta(hours=8 + 2 * n)
            yield {
                "record": "release",
                "originator": PART,
                "partner": ORIG,
                "released_at": _iso(at),
            }
        if day == LEAK_DAY:
            yield _event("INCIDENT_LEAK", ORIG, PART, base + timedelta(hours=21), None)


def _event(
    kind: str, reporter: str, subject: str, at: datetime, bulletin: str | None
) -> dict[str, str]:
    event = {"kind": kind, "reporter": reporter, "subject": subject, "occurred_at": _iso(at)}
    if bulletin is not None:
        event["bulletin_id"] = bulletin
    return event


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.trust_year OUT.jsonl", file=sys.stderr)
        return 2
    lines = [json.dumps(record, separators=(",", ":")) for record in year_records()]
    Path(argv[0]).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} records -> {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
