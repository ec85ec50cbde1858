"""``enlace audit why|list`` and ``enlace policy whatif``: operators read the audit trail.

I/O at the edges only: :mod:`broker.audit_read` reads Kafka, :mod:`broker.audit_query` and
:mod:`broker.whatif` decide what to say, this module prints it (rich tables on a terminal,
``--format json|csv`` for machines: one row per decision, on stdout; progress and notes on
stderr so a pipe gets only the data).

The bulletin facts a decision read (category, classifications, TLP...) come from the audit
record itself when it is version 3, so ``why`` and ``whatif`` on such records need only
``enlace.audit`` (the operator's principal reads it). Only for older records do they read the
bulletin's outbound record (router principal only, within outbound retention).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from broker import audit_query as aq
from broker.audit_read import DEFAULT_TIMEOUT_S, Subjects, read_audit, read_subjects
from broker.policy import Policy
from broker.release import ReleaseSubject
from broker.whatif import Redecided, WhatIfReport, needs_outbound, what_if
from enlace.core.errors import EnlaceError, KafkaUnavailable
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_POLICY, KafkaSettings

audit_app = typer.Typer(
    help="The audit trail: every release decision and why.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)
# Reading an old record's bulletin facts (outbound topic, router principal only) must not
# hold `why` up.
FACTS_TIMEOUT_S = 15.0


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


FormatOpt = Annotated[Format, typer.Option("--format", help="table (rich), json or csv.")]
PolicyOpt = Annotated[
    Path, typer.Option("--policy", help="Policy in force (thresholds named in explanations).")
]
SinceOpt = Annotated[
    str | None,
    typer.Option("--since", help="Only decisions from this long ago (7d, 12h, 30m) or ISO time."),
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds before an unreachable Kafka is an error.")
]
FactsOpt = Annotated[
    bool,
    typer.Option(
        "--bulletin-facts/--no-bulletin-facts",
        help="For audit records older than version 3 (which do not carry the bulletin's "
        "facts), read the classification and category from the outbound record (needs the "
        "router's principal; without them explanations name no classification).",
    ),
]


def _since(value: str | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    try:
        return aq.parse_since(value, now)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from exc


@contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on a terminal (stderr), nothing otherwise."""
    bar = Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task(what, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


def _decisions(
    settings: KafkaSettings, since: datetime | None, timeout: float
) -> list[aq.AuditedDecision]:
    with _progress("reading the audit trail") as update:
        found = asyncio.run(read_audit(settings, since=since, timeout=timeout, on_progress=update))
    if found.undecodable:
        err.print(f"note: {found.undecodable} audit record(s) could not be decoded (skipped)")
    return aq.decisions_of(found.records)


def _subjects(settings: KafkaSettings, rows: list[aq.AuditedDecision], timeout: float) -> Subjects:
    """The outbound facts of ``rows`` (those of records older than version 3); no read at all
    when there are none."""
    if not rows:
        return Subjects()
    with _progress("reading the bulletins' facts") as update:
        return asyncio.run(read_subjects(settings, rows, timeout=timeout, on_progress=update))


def _print_rows(
    rows: list[aq.AuditedDecision], policy: Policy, subjects: Subjects, fmt: Format, title: str
) -> None:
    if fmt is Format.JSON:
        print(aq.render_json(rows, policy, subjects.found))
        return
    if fmt is Format.CSV:
        print(aq.render_csv(rows, policy, subjects.found), end="")
        return
    table = Table(title=title)
    for column in ("decided", "bulletin", "origin -> partner", "decision", "rule", "score",
                   "reached"):  # fmt: skip
        table.add_column(column, justify="right" if column == "score" else "left")
    for r in rows:
        got = aq.reached(policy, r)
        table.add_row(
            f"{r.decided_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            r.bulletin_id[:8],
            f"{r.origin} -> {r.partner}",
            r.decision,
            r.rule,
            "" if r.score is None else f"{r.score:.3f}",
            got.value if got else "",
        )
    out.print(table)


def _facts_line(subject: ReleaseSubject) -> str:
    """``DRUG_TRAFFICKING, CONFIDENTIAL (tearline UNCLASSIFIED), TLP:AMBER``, then
    releasable_to, caveats and valid_until when the bulletin has them."""
    head = (
        f"{subject.category.value}, {subject.classification.value} (tearline "
        f"{subject.tearline_classification.value}), TLP:{subject.tlp.value}"
    )
    parts = [head]
    if subject.releasable_to:
        parts.append(f"releasable to {', '.join(sorted(subject.releasable_to))}")
    if subject.caveats:
        parts.append(" ".join(sorted(c.value for c in subject.caveats)))
    if subject.valid_until is not None:
        parts.append(f"valid until {subject.valid_until.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z")
    return "; ".join(parts)


@audit_app.command("why")
def why(
    bulletin: Annotated[str, typer.Argument(help="Bulletin id (UUID).")],
    partner: Annotated[str | None, typer.Option("--partner", help="Only this partner.")] = None,
    since: SinceOpt = None,
    fmt: FormatOpt = Format.TABLE,
    policy_file: PolicyOpt = DEFAULT_POLICY,
    facts: FactsOpt = True,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Every decision on one bulletin (each partner, or one), in words."""
    settings, policy = KafkaSettings(), Policy.load(policy_file)
    rows = aq.select(
        _decisions(settings, _since(since, datetime.now(UTC)), timeout),
        aq.Query(bulletin=bulletin, partner=partner),
    )
    if not rows:
        whom = f" for {partner}" if partner else ""
        err.print(f"[red]error:[/red] bulletin {bulletin} has no decision{whom} in the audit trail")
        raise typer.Exit(1)
    subjects = Subjects()
    old = aq.without_facts(rows)  # records before version 3 carry no facts of their own
    if facts and old:
        try:
            subjects = _subjects(settings, old, min(timeout, FACTS_TIMEOUT_S))
        except KafkaUnavailable as exc:
            subjects.missing[rows[0].bulletin_id] = str(exc)
    if fmt is not Format.TABLE:
        _print_rows(rows, policy, subjects, fmt, "")
        return
    head = rows[0]
    subject = head.subject or subjects.found.get(head.bulletin_id)
    out.print(
        f"[bold]{head.bulletin_id}[/bold] from [bold]{head.origin}[/bold], decided "
        f"{head.decided_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z "
        f"({head.source_topic}/{head.source_partition}@{head.source_offset})"
    )
    if subject is not None:
        out.print(_facts_line(subject))
    elif facts and head.bulletin_id in subjects.missing:
        out.print(f"[dim]bulletin facts unavailable: {subjects.missing[head.bulletin_id]}[/dim]")
    for r in rows:
        out.print(f"  [bold]{r.partner}[/bold]: {aq.in_words(r, policy, subject)}")


@audit_app.command("list")
def list_(
    partner: Annotated[str | None, typer.Option("--partner", help="Only this partner.")] = None,
    since: SinceOpt = None,
    decision: Annotated[
        str | None, typer.Option("--decision", help="FULL, TEARLINE, WITHHELD or DUPLICATE.")
    ] = None,
    origin: Annotated[str | None, typer.Option("--origin", help="Only this originator.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=0, help="At most this many (the newest).")
    ] = None,
    fmt: FormatOpt = Format.TABLE,
    policy_file: PolicyOpt = DEFAULT_POLICY,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Decisions matching the filters, oldest first."""
    settings, policy, now = KafkaSettings(), Policy.load(policy_file), datetime.now(UTC)
    start = _since(since, now)
    query = aq.Query(partner=partner, origin=origin, decision=decision, since=start, limit=limit)
    rows = aq.select(_decisions(settings, start, timeout), query)
    _print_rows(rows, policy, Subjects(), fmt, f"{len(rows)} decision(s)")


CHANGE_COLUMNS = (
    "bulletin_id", "origin", "partner", "classification", "decided_at", "score", "was",
    "was_rule", "would_be", "would_be_rule", "gained", "reason", "score_from",
)  # fmt: skip


def _transition(t: tuple[str, str]) -> str:
    return f"{t[0].lower()} -> {t[1].lower()}"


def _change_dict(c: Redecided) -> dict[str, Any]:
    d = c.decision
    return {
        "bulletin_id": d.bulletin_id,
        "origin": d.origin,
        "partner": d.partner,
        "classification": c.classification.value if c.classification else None,
        "decided_at": d.decided_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "score": d.score,
        "was": d.decision,
        "was_rule": d.rule,
        "would_be": c.kind,
        "would_be_rule": c.rule,
        "gained": c.gained,
        "reason": c.reason,
        "score_from": c.score_from,
    }


def _print_undecided(report: WhatIfReport) -> None:
    if not report.undecided:
        return
    reasons: dict[str, int] = {}
    for u in report.undecided:
        reasons[u.why] = reasons.get(u.why, 0) + 1
    ranked = sorted(reasons.items(), key=lambda kv: -kv[1])
    for why, n in ranked[:5]:
        out.print(f"[yellow]undecided[/yellow] {n}: {why}")
    if len(ranked) > 5:
        out.print(f"[yellow]undecided[/yellow] {sum(n for _, n in ranked[5:])}: other reasons")


def _print_report(report: WhatIfReport, fmt: Format, title: str) -> None:
    if fmt is Format.JSON:
        data = {
            "considered": report.considered,
            "unchanged": report.unchanged,
            "changed": len(report.changes),
            "gained": report.gained(),
            "lost": report.lost(),
            "changes": [_change_dict(c) for c in report.changes],
            "undecided": [
                {"bulletin_id": u.decision.bulletin_id, "partner": u.decision.partner, "why": u.why}
                for u in report.undecided
            ],
            "not_reproduced": len(report.not_reproduced),
            "caveats": report.caveats,
        }
        print(json.dumps(data, indent=2))
        return
    if fmt is Format.CSV:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CHANGE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_change_dict(c) for c in report.changes)
        print(buffer.getvalue(), end="")
        return
    out.print(
        f"[bold]{title}[/bold]: {report.considered} decision(s) re-decided, "
        f"{len(report.changes)} would change ([green]{report.gained()} gained[/green], "
        f"[red]{report.lost()} lost[/red]), {len(report.undecided)} undecided"
    )
    if report.changes:
        pairs = Table("originator -> partner", "change", "count", "examples", title="by pair")
        for pair, counts in report.by_pair().items():
            for t, n in sorted(counts.items()):
                examples = ", ".join(b[:8] for b in report.examples(pair, t))
                pairs.add_row(f"{pair[0]} -> {pair[1]}", _transition(t), str(n), examples)
        out.print(pairs)
        levels = Table("classification", "change", "count", title="by classification")
        for name, counts in report.by_classification().items():
            for t, n in sorted(counts.items()):
                levels.add_row(name, _transition(t), str(n))
        out.print(levels)
    _print_undecided(report)
    if report.not_reproduced:
        out.print(
            f"[yellow]note[/yellow]: the current policy does not reproduce "
            f"{len(report.not_reproduced)} recorded decision(s) (the policy changed within the "
            "window?); changes are measured against what was recorded"
        )
    for caveat in report.caveats:
        out.print(f"[yellow]caveat[/yellow]: {caveat}")


def whatif(
    new_file: Annotated[
        Path, typer.Argument(help="The proposed policy (YAML).", metavar="NEW.yaml")
    ],
    since: Annotated[
        str, typer.Option("--since", help="Recorded decisions from this long ago (7d) or time.")
    ] = "7d",
    fmt: FormatOpt = Format.TABLE,
    policy_file: Annotated[
        Path, typer.Option("--policy", help="The policy in force (what was recorded).")
    ] = DEFAULT_POLICY,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Re-decide the window's recorded bulletins under NEW.yaml, with the scores they were
    decided with; exit 0 if nothing would change, 1 if something would, 2 on error."""
    try:
        settings, now = KafkaSettings(), datetime.now(UTC)
        old, new = Policy.load(policy_file), Policy.load(new_file)
        registry = Registry.load(settings.agencies_file)
        rows = _decisions(settings, _since(since, now), timeout)
        # Version-3 records carry their bulletin's facts: only older ones need outbound.
        subjects = _subjects(settings, needs_outbound(rows), timeout)
        countries = {a.id: a.country for a in registry}
        report = what_if(
            rows, subjects.found, countries, old, new, missing_subject=subjects.missing
        )
    except EnlaceError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    _print_report(report, fmt, f"{new_file} against {policy_file}, since {since}")
    raise typer.Exit(1 if report.changed else 0)


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group to ``app``."""
    app.add_typer(audit_app, name="audit")
