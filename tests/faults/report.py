"""The fault suite's report: each scenario adds a row (fault, scale, anomalies, recovery,
figures); at the end of the session the rows are printed and, when
``ENLACE_FAULTS_REPORT`` names a file (``make faults`` does), written there as Markdown.
The README's reliability table is taken from that file."""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.faults.checker import ANOMALIES, Report


@dataclass(frozen=True)
class ScenarioRow:
    scenario: str
    fault: str
    scale: str
    anomalies: dict[str, int]
    recovery_s: list[float] = field(default_factory=list)
    recovery_bound_s: float | None = None
    figures: str = ""
    passed: bool = True

    @property
    def anomaly_total(self) -> int:
        return sum(self.anomalies.values())

    def recovery_cell(self) -> str:
        if not self.recovery_s:
            return "n/a"
        worst = max(self.recovery_s)
        shown = "did not resume" if math.isinf(worst) else f"{worst:.1f} s"
        bound = f" (bound {self.recovery_bound_s:.0f} s)" if self.recovery_bound_s else ""
        return f"worst {shown} of {len(self.recovery_s)}{bound}"


def anomalies_of(report: Report) -> dict[str, int]:
    return {name: report.counts[name] for name in ANOMALIES}


class FaultReport:
    def __init__(self) -> None:
        self.rows: list[ScenarioRow] = []

    def add(self, row: ScenarioRow) -> None:
        self.rows.append(row)

    def markdown(self, size: str) -> str:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            f"# Enlace fault suite report ({size} size)",
            "",
            (
                f"{stamp} on {platform.node()} ({platform.machine()}, Python "
                f"{platform.python_version()}). Anomalies are the checker's counts "
                f"({', '.join(ANOMALIES)}); pass = all zero."
            ),
            "",
            "| scenario | fault | scale | anomalies | recovery | result |",
            "|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            result = "pass" if row.passed else "FAIL"
            lines.append(
                f"| {row.scenario} | {row.fault} | {row.scale} | {row.anomaly_total} | "
                f"{row.recovery_cell()} | {result} |"
            )
        lines += ["", "## Figures", ""]
        for row in self.rows:
            nonzero = {k: v for k, v in row.anomalies.items() if v}
            lines.append(f"- **{row.scenario}**: {row.figures}")
            if nonzero:
                lines.append(f"  - anomalies: {nonzero}")
            if row.recovery_s:
                each = ", ".join("inf" if math.isinf(r) else f"{r:.1f}" for r in row.recovery_s)
                lines.append(f"  - recovery after each fault (s): {each}")
        return "\n".join(lines) + "\n"

    def write(self, path: Path, size: str) -> None:
        path.write_text(self.markdown(size))
