"""`enlace audit why|list` and `enlace policy whatif` on decisions a real router recorded."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from broker.audit_query import Query, decisions_of, select
from broker.audit_read import read_audit, read_subjects
from broker.policy import Policy
from broker.router import Router
from broker.whatif import needs_outbound, what_if
from enlace.cli import app
from enlace.core.errors import KafkaUnavailable
from enlace.core.settings import KafkaSettings
from schemas.envelope import seal
from schemas.vocab import Classification
from tests.samples import routed_bulletin
from tests.support import MiniExchange, build_exchange, eventually

pytestmark = pytest.mark.integration


def _agreements(ex: MiniExchange) -> list[dict[str, Any]]:
    pa, us, cr, mx = (ex.agency(c) for c in ("PA", "US", "CR", "MX"))
    return [
        {"between": [pa, us], "level": "full"},
        {"between": [pa, cr], "level": "standard"},
        {"between": [pa, mx], "level": "none"},
    ]


@pytest.fixture
async def exchange(kafka_settings: KafkaSettings) -> MiniExchange:
    ex = await build_exchange(kafka_settings)
    ex.policy = Policy.model_validate({"agreements": _agreements(ex)})
    return ex


@pytest.fixture
async def routed(exchange: MiniExchange) -> list[str]:
    """Two CONFIDENTIAL bulletins and one RESTRICTED, routed by a real router."""
    ex, pa = exchange, exchange.agency("PA")
    bulletins = [
        routed_bulletin(pa),
        routed_bulletin(pa),
        routed_bulletin(pa, classification=Classification.RESTRICTED),
    ]
    async with Router(ex.router_settings(), ex.registry, ex.policy, ex.directory):
        await ex.publish(pa, [seal(b, ex.keys[pa]) for b in bulletins])
        ids = {b.bulletin_id for b in bulletins}

        async def all_audited() -> bool:
            found = await read_audit(ex.settings, since=datetime.now(UTC) - timedelta(minutes=5))
            return ids <= {r.bulletin_id for r in found.records}

        await eventually(all_audited, "every bulletin audited", within=60)
    return [b.bulletin_id for b in bulletins]


@pytest.fixture
def files(exchange: MiniExchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The exchange's registry and policies as files, and the environment the CLI reads."""
    registry = {
        "agencies": [{"id": a.id, "country": a.country, "name": a.name} for a in exchange.registry]
    }
    (tmp_path / "agencies.yaml").write_text(yaml.safe_dump(registry))
    old = {"agreements": _agreements(exchange)}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    stricter = {**old, "thresholds": {"CONFIDENTIAL": 0.75}}
    (tmp_path / "new.yaml").write_text(yaml.safe_dump(stricter))
    monkeypatch.setenv("ENLACE_KAFKA_BOOTSTRAP", exchange.settings.kafka_bootstrap)
    monkeypatch.setenv("ENLACE_AGENCIES_FILE", str(tmp_path / "agencies.yaml"))
    return tmp_path


