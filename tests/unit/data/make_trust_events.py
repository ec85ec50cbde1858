"""Write ``trust_events.jsonl``: two months of exchange between a few seed agencies.

Deterministic (fixed seed). The story, as of 2026-05-01:
- us-jiatfs <-> co-ponal: busy, prompt receipts, regular actioned feedback (earns SECRET);
- us-jiatfs -> do-dncd: good partner until us-jiatfs reports a leak on 2026-03-31;
- us-jiatfs -> pa-senafront: receipts often late or missing, little sent back;
- cr-msp <-> pa-senafront, co-ponal <-> pa-senafront: steady neighbours;
- gt-pnc -> hn-fusina: a mishandling incident on 2026-04-20.

Run: ``.venv/bin/python tests/unit/data/make_trust_events.py`` (rewrites the file).
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

START = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 61
OUT = Path(__file__).with_name("trust_events.jsonl")

# (originator, partner, releases per day, P(on time), P(late), actioned every, useful every)
FLOWS = [
    ("us-jiatfs", "co-ponal", 2, 0.97, 0.03, 5, 2),
    ("co-ponal", "us-jiatfs", 2, 0.95, 0.05, 6, 3),
    ("us-jiatfs", "do-dncd", 1, 0.95, 0.05, 7, 3),
    ("do-dncd", "us-jiatfs", 1, 0.95, 0.05, 0, 4),
    ("us-jiatfs", "pa-senafront", 1, 0.55, 0.3, 0, 0),
    ("cr-msp", "pa-senafront", 1, 0.9, 0.1, 10, 4),
    ("pa-senafront", "cr-msp", 1, 0.9, 0.1, 0, 5),
    ("co-ponal", "pa-senafront", 1, 0.9, 0.1, 8, 4),
    ("pa-senafront", "co-ponal", 1, 0.9, 0.1, 0, 0),
    ("gt-pnc", "hn-fusina", 1, 0.85, 0.1, 0, 6),
]
INCIDENTS = [
    ("us-jiatfs", "do-dncd", "INCIDENT_LEAK", START + timedelta(days=30, hours=15)),
    ("gt-pnc", "hn-fusina", "INCIDENT_MISHANDLING", START + timedelta(days=50, hours=9)),
]


def _ts(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _event(
    rng: random.Random, kind: str, reporter: str, subject: str, at: datetime
) -> dict[str, object]:
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "kind": kind,
        "reporter": reporter,
        "subject": subject,
        "occurred_at": _ts(at),
    }


def records() -> list[dict[str, object]]:
    rng = random.Random(20260301)
    out: list[dict[str, object]] = []
    for day in range(DAYS):
        for o, p, per_day, on_time, late, actioned, useful in FLOWS:
            for n in range(per_day):
                released = START + timedelta(days=day, hours=8 + 5 * n, minutes=rng.randrange(60))
                bulletin = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                out.append(
                    {
                        "record": "release",
                        "originator": o,
                        "partner": p,
                        "released_at": _ts(released),
                        "bulletin_id": bulletin,
                    }
                )
                roll = rng.random()
                if roll < on_time + late:
                    delay = rng.randrange(2, 50) if roll < on_time else rng.randrange(70, 600)
                    receipt = _event(rng, "RECEIPT", p, o, released + timedelta(minutes=delay))
                    out.append({**receipt, "bulletin_id": bulletin})
                for every, kind in ((actioned, "FEEDBACK_ACTIONED"), (useful, "FEEDBACK_USEFUL")):
                    if every and n == 0 and day % every == every - 1:
                        event = _event(rng, kind, p, o, released + timedelta(days=1))
                        out.append({**event, "bulletin_id": bulletin})
    for reporter, subject, kind, at in INCIDENTS:
        out.append({**_event(rng, kind, reporter, subject, at), "note": "reported by liaison"})
    return sorted(out, key=lambda r: str(r.get("released_at") or r.get("occurred_at")))


if __name__ == "__main__":
    with OUT.open("w", encoding="utf-8") as fh:
        for record in records():
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
