"""`enlace trust plot O P --live`: the history a real router folded, read back from Kafka, draws
the series a history file of the same records draws, and ends at the live score."""

from __future__ import annotations

import asyncio
import re
import struct
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from broker.ledger import ObservedEvent, ObservedRelease
from broker.live_trust import live_ledger
from broker.policy import Policy
from broker.router import Router
from broker.trust_history import _Recorder
from broker.trust_plot import HEIGHT_PX, WIDTH_PX
from broker.trust_series import series_from_records
from broker.trust_source import read_records
from enlace.cli import app
from enlace.core.errors import KafkaUnavailable
from enlace.core.settings import KafkaSettings
from enlace.core.topics import receipts, trust_snapshots_topic
from schemas.envelope import seal, seal_event
from schemas.models import TrustEvent
from schemas.vocab import TrustEventKind
from tests.samples import routed_bulletin, sample_event
from tests.support import MiniExchange, build_exchange, eventually

pytestmark = pytest.mark.integration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SUMMARY = re.compile(r"score (?P<first>\d\.\d{3}) -> (?P<last>\d\.\d{3}) .*; (?P<marks>\d+) marked")


def _agreements(ex: MiniExchange) -> list[dict[str, Any]]:
    pa, us, cr = (ex.agency(c) for c in ("PA", "US", "CR"))
    return [{"between": [pa, us], "level": "full"}, {"between": [pa, cr], "level": "standard"}]


def write_config(ex: MiniExchange, workdir: Path) -> list[str]:
    """The exchange's registry, policy and keys as files, as CLI options."""
    agencies = [a.model_dump() for a in ex.registry]
    (workdir / "agencies.yaml").write_text(yaml.safe_dump({"agencies": agencies}))
    (workdir / "policy.yaml").write_text(yaml.safe_dump({"agreements": _agreements(ex)}))
    ex.directory.dump(workdir / "keys.yaml")
    return [
        "--registry", str(workdir / "agencies.yaml"),
        "--policy", str(workdir / "policy.yaml"),
        "--keys", str(workdir / "keys.yaml"),
    ]  # fmt: skip


async def run(*args: str) -> Result:
    """The CLI in a thread: it runs its own event loop."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), catch_exceptions=False)


async def send_events(ex: MiniExchange, events: list[tuple[str, TrustEvent]]) -> None:
    """Signed trust events on their reporter's receipts topic, as a consumer sends them."""
    for reporter, event in events:
        sealed = seal_event(event, ex.keys[reporter])
        await ex.publish_raw(receipts(reporter), [(sealed.key, sealed.value, sealed.headers)])


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def without_path(output: str) -> str:
    """The command's summary line without the output path. Log lines are left out: on the
    shared test broker the audit topic also holds other tests' junk records, which the live
    read warns about (and skips) and a file read never sees."""
    summary = [line for line in output.splitlines() if SUMMARY.search(line)]
    return "\n".join(summary).strip().rsplit("; wrote ", 1)[0]


