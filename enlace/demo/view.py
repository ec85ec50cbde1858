"""The demo's terminal view (rich): rates, decisions, dead letters, latency, the trust matrix
coloured by the classification each pair reaches, the leak, and every metrics endpoint."""

from __future__ import annotations

import math
import time
from collections import Counter

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from enlace.demo.accounting import Verdict
from enlace.demo.runner import DemoState

REACH_STYLE: dict[str | None, str] = {
    "SECRET": "bold green",
    "CONFIDENTIAL": "green",
    "RESTRICTED": "yellow",
    "UNCLASSIFIED": "dim",
    None: "red",
}
REACH_LETTER = {"SECRET": "S", "CONFIDENTIAL": "C", "RESTRICTED": "R", "UNCLASSIFIED": "U"}


def _truncated(score: float) -> str:
    """Two decimals, truncated: 0.5996 shown as 0.60 would contradict its classification."""
    return f"{math.floor(score * 100) / 100:.2f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def header(state: DemoState) -> RenderableType:
    options = state.options
    elapsed = min(state.elapsed(), options.seconds) if state.phase == "exchanging" else None
    bar = ProgressBar(total=options.seconds, completed=elapsed or 0, width=40)
    line = Text.assemble(
        ("Enlace demo ", "bold"),
        (f"[{state.phase}] ", "cyan"),
        f"{elapsed or 0:5.1f}/{options.seconds:.0f}s  seed {options.seed}  "
        f"rate {options.rate:g}/s  ",
    )
    return Group(line, bar)


def flow(state: DemoState) -> RenderableType:
    now = time.monotonic()
    books = state.books
    table = Table(title="flow", expand=True)
    for column in ("", "per second", "total"):
        table.add_column(column, justify="right")
    table.add_row("published", f"{state.published.per_second(now):.1f}", str(state.published.total))
    table.add_row("routed", f"{state.routed.per_second(now):.1f}", str(books.routed))
    table.add_row("delivered", f"{state.delivered.per_second(now):.1f}", str(state.delivered.total))
    table.add_row("publish→delivery p50", "", _ms(state.latency_ms(50)))
    table.add_row("publish→delivery p99", "", _ms(state.latency_ms(99)))
    table.add_row("feedback sent", "", ", ".join(f"{k} {v}" for k, v in
                                                   state.feedback_sent.items()) or "-")  # fmt: skip
    return table


def decisions(state: DemoState) -> RenderableType:
    table = Table(title="decisions and dead letters", expand=True)
    table.add_column("kind")
    table.add_column("count", justify="right")
    counts = state.books.decision_counts()
    for kind, style in (("FULL", "green"), ("TEARLINE", "yellow"), ("WITHHELD", "dim")):
        table.add_row(Text(kind, style=style), str(counts[kind]))
    table.add_row("DUPLICATE (retries)", str(sum(state.books.duplicates_audited.values())))
    again = state.books.rerelease_counts()
    table.add_row(
        Text("RE-RELEASED (trust earned)", style="cyan"),
        f"{again.total()} (FULL {again['FULL']}, TEARLINE {again['TEARLINE']})",
    )
    table.add_row(Text("RECALLED (forwarded)", style="magenta"),
                  str(state.books.recalls_forwarded_total))  # fmt: skip
    for reason, count in sorted(state.dead_reasons.items()):
        table.add_row(Text(f"dead letter: {reason}", style="red"), str(count))
    return table


def matrix(state: DemoState, agencies: tuple[str, ...]) -> RenderableType:
    table = Table(title="trust: row shares with column (score, highest classification reached)")
    table.add_column("O \\ P", style="bold")
    for partner in agencies:
        table.add_column(partner.split("-")[0].upper(), justify="center")
    for originator in agencies:
        cells: list[RenderableType] = [originator]
        for partner in agencies:
            snap = state.scores.get((originator, partner))
            if originator == partner:
                cells.append(Text("·", style="dim"))
            elif snap is None:
                cells.append(Text("…", style="dim"))
            else:
                letter = REACH_LETTER.get(snap.reaches or "", "-")
                style = REACH_STYLE.get(snap.reaches, "")
                cells.append(Text(f"{_truncated(snap.score)}{letter}", style=style))
        table.add_row(*cells)
    return table


