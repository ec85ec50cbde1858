"""Commands of this package, registered on the root ``enlace`` app: ``schemas`` and ``keys``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from enlace.core.errors import ConfigError
from schemas.agency_key import DEFAULT_KEY_DIR, AgencyKey
from schemas.catalog import SCHEMA_DIR
from schemas.check import check_schemas
from schemas.key_directory import KeyDirectory

schemas_app = typer.Typer(help="Avro schemas: compatibility check and fingerprints.")
keys_app = typer.Typer(help="Agency signing keys and the key directory.")


@schemas_app.command("check")
def schemas_check(
    directory: Annotated[Path, typer.Option("--dir", help="Schema directory.")] = SCHEMA_DIR,
) -> None:
    """Parse every schema, apply the house rules, check FULL TRANSITIVE compatibility."""
    report = check_schemas(directory)
    for entry in report.versions:
        typer.echo(f"{entry.fingerprint.hex()}  {entry.name} v{entry.version}  {entry.full_name}")
    for name in report.unreleased:
        typer.echo(f"note: {name} is not released yet (add it to released.txt when it ships)")
    for problem in report.problems:
        typer.secho(f"problem: {problem}", fg=typer.colors.RED, err=True)
    if not report.ok:
        raise typer.Exit(1)
    typer.echo(f"ok: {len(report.versions)} schema versions, full transitive compatible")


@keys_app.command("generate")
def keys_generate(
    agency: Annotated[str, typer.Option(help="Agency id, e.g. pa-senafront.")],
    key_id: Annotated[str | None, typer.Option(help="Key id (default: derived).")] = None,
    out: Annotated[
        Path, typer.Option(help="Directory for the private key (0600).")
    ] = DEFAULT_KEY_DIR,
) -> None:
    """Generate an Ed25519 key pair; print the public entry for deploy/keys.yaml."""
    key = AgencyKey.generate(agency, key_id)
    repo = _git_work_tree(out.expanduser().resolve())
    if repo is not None:
        typer.secho(
            f"warning: {out} is inside the git work tree {repo}; never commit private keys",
            fg=typer.colors.YELLOW,
            err=True,
        )
    path = key.save(out)
    typer.echo(f"# private key written to {path} (mode 0600; keep it secret)", err=True)
    typer.echo(yaml.safe_dump(KeyDirectory.from_keys([key]).to_mapping(), sort_keys=False))


def _git_work_tree(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


@keys_app.command("directory")
def keys_directory(
    source: Annotated[
        Path, typer.Option("--from", help="Folder of *.key private keys or *.yaml/*.json entries.")
    ],
    out: Annotated[Path, typer.Option(help="Key directory file to write.")],
) -> None:
    """Build a key directory from a folder of private keys or public entries."""
    if not source.is_dir():
        raise ConfigError(f"{source} is not a directory")
    entries: list[KeyDirectory] = []
    for path in sorted(source.iterdir()):
        if path.suffix == ".key":
            entries.append(KeyDirectory.from_keys([AgencyKey.load(path)]))
        elif path.suffix in {".yaml", ".yml", ".json"}:
            text = path.read_text(encoding="utf-8")
            raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            entries.append(KeyDirectory.from_mapping(raw, str(path)))
    merged = KeyDirectory(entry for directory in entries for entry in directory)
    merged.dump(out)
    typer.echo(f"wrote {len(merged)} keys of {len({e.agency for e in merged})} agencies to {out}")


def register(app: typer.Typer) -> None:
    """Add this package's commands to ``app``."""
    app.add_typer(schemas_app, name="schemas")
    app.add_typer(keys_app, name="keys")
