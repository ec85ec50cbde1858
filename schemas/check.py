"""``enlace schemas check``: every schema parses, follows the house rules, and each family of
versions is FULL TRANSITIVE compatible, and released versions are unchanged. Returns a report;
the CLI prints it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from enlace.core.errors import ConfigError
from schemas.catalog import SCHEMA_DIR, Catalog, SchemaVersion
from schemas.compat import full_transitive
from schemas.lint import lint

RELEASED_FILE = "released.txt"


@dataclass
class CheckReport:
    versions: list[SchemaVersion] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unreleased: list[str] = field(default_factory=list)

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
    _check_released(directory, report)
    return report


def _check_released(directory: Path, report: CheckReport) -> None:
    lock = directory / RELEASED_FILE
    if not lock.exists():
        return
    released: dict[str, str] = {}
    for number, line in enumerate(lock.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            parts = line.split()
            if len(parts) != 2:
                report.problems.append(f"{lock}:{number}: expected 'file fingerprint'")
                continue
            released[parts[0]] = parts[1]
    present = {Path(v.source).name: v.fingerprint.hex() for v in report.versions}
    for name, expected in sorted(released.items()):
        actual = present.get(name)
        if actual is None:
            report.problems.append(f"released schema {name} is missing: keep every version")
        elif actual != expected:
            report.problems.append(
                f"released schema {name} changed: fingerprint {actual}, released {expected}; "
                "add a new version instead"
            )
    report.unreleased = sorted(set(present) - set(released))
