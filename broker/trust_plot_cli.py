"""``enlace trust plot O P --events FILE --out pair.png``: a pair's score over time as a picture.

Registered on ``enlace trust`` by :mod:`broker.trust_cli`. The history is read here (the I/O
edge), the series is :func:`broker.trust_series.series_from_records`, the picture
:func:`broker.trust_plot.render`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from broker.ledger import ObservedEvent, ObservedRelease
from broker.policy import Policy
from broker.trust_plot import image_format, render
from broker.trust_series import Series, series_from_records
from broker.trust_source import read_records
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES, DEFAULT_POLICY

DEFAULT_DAYS = 90


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
        bool, typer.Option("--live", help="Read the history from Kafka (not available yet).")
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
) -> None:
    """P's score in O's eyes over time, with the classification thresholds, incidents,
    feedback and late and missing receipts marked (needs matplotlib: the plot extra)."""
    if live == (events is not None):
        raise typer.BadParameter("give --events FILE or --live (one of them)")
    if live:
        raise typer.BadParameter("--live is not available yet: export the history to --events")
    image_format(out)  # refuse a bad suffix before reading anything
    policy, registry = Policy.load(policy_file), Registry.load(registry_file)
    o, p = registry.get(originator).id, registry.get(partner).id
    if o == p:
        raise typer.BadParameter("originator and partner are the same agency")
    assert events is not None  # checked above
    records = read_records(events)
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


def summary(series: Series, out: Path) -> str:
    first, last = series.samples[0], series.samples[-1]
    low = min(series.samples, key=lambda s: s.score)
    return (
        f"{series.originator} -> {series.partner}, {series.since:%Y-%m-%d %H:%M}Z to "
        f"{series.until:%Y-%m-%d %H:%M}Z: score {first.score:.3f} -> {last.score:.3f} "
        f"({last.reached.value if last.reached else 'nothing'}), lowest {low.score:.3f} on "
        f"{low.at:%Y-%m-%d}; {len(series.marks)} marked events; wrote {out}"
    )