async def run(*args: str) -> Result:
    """The CLI in a thread: it runs its own event loop."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), catch_exceptions=False)


async def test_audit_why_explains_a_routed_bulletin(
    exchange: MiniExchange, routed: list[str], files: Path
) -> None:
    us, cr, mx = (exchange.agency(c) for c in ("US", "CR", "MX"))
    result = await run("audit", "why", routed[0], "--policy", str(files / "old.yaml"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "DRUG_TRAFFICKING, CONFIDENTIAL (tearline UNCLASSIFIED)" in text
    assert f"{us}: released in full: score 0.70 meets the 0.60 CONFIDENTIAL threshold" in text
    assert f"{cr}: tearline only: score 0.50 below the 0.60 CONFIDENTIAL threshold" in text
    assert f"{mx}: withheld: the agreement" in text
    assert "does not share the bulletin's category (DRUG_TRAFFICKING)" in text
    assert "prior 0.70 (full)" in text
    # The router writes AuditRecord v3: the facts come from the audit record, not outbound.
    alone = await run(
        "audit", "why", routed[0], "--policy", str(files / "old.yaml"), "--no-bulletin-facts"
    )
    assert alone.exit_code == 0, alone.output
    alone_text = " ".join(alone.output.split())
    assert "DRUG_TRAFFICKING, CONFIDENTIAL (tearline UNCLASSIFIED)" in alone_text
    assert f"{cr}: tearline only: score 0.50 below the 0.60 CONFIDENTIAL threshold" in alone_text
    assert "facts unavailable" not in alone_text

    one = await run("audit", "why", routed[0], "--partner", us, "--format", "json")
    assert one.exit_code == 0, one.output
    rows = json.loads(one.stdout)
    assert [(r["partner"], r["decision"], r["rule"]) for r in rows] == [(us, "FULL", "score_full")]
    assert rows[0]["reached"] == "CONFIDENTIAL"

    missing = await run("audit", "why", "00000000-0000-4000-8000-000000000000")
    assert missing.exit_code == 1
    assert "has no decision in the audit trail" in " ".join(missing.output.split())


async def test_audit_list_filters_and_formats(
    exchange: MiniExchange, routed: list[str], files: Path
) -> None:
    cr = exchange.agency("CR")
    result = await run("audit", "list", "--partner", cr, "--since", "10m", "--format", "csv")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("bulletin_id,origin,partner,decision,rule,score,reached")
    assert sorted(line.split(",")[3] for line in lines[1:]) == ["FULL", "TEARLINE", "TEARLINE"]
    limited = await run(
        "audit",
        "list",
        "--partner",
        cr,
        "--decision",
        "tearline",
        "--limit",
        "1",
        "--format",
        "json",
    )
    assert [r["bulletin_id"] for r in json.loads(limited.stdout)] == [routed[1]]
    table = await run("audit", "list", "--partner", cr, "--since", "10m")
    assert "3 decision(s)" in table.output
    assert "TEARLINE" in table.output


async def test_policy_whatif_on_the_recorded_history(
    exchange: MiniExchange, routed: list[str], files: Path
) -> None:
    us = exchange.agency("US")
    old, new = Policy.load(files / "old.yaml"), Policy.load(files / "new.yaml")
    found = await read_audit(exchange.settings, since=datetime.now(UTC) - timedelta(minutes=10))
    rows = [r for r in decisions_of(found.records) if r.bulletin_id in set(routed)]
    subjects = await read_subjects(exchange.settings, rows)
    assert set(subjects.found) == set(routed), subjects.missing
    # Version-3 records carry the facts the outbound records hold: nothing to read there.
    assert {r.bulletin_id: r.subject for r in rows} == subjects.found
    assert needs_outbound(rows) == []
    countries = {a.id: a.country for a in exchange.registry}
    report = what_if(rows, {}, countries, old, new)
    # Exactly the two CONFIDENTIAL bulletins' full releases to us (score 0.70 < 0.75) move.
    assert sorted(
        (c.decision.bulletin_id, c.decision.partner, c.transition) for c in report.changes
    ) == sorted((b, us, ("FULL", "TEARLINE")) for b in routed[:2])
    assert not report.undecided
    assert not report.not_reproduced
    assert not what_if(rows, subjects.found, countries, old, old).changed

    since = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    changed = await run(
        "policy",
        "whatif",
        str(files / "new.yaml"),
        "--policy",
        str(files / "old.yaml"),
        "--since",
        since,
        "--format",
        "json",
    )
    assert changed.exit_code == 1, changed.output
    mine = [c for c in json.loads(changed.stdout)["changes"] if c["bulletin_id"] in routed]
    assert sorted(c["bulletin_id"] for c in mine) == sorted(routed[:2])
    assert {(c["was"], c["would_be"], c["classification"]) for c in mine} == {
        ("FULL", "TEARLINE", "CONFIDENTIAL")
    }
    table = await run(
        "policy",
        "whatif",
        str(files / "new.yaml"),
        "--policy",
        str(files / "old.yaml"),
        "--since",
        since,
    )
    assert "full -> tearline" in table.output
    same = await run(
        "policy",
        "whatif",
        str(files / "old.yaml"),
        "--policy",
        str(files / "old.yaml"),
        "--since",
        since,
    )
    assert same.exit_code == 0, same.output


async def test_unreachable_kafka_is_a_bounded_clear_error(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENLACE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    with pytest.raises(KafkaUnavailable, match="did not answer"):
        await read_audit(KafkaSettings(), timeout=5)
    result = await run("policy", "whatif", str(files / "new.yaml"), "--timeout", "5")
    assert result.exit_code == 2
    assert "did not answer" in result.output
    assert select([], Query()) == []
