"""The benchmark's results as data, a Markdown report and JSON (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bench.stats import LatencySummary

Align = Literal["left", "right"]


@dataclass(frozen=True)
class Row:
    """One measured line: what ran, under which load, how fast, how long it took end to end."""

    stage: str
    load: str
    count: int
    rate: float | None = None
    unit: str = "msg/s"
    latency: LatencySummary | None = None
    note: str = ""
    cpu: dict[str, object] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "load": self.load,
            "count": self.count,
            "rate": None if self.rate is None else round(self.rate, 1),
            "unit": self.unit,
            "latency": None if self.latency is None else self.latency.as_dict(),
            "note": self.note,
            "cpu": self.cpu,
        }


@dataclass(frozen=True)
class MicroCost:
    """Mean and median CPU cost of one operation on one bulletin, in microseconds."""

    operation: str
    mean_us: float
    median_us: float
    iterations: int
    note: str = ""


@dataclass
class BenchResult:
    machine: dict[str, Any]
    config: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    micro: list[MicroCost] = field(default_factory=list)
    hotspots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # The flood phase's figures as data (``--flood``); its rows are in ``rows`` too.
    flood: dict[str, Any] = field(default_factory=dict)
    # The history phase's figures per size (``--history``); its rows are in ``rows`` too.
    history: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = {
            "machine": self.machine,
            "config": self.config,
            "rows": [row.as_dict() for row in self.rows],
            "micro": [asdict(cost) for cost in self.micro],
            "hotspots": self.hotspots,
            "problems": self.problems,
        }
        if self.flood:
            data["flood"] = self.flood
        if self.history:
            data["history"] = self.history
        return data


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[Align] | None = None
) -> str:
    """A padded GitHub Markdown table; ``|`` inside a cell is escaped."""
    aligns = list(align) if align is not None else ["left"] * len(header)
    if len(aligns) != len(header) or any(len(row) != len(header) for row in rows):
        raise ValueError("every row and the alignment need one entry per column")
    cells = [[c.replace("|", "\\|") for c in row] for row in [list(header), *rows]]
    widths = [max(3, *(len(row[i]) for row in cells)) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if how == "right" else cell.ljust(width)
            for cell, width, how in zip(row, widths, aligns, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        "-" * (width - 1) + ":" if how == "right" else "-" * width
        for width, how in zip(widths, aligns, strict=True)
    ]
    return "\n".join([line(cells[0]), line(rule), *(line(row) for row in cells[1:])])


def number(value: float | None, digits: int = 0) -> str:
    """Thousands-separated number, or an em dash for "not measured"."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def rows_table(rows: Sequence[Row]) -> str:
    header = ["Stage", "Load", "Count", "Throughput", "p50 ms", "p99 ms", "Notes"]
    body = [
        [
            row.stage,
            row.load,
            number(row.count),
            "—" if row.rate is None else f"{number(row.rate)} {row.unit}",
            ms(row.latency.p50_ms if row.latency else None),
            ms(row.latency.p99_ms if row.latency else None),
            row.note,
        ]
        for row in rows
    ]
    return markdown_table(
        header, body, ["left", "left", "right", "right", "right", "right", "left"]
    )


def micro_table(costs: Sequence[MicroCost]) -> str:
    header = ["Per bulletin", "median µs", "mean µs", "per core /s", "Notes"]
    body = [
        [
            cost.operation,
            number(cost.median_us, 1),
            number(cost.mean_us, 1),
            number(1e6 / cost.median_us if cost.median_us > 0 else None),
            cost.note,
        ]
        for cost in costs
    ]
    return markdown_table(header, body, ["left", "right", "right", "right", "left"])


def hotspots_table(hotspots: Sequence[dict[str, Any]]) -> str:
    header = ["Function", "own s", "cumulative s", "calls"]
    body = [
        [
            str(h["function"]),
            f"{h['tottime_s']:.3f}",
            f"{h['cumtime_s']:.3f}",
            number(h["calls"]),
        ]
        for h in hotspots
    ]
    return markdown_table(header, body, ["left", "right", "right", "right"])


def machine_lines(machine: dict[str, Any]) -> list[str]:
    return [f"- {key}: {value}" for key, value in machine.items()]


def render(result: BenchResult) -> str:
    """The whole report as Markdown."""
    parts = [
        "Machine and run:",
        "",
        *machine_lines(result.machine),
        "",
        rows_table(result.rows) if result.rows else "(no pipeline rows measured)",
    ]
    if result.micro:
        parts += ["", micro_table(result.micro)]
    for title, entries in result.hotspots.items():
        parts += ["", f"{title} (cProfile, by own time):", "", hotspots_table(entries)]
    if result.problems:
        parts += ["", "Problems:", *(f"- {p}" for p in result.problems)]
    return "\n".join(parts) + "\n"
