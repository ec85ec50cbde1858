"""``enlace schemas check``: every schema parses, follows the house rules, and each family of
versions is FULL TRANSITIVE compatible. Pure: returns a report, the CLI prints it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from enlace.errors import ConfigError
from schemas.catalog import SCHEMA_DIR, Catalog, SchemaVersion
from schemas.compat import full_transitive
from schemas.lint import lint


@dataclass
class CheckReport:
    versions: list[SchemaVersion] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_schemas(directory: Path = SCHEMA_DIR) -> CheckReport:
    report = CheckReport()
    try:
        catalog = Catalog.from_dir(directory)
    except ConfigError as exc:
        report.problems.append(str(exc))
        return report
    for name in catalog.names:
        family = list(catalog.versions(name))
        report.versions.extend(family)
        for entry in family:
            report.problems.extend(f"{entry.source}: {p}" for p in lint(entry.raw))
        report.problems.extend(f"{name}: {p}" for p in full_transitive([e.raw for e in family]))
    if not report.versions:
        report.problems.append(f"no schemas found in {directory}")
    return report
