"""``enlace trust show|explain`` and ``enlace policy check`` on the example policy and history."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from broker import cli as broker_cli
from enlace.core.errors import PolicyError, RegistryError, ValidationError

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "deploy" / "policy.yaml"
EVENTS = Path(__file__).with_name("data") / "trust_events.jsonl"
NOW = "2026-05-01T00:00:00Z"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    root = typer.Typer()
    broker_cli.register(root)
    return root


def run(app: typer.Typer, *args: str) -> str:
    # Offline whatever the developer's shell says (a set ENLACE_KAFKA_BOOTSTRAP means --live).
    env = {"COLUMNS": "200", "ENLACE_KAFKA_BOOTSTRAP": None}
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_explain_shows_score_factors_and_classification(app: typer.Typer) -> None:
    out = run(
        app, "trust", "explain", "us-jiatfs", "do-dncd", "--events", str(EVENTS), "--now", NOW
    )
    assert "score 0.462" in out
    for factor in ("prior", "receipt_on_time", "feedback_actioned", "incident_leak", "reciprocity"):
        assert factor in out
    assert "in full up to RESTRICTED" in out  # the leak on 2026-03-31 cost do-dncd CONFIDENTIAL


def test_explain_without_events_is_the_agreement_prior(app: typer.Typer) -> None:
    out = run(app, "trust", "explain", "us-jiatfs", "co-ponal", "--now", NOW)
    assert "score 0.700" in out
    assert "in full up to CONFIDENTIAL" in out


def test_explain_none_agreement_receives_nothing(app: typer.Typer) -> None:
    out = run(app, "trust", "explain", "do-dncd", "bz-bdf", "--now", NOW)
    assert "bz-bdf receives nothing from do-dncd" in out


def test_show_matrix_marks_earned_secret(app: typer.Typer) -> None:
    out = run(app, "trust", "show", "--events", str(EVENTS), "--now", NOW)
    row = next(line for line in out.splitlines() if line.startswith("│ us-jiatfs"))
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    header = next(line for line in out.splitlines() if "originator" in line)
    columns = [cell.strip() for cell in header.strip("┃").split("┃")]
    by_partner = dict(zip(columns, cells, strict=True))
    assert by_partner["co-ponal"] == "0.83 S"  # SECRET earned with evidence (claims capped)
    assert by_partner["do-dncd"] == "0.46 R"  # full agreement, but a leak
    assert by_partner["us-jiatfs"] == "-"  # the diagonal


def test_show_one_originator(app: typer.Typer) -> None:
    out = run(app, "trust", "show", "--originator", "gt-pnc", "--now", NOW)
    rows = [line for line in out.splitlines() if line.startswith("│ ")]
    assert len(rows) == 1
    assert rows[0].startswith("│ gt-pnc")


def test_unknown_agency_is_an_error(app: typer.Typer) -> None:
    with pytest.raises(RegistryError):
        run(app, "trust", "explain", "us-jiatfs", "xx-nobody", "--now", NOW)


def test_policy_check_accepts_the_example(app: typer.Typer) -> None:
    out = run(
        app, "policy", "check", str(POLICY), "--registry", str(ROOT / "deploy" / "agencies.yaml")
    )
    assert "is valid" in out
    assert "one leak keeps at most 0.672" in out


def test_policy_check_names_key_line_and_rule(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(POLICY.read_text().replace("CONFIDENTIAL: 0.6", "CONFIDENTIAL: 1.5"))
    with pytest.raises(PolicyError) as err:
        run(app, "policy", "check", str(bad))
    line = next(n for n, text in enumerate(bad.read_text().splitlines(), 1) if "1.5" in text)
    assert f"thresholds.CONFIDENTIAL (line {line}): 1.5 must be within [0, 1]" in str(err.value)


def test_policy_check_flags_agencies_missing_from_registry(
    app: typer.Typer, tmp_path: Path
) -> None:
    registry = tmp_path / "agencies.yaml"
    registry.write_text("agencies:\n  - {id: us-jiatfs, country: US, name: JIATF-S}\n")
    with pytest.raises(PolicyError, match="missing from"):
        run(app, "policy", "check", str(POLICY), "--registry", str(registry))


def test_bad_events_line_is_named(app: typer.Typer, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"kind": "RECEIPT", "reporter": "co-ponal", "subject": "us-jiatfs",'
        ' "occurred_at": "2026-04-01T00:00:00Z"}\n{"kind": "BOGUS"}\n'
    )
    with pytest.raises(ValidationError, match=r"events.jsonl:2: kind"):
        run(app, "trust", "show", "--events", str(events), "--now", NOW)
