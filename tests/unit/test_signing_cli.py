"""`enlace keys generate` and `enlace keys directory`."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml
from typer.testing import CliRunner

from enlace.cli import app
from schemas.signing import AgencyKey, KeyDirectory


def test_generate_writes_0600_key_and_prints_public_entry(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    result = CliRunner().invoke(
        app,
        ["keys", "generate", "--agency", "pa-senafront", "--key-id", "pa-2026", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    path = out / "pa-senafront.pa-2026.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    printed = yaml.safe_load(result.stdout)
    assert printed["pa-senafront"]["pa-2026"]["revoked"] is False
    key = AgencyKey.load(path)
    directory = KeyDirectory.from_mapping(printed)
    directory.verify("pa-senafront", "pa-2026", b"x", key.sign(b"x"), at=key.valid_from)
    assert "private_key" not in result.stdout


def test_generate_refuses_bad_agency(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["keys", "generate", "--agency", "PA", "--out", str(tmp_path)])
    assert result.exit_code != 0


def test_directory_from_private_keys_and_public_entries(tmp_path: Path) -> None:
    private = tmp_path / "private"
    public = tmp_path / "public"
    public.mkdir()
    keys = [AgencyKey.generate(agency) for agency in ("pa-senafront", "cr-msp")]
    for key in keys:
        key.save(private)
    third = AgencyKey.generate("mx-sedena")
    KeyDirectory.from_keys([third]).dump(public / "mx.yaml")
    runner = CliRunner()
    for source, expected in ((private, keys), (public, [third])):
        out = tmp_path / f"{source.name}.yaml"
        result = runner.invoke(app, ["keys", "directory", "--from", str(source), "--out", str(out)])
        assert result.exit_code == 0, result.output
        loaded = KeyDirectory.load(out)
        assert sorted(e.key_id for e in loaded) == sorted(k.key_id for k in expected)
        assert "private_key" not in out.read_text()
