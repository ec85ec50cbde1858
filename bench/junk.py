"""Junk trust events for the flood phase: correctly signed by one partner, worth nothing.

The mix, in turn (two in five are orphans, one in five each of the others):

* receipts and feedback naming a random bulletin id never released to the partner: they wait
  as orphans (``held``) until the per-reporter bound evicts them;
* incidents about a well-formed agency id that is not in the registry (``unknown_agency``);
* copies of one incident about a registry agency: the first counts, the rest are
  ``duplicate``;
* receipts claiming to have occurred 30 days in the future (``clock_skew``).

They are sealed before the flood and written to a file the writer process sends flat out.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.exchange import Exchange, rename
from schemas.envelope import Sealed, seal_event
from schemas.vocab import TrustEventKind
from tests.samples import sample_event

ORPHAN = "orphan"
UNKNOWN_AGENCY = "unknown_agency"
DUPLICATE = "duplicate"
CLOCK_SKEW = "clock_skew"
PATTERN = (ORPHAN, ORPHAN, UNKNOWN_AGENCY, DUPLICATE, CLOCK_SKEW)
GHOST = "zz-ghost"  # a well-formed agency id no registry holds
SKEW = timedelta(days=30)
_ORPHAN_KINDS = (TrustEventKind.RECEIPT, TrustEventKind.FEEDBACK_USEFUL)


def junk_kinds(count: int) -> list[str]:
    """Which junk each of ``count`` events is, the pattern taken in turn."""
    return [PATTERN[i % len(PATTERN)] for i in range(count)]


def expected_outcomes(count: int) -> dict[str, int]:
    """What the router should make of ``junk_kinds(count)``: outcome → events."""
    kinds = Counter(junk_kinds(count))
    duplicates = kinds[DUPLICATE]
    return {
        "held": kinds[ORPHAN],
        "rejected unknown_agency": kinds[UNKNOWN_AGENCY],
        "rejected clock_skew": kinds[CLOCK_SKEW],
        "ignored duplicate": max(0, duplicates - 1),
        "counted": min(1, duplicates),  # the first copy of the duplicated incident
    }


@dataclass(frozen=True)
class Flood:
    reporter: str
    records: list[Sealed]
    expected: dict[str, int]


def build_flood(
    exchange: Exchange, reporter: str, count: int, subjects: tuple[str, ...], victim: str
) -> Flood:
    """``count`` junk events by ``reporter`` (signed with its key): orphans about
    ``subjects`` in turn, duplicates of one incident about ``victim``."""
    key = exchange.keys[reporter]
    ghost = rename(GHOST, exchange.token)
    future = datetime.now(UTC) + SKEW
    duplicate = seal_event(
        sample_event(TrustEventKind.INCIDENT_MISHANDLING, reporter, victim, bulletin_id=None), key
    )
    records: list[Sealed] = []
    for i, junk in enumerate(junk_kinds(count)):
        subject = subjects[i % len(subjects)]
        if junk == DUPLICATE:
            records.append(duplicate)
            continue
        if junk == ORPHAN:
            event = sample_event(_ORPHAN_KINDS[i % 2], reporter, subject)
        elif junk == UNKNOWN_AGENCY:
            event = sample_event(TrustEventKind.INCIDENT_LEAK, reporter, ghost, bulletin_id=None)
        else:
            event = sample_event(TrustEventKind.RECEIPT, reporter, subject, occurred_at=future)
        records.append(seal_event(event, key))
    return Flood(reporter, records, expected_outcomes(count))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dump_records(records: list[Sealed], path: Path) -> None:
    """One JSON line per record (key, value, headers), for the writer process."""
    with path.open("w", encoding="ascii") as out:
        for r in records:
            headers = [[name, _b64(value)] for name, value in r.headers]
            out.write(json.dumps({"k": _b64(r.key), "v": _b64(r.value), "h": headers}) + "\n")


def load_records(path: Path) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """(key, value, headers) of each record :func:`dump_records` wrote."""
    loaded = []
    with path.open(encoding="ascii") as lines:
        for line in lines:
            item = json.loads(line)
            headers = [(str(name), base64.b64decode(value)) for name, value in item["h"]]
            loaded.append((base64.b64decode(item["k"]), base64.b64decode(item["v"]), headers))
    return loaded