async def test_plot_live_draws_the_history_the_router_folded(
    kafka_settings: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = await build_exchange(kafka_settings)
    ex.policy = Policy.model_validate({"agreements": _agreements(ex)})
    pa, us, cr = (ex.agency(c) for c in ("PA", "US", "CR"))
    options = write_config(ex, tmp_path)
    monkeypatch.setenv("ENLACE_KAFKA_BOOTSTRAP", ex.settings.kafka_bootstrap)
    from_pa = [seal(routed_bulletin(pa), ex.keys[pa]) for _ in range(6)]
    from_us = [seal(routed_bulletin(us), ex.keys[us]) for _ in range(2)]
    ids = [s.key.decode() for s in from_pa]
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()  # before any evidence
    async with Router(ex.router_settings(), ex.registry, ex.policy, ex.directory) as router:
        await ex.publish(pa, from_pa)
        await ex.publish(us, from_us)
        # pa -> us and pa -> cr (full, tearline) for six; us -> pa for two (reciprocity).
        await eventually(lambda: router.trust.remembered_releases() >= 14, "14 releases folded")
        now = datetime.now(UTC)
        receipt = sample_event(reporter=us, subject=pa, bulletin_id=ids[0], occurred_at=now)
        await send_events(ex, [
            # Receipts for four (the last two go missing), one sent twice.
            *[(us, sample_event(reporter=us, subject=pa, bulletin_id=b, occurred_at=now))
              for b in ids[1:4]],
            (us, receipt),
            (us, receipt),  # the same event again: a duplicate, counted once
            (us, sample_event(reporter=us, subject=pa, bulletin_id=ids[0], occurred_at=now)),
            (us, sample_event(TrustEventKind.FEEDBACK_ACTIONED, reporter=us, subject=pa,
                              bulletin_id=ids[0], occurred_at=now)),
            (us, sample_event(TrustEventKind.FEEDBACK_USEFUL, reporter=us, subject=pa,
                              bulletin_id=ids[1], occurred_at=now)),
            # A receipt for a bulletin never released: it never counts.
            (us, sample_event(reporter=us, subject=pa, occurred_at=now)),
            (pa, sample_event(TrustEventKind.INCIDENT_MISHANDLING, reporter=pa, subject=us,
                              bulletin_id=None, occurred_at=now)),
            # Another pair's evidence: not in the pair's history.
            (cr, sample_event(reporter=cr, subject=pa, bulletin_id=ids[0], occurred_at=now)),
        ])  # fmt: skip
        await eventually(lambda: router.trust.events_applied >= 8, "8 events counted")
    at = datetime.now(UTC) + timedelta(hours=2)  # past the receipt deadline of the last two
    until = at.isoformat()
    saved, live_png, file_png = (tmp_path / n for n in ("history.jsonl", "live.png", "f.png"))

    live = await run(
        "trust", "plot", pa, us, "--live", "--since", since, "--until", until,
        "--save-events", str(saved), "--out", str(live_png), *options,
    )  # fmt: skip
    assert live.exit_code == 0, live.output
    assert png_size(live_png) == (WIDTH_PX, HEIGHT_PX)

    # The pair's history, as the router counted it, dated as the router dates evidence.
    records = read_records(saved)
    releases = [r for r in records if isinstance(r, ObservedRelease)]
    events = [r for r in records if isinstance(r, ObservedEvent)]
    assert sorted((r.originator, r.partner) for r in releases) == [(pa, us)] * 6 + [(us, pa)] * 2
    assert {r.bulletin_id for r in releases if r.originator == pa} == set(ids)
    kinds = sorted(e.kind.value for e in events)
    assert kinds == sorted(
        ["RECEIPT"] * 4 + ["FEEDBACK_ACTIONED", "FEEDBACK_USEFUL", "INCIDENT_MISHANDLING"]
    )
    assert all({e.reporter, e.subject} == {pa, us} for e in events)
    assert all(e.released_at is not None for e in events if e.kind is TrustEventKind.RECEIPT)

    # The same records from a file draw the same series.
    offline = await run(
        "trust", "plot", pa, us, "--events", str(saved), "--since", since, "--until", until,
        "--out", str(file_png), *options,
    )  # fmt: skip
    assert offline.exit_code == 0, offline.output
    assert without_path(live.output) == without_path(offline.output)
    assert live_png.read_bytes() == file_png.read_bytes()

    # Its last score is `enlace trust show --live`'s (the same rebuild, from the router's
    # snapshot or history): two feedbacks, an incident and two missing receipts marked.
    found = SUMMARY.search(live.output)
    assert found is not None, live.output
    assert found["first"] == "0.700"
    assert int(found["marks"]) == 5
    topic = trust_snapshots_topic(f"t{ex.token}.router.")
    ledger = await live_ledger(ex.settings, ex.registry, ex.policy, ex.directory, at,
                               snapshots_topic=topic)  # fmt: skip
    assert found["last"] == f"{ledger.score(pa, us, ex.policy, at).value:.3f}"
    assert found["last"] != "0.700"


async def test_plot_live_with_kafka_down_is_a_bounded_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_settings: KafkaSettings
) -> None:
    ex = await build_exchange(kafka_settings)
    options = write_config(ex, tmp_path)
    monkeypatch.setenv("ENLACE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    began = time.monotonic()
    with pytest.raises(KafkaUnavailable, match="did not answer"):
        await run(
            "trust", "plot", ex.agency("PA"), ex.agency("US"), "--live", "--timeout", "5",
            "--out", str(tmp_path / "x.png"), *options,
        )  # fmt: skip
    assert time.monotonic() - began < 20
    assert not (tmp_path / "x.png").exists()


def test_the_recorded_history_replays_to_the_routers_ledger() -> None:
    """No Kafka: the records the reader keeps, fed to the series builder, end at the state's
    own score, with a receipt read before its release (held), a late one, a missing one, a
    repeat and another pair's records in the way."""
    pa, us, cr = "pa-senafront", "us-jiatfs", "cr-msp"
    policy = Policy.model_validate({"agreements": [{"between": [pa, us], "level": "full"}]})
    state = _Recorder(policy, [pa, us, cr], (pa, us))
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    ids = [str(uuid.uuid4()) for _ in range(5)]

    def event(kind: TrustEventKind, reporter: str, subject: str, bulletin: str | None,
              at: datetime) -> None:  # fmt: skip
        e = sample_event(kind, reporter=reporter, subject=subject, bulletin_id=bulletin,
                         occurred_at=at)  # fmt: skip
        state.event(e, at, at)

    held = t0 + timedelta(seconds=1)
    event(TrustEventKind.RECEIPT, us, pa, ids[0], held)  # before its release is read
    for i, b in enumerate(ids):
        state.release(pa, us, b, t0 + timedelta(seconds=2 + i))
        state.release(pa, cr, b, t0 + timedelta(seconds=2 + i))
    state.release(us, pa, str(uuid.uuid4()), t0 + timedelta(seconds=9))
    event(TrustEventKind.RECEIPT, us, pa, ids[1], t0 + timedelta(minutes=1))
    event(TrustEventKind.RECEIPT, us, pa, ids[1], t0 + timedelta(minutes=2))  # a repeat
    event(TrustEventKind.FEEDBACK_ACTIONED, us, pa, ids[1], t0 + timedelta(minutes=3))
    state.sweep(t0 + timedelta(hours=3))  # ids[2:] are missing by now
    event(TrustEventKind.RECEIPT, us, pa, ids[2], t0 + timedelta(hours=4))  # late
    event(TrustEventKind.RECEIPT, cr, pa, ids[3], t0 + timedelta(hours=4))  # another pair
    event(TrustEventKind.INCIDENT_LEAK, pa, us, None, t0 + timedelta(hours=5))
    end = t0 + timedelta(days=2)
    state.sweep(end)

    assert all({r.originator, r.partner} == {pa, us} for r in state.records
               if isinstance(r, ObservedRelease))  # fmt: skip
    kinds = [r.kind for r in state.records if isinstance(r, ObservedEvent)]
    assert sorted(kinds) == sorted([TrustEventKind.RECEIPT] * 3 + [
        TrustEventKind.FEEDBACK_ACTIONED, TrustEventKind.INCIDENT_LEAK])  # fmt: skip
    series = series_from_records(state.records, policy, pa, us, since=t0, until=end)
    expected = state.score(pa, us, policy, end).value
    assert series.samples[-1].score == pytest.approx(expected, abs=1e-9)
    assert {m.cls.value for m in series.marks} >= {"receipt_late", "receipt_missing"}
