"""``enlace trust plot O P (--events FILE | --live) --out pair.png``: a pair's score over time as
a picture.

Registered on ``enlace trust`` by :mod:`broker.trust_cli`. The history is read here (the I/O
edge): from a history file (:func:`broker.trust_source.read_records`) or, ``--live``, from Kafka
(:func:`broker.trust_history.read_history`: every receipts topic and the audit topic from the
beginning, folded as the router folds them); either way the same records go to the series,
:func:`broker.trust_series.series_from_records`, and the picture is
:func:`broker.trust_plot.render`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from broker.ledger import ObservedEvent, ObservedRelease
from broker.policy import Policy
from broker.trust_history import DEFAULT_TIMEOUT_S, read_history, write_records
from broker.trust_plot import image_format, render
from broker.trust_series import Series, series_from_records
from broker.trust_source import read_records
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES, DEFAULT_KEYS, DEFAULT_POLICY, KafkaSettings
from schemas.key_directory import KeyDirectory

DEFAULT_DAYS = 90
err = Console(stderr=True)


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{option}: not an ISO-8601 time: {value!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def time_range(
    records: list[ObservedEvent | ObservedRelease],
    pair: tuple[str, str],
    *,
    since: datetime | None,
    until: datetime | None,
    days: float | None,
    now: datetime,
) -> tuple[datetime, datetime]:
    """``[since, until]``: ``until`` defaults to now; ``since`` to ``until - days``, else the
    pair's first record, else DEFAULT_DAYS before ``until``."""
    if days is not None and since is not None:
        raise typer.BadParameter("give --since or --days, not both")
    end = until or now
    if days is not None:
        return end - timedelta(days=days), end
    if since is not None:
        if since >= end:
            raise typer.BadParameter(f"--since {since} is not before --until {end}")
        return since, end
    first = min((_when(r) for r in records if _of_pair(r, pair) and _when(r) < end), default=None)
    return (first or end - timedelta(days=DEFAULT_DAYS)), end


def _when(record: ObservedEvent | ObservedRelease) -> datetime:
    return record.released_at if isinstance(record, ObservedRelease) else record.occurred_at


def _of_pair(record: ObservedEvent | ObservedRelease, pair: tuple[str, str]) -> bool:
    if isinstance(record, ObservedRelease):
        return {record.originator, record.partner} == set(pair)
    return {record.reporter, record.subject} == set(pair)


def plot(
    originator: Annotated[str, typer.Argument(help="Originator O (who trusts).")],
    partner: Annotated[str, typer.Argument(help="Partner P (who is trusted).")],
    *,
    out: Annotated[Path, typer.Option("--out", help="Picture to write: .png, or .svg.")],
    events: Annotated[
        Path | None, typer.Option("--events", help="Trust history, JSONL (events and releases).")
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Read the history from Kafka: every receipts topic and the audit topic from "
            "the beginning, verified and judged as the router does (ENLACE_KAFKA_*).",
        ),
    ] = False,
    since: Annotated[str | None, typer.Option("--since", help="From (ISO-8601, UTC).")] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="To (ISO-8601, UTC; default: now).")
    ] = None,
    days: Annotated[
        float | None, typer.Option("--days", help="The last N days up to --until.", min=0.01)
    ] = None,
    policy_file: Annotated[Path, typer.Option("--policy", help="Policy file (YAML).")] = (
        DEFAULT_POLICY
    ),
    registry_file: Annotated[
        Path, typer.Option("--registry", help="Agency registry (YAML).")
    ] = DEFAULT_AGENCIES,
    keys: Annotated[
        Path, typer.Option("--keys", help="Key directory, to verify trust events read live.")
    ] = DEFAULT_KEYS,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", help="Seconds the live read may take (Kafka down: an error).", min=0.1
        ),
    ] = DEFAULT_TIMEOUT_S,
    save_events: Annotated[
        Path | None,
        typer.Option(
            "--save-events", help="With --live: also write the pair's history read, for --events."
        ),
    ] = None,
) -> None:
    """P's score in O's eyes over time, with the classification thresholds, incidents,
    feedback and late and missing receipts marked (needs matplotlib: the plot extra)."""
    if live == (events is not None):
        raise typer.BadParameter("give --events FILE or --live (one of them)")
    if save_events is not None and not live:
        raise typer.BadParameter("--save-events writes what --live read; give --live")
    image_format(out)  # refuse a bad suffix before reading anything
    policy, registry = Policy.load(policy_file), Registry.load(registry_file)
    o, p = registry.get(originator).id, registry.get(partner).id
    if o == p:
        raise typer.BadParameter("originator and partner are the same agency")
    if events is not None:
        records = read_records(events)
    else:
        records = _live_records(policy, registry, KeyDirectory.load(keys), (o, p), timeout)
        if save_events is not None:
            write_records(save_events, records)
    start, end = time_range(
        records,
        (o, p),
        since=_time(since, "--since"),
        until=_time(until, "--until"),
        days=days,
        now=datetime.now(UTC),
    )
    series = series_from_records(records, policy, o, p, since=start, until=end)
    render(series, out)
    typer.echo(summary(series, out))  # one line, unwrapped: greppable


def _live_records(
    policy: Policy,
    registry: Registry,
    keys: KeyDirectory,
    pair: tuple[str, str],
    timeout: float,
) -> list[ObservedEvent | ObservedRelease]:
    """The pair's history from Kafka, with a progress bar on a terminal (stderr)."""
    bar = Progress(
        TextColumn("reading the trust history"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task("history", total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        history = asyncio.run(
            read_history(
                KafkaSettings(), registry, policy, keys, pair=pair, timeout=timeout,
                on_progress=update,
            )
        )  # fmt: skip
    if history.rejected:
        err.print(
            f"note: {history.rejected} refused trust event(s) in the history (dead letters, of any "
            "pair) did not count"
        )
    return history.records


def summary(series: Series, out: Path) -> str:
    first, last = series.samples[0], series.samples[-1]
    low = min(series.samples, key=lambda s: s.score)
    return (
        f"{series.originator} -> {series.partner}, {series.since:%Y-%m-%d %H:%M}Z to "
        f"{series.until:%Y-%m-%d %H:%M}Z: score {first.score:.3f} -> {last.score:.3f} "
        f"({last.reached.value if last.reached else 'nothing'}), lowest {low.score:.3f} on "
        f"{low.at:%Y-%m-%d}; {len(series.marks)} marked events; wrote {out}"
    )