def leak_panel(state: DemoState) -> RenderableType:
    leak = state.leak
    if leak is None:
        return Text("")
    snap = state.scores.get((leak.originator, leak.partner))
    lines = [
        f"{leak.originator} → {leak.partner}: current score "
        + (f"{_truncated(snap.score)} ({snap.reaches or 'nothing'})" if snap else "…"),
        "before the leak: " + _counts(leak.before),
        "after the leak:  " + (_counts(leak.after) if leak.leaked_at else "(not yet)"),
    ]
    drop = leak.score_drop()
    if drop is not None:
        lines.append(f"score at decision time fell by {drop:.2f}")
    lines.extend(state.events[-3:])
    return Panel("\n".join(lines), title="the leak", border_style="red" if leak.leaked_at else "")


def lifecycle_panel(state: DemoState) -> RenderableType:
    """The story's recall and the releases when trust is earned (enlace/demo/lifecycle.py)."""
    watch = state.lifecycle
    if watch is None:
        return Text("")
    lines = [*watch.lines(state.books), *watch.events[-4:]]
    return Panel("\n".join(lines), title="bulletin lifecycle: recall, trust earned")


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "-"


def endpoints(state: DemoState) -> RenderableType:
    """Every service's /metrics: the router's URL, then producer/consumer ports per agency."""
    router = [url for name, url in state.endpoints if name == "router"]
    ports: dict[str, dict[str, str]] = {}
    for name, url in state.endpoints:
        role, _, agency = name.partition(" ")
        if agency:
            ports.setdefault(agency, {})[role] = url.rsplit(":", 1)[-1].removesuffix("/metrics")
    grid = Table.grid(padding=(0, 3))
    columns = 4
    for _ in range(columns):
        grid.add_column()
    cells = [
        f"{agency} [dim]p[/]{p.get('producer', '-')} [dim]c[/]{p.get('consumer', '-')}"
        for agency, p in ports.items()
    ]
    for row in range(0, len(cells), columns):
        grid.add_row(*cells[row : row + columns])
    head = Text(
        f"router {router[0] if router else '-'}   producers (p) and consumers (c): "
        "http://127.0.0.1:PORT/metrics"
    )
    return Panel(Group(head, grid), title="metrics endpoints")


def render(state: DemoState, agencies: tuple[str, ...]) -> RenderableType:
    top = Table.grid(expand=True)
    top.add_column()
    top.add_column()
    top.add_row(flow(state), decisions(state))
    return Group(
        header(state),
        top,
        matrix(state, agencies),
        leak_panel(state),
        lifecycle_panel(state),
        endpoints(state),
    )


def summary(state: DemoState, verdict: Verdict) -> RenderableType:
    books = state.books
    table = Table(title="summary")
    table.add_column("")
    table.add_column("value", justify="right")
    counts = books.decision_counts()
    again = books.rerelease_counts()
    rows = [
        ("bulletins published", str(len(books.published))),
        ("routed to every partner", str(books.routed)),
        ("publisher retries audited as duplicates", str(sum(books.duplicates_audited.values()))),
        ("tampered records dead-lettered", f"{len(books.dead_keys)}/{len(books.injected_bad)}"),
        ("decisions FULL / TEARLINE / WITHHELD",
         f"{counts['FULL']} / {counts['TEARLINE']} / {counts['WITHHELD']}"),
        ("releases delivered (exactly once)",
         f"{sum(books.delivered.values())}/{len(books.releases)}"),
        ("  of which re-released when trust was earned",
         (f"{again.total()} (FULL {again['FULL']}, TEARLINE {again['TEARLINE']}; "
          "not new bulletins: no decision changed)")),
        ("recalls: sent / forwarded to partners / received",
         (f"{len(books.recalls)} / {books.recalls_forwarded_total} / "
          f"{len(books.recalls_delivered)}")),
        ("recalls of another agency's bulletin dead-lettered",
         f"{len(books.dead_recalls)}/{len(books.refused_recalls)}"
         + "".join(f" ({r})" for r in sorted(set(books.dead_recalls.values())))),
        ("publish→delivery p50 / p99",
         f"{_ms(state.latency_ms(50))} / {_ms(state.latency_ms(99))}"),
        ("publish failures", str(state.publish_failures)),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    status = (
        Text("every bulletin accounted for, every release delivered once", style="bold green")
        if verdict.ok
        else Text("PROBLEMS: " + "; ".join(verdict.problems), style="bold red")
    )
    return Group(table, leak_panel(state), lifecycle_panel(state), status)
