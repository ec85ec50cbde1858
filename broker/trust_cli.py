"""``enlace trust show|explain`` and ``enlace policy check``.

The commands read a policy and a trust history (JSONL, see :mod:`broker.trust_source`), build a
:class:`~broker.ledger.TrustLedger` with :func:`~broker.ledger.build_ledger`, and print what
the pure scoring functions say. The router later feeds the same ledger from live topics.
"""

from __future__ import annotations

import asyncio
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from broker.audit_cli import whatif
from broker.ledger import TrustLedger, build_ledger
from broker.live_trust import live_ledger
from broker.policy import AgreementLevel, Policy
from broker.policy_rules import max_after_leak
from broker.trust import TrustScore
from broker.trust_plot_cli import plot
from broker.trust_source import read_records
from enlace.core.errors import PolicyError
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES, DEFAULT_KEYS, DEFAULT_POLICY, KafkaSettings
from schemas.key_directory import KeyDirectory
from schemas.vocab import Classification

trust_app = typer.Typer(help="Trust scores: who trusts whom, and why.", no_args_is_help=True)
policy_app = typer.Typer(help="The release policy file.", no_args_is_help=True)
console = Console()

STYLE = {
    Classification.SECRET: "bold red",
    Classification.CONFIDENTIAL: "bold blue",
    Classification.RESTRICTED: "yellow",
    Classification.UNCLASSIFIED: "green",
}

PolicyOpt = Annotated[Path, typer.Option("--policy", help="Policy file (YAML).")]
EventsOpt = Annotated[
    Path | None,
    typer.Option("--events", help="Trust history, JSONL (events and releases); none = priors."),
]
RegistryOpt = Annotated[Path, typer.Option("--registry", help="Agency registry (YAML).")]
NowOpt = Annotated[
    str | None, typer.Option("--now", help="Score as of this ISO-8601 time (default: now, UTC).")
]


def _now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO-8601 time: {value!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


LiveOpt = Annotated[
    bool | None,
    typer.Option(
        "--live/--offline",
        help="Rebuild trust from Kafka (receipts and audit topics) as the router does; "
        "default: live when ENLACE_KAFKA_BOOTSTRAP is set and no --events file is given.",
    ),
]
KeysOpt = Annotated[
    Path, typer.Option("--keys", help="Key directory, to verify trust events read live.")
]


def _ledger(
    policy: Policy,
    events: Path | None,
    now: datetime,
    *,
    live: bool | None = None,
    registry: Registry | None = None,
    keys: Path = DEFAULT_KEYS,
) -> TrustLedger:
    if live is None:
        live = events is None and "ENLACE_KAFKA_BOOTSTRAP" in os.environ
    if live:
        if events is not None:
            raise typer.BadParameter("--live reads Kafka; it does not take --events")
        settings = KafkaSettings()
        directory = KeyDirectory.load(keys)
        return asyncio.run(
            live_ledger(settings, registry or Registry.load(settings.agencies_file), policy,
                        directory, now)
        )  # fmt: skip
    if events is None:
        return TrustLedger.for_policy(policy)
    return build_ledger(read_records(events), policy, now)


def _reached(policy: Policy, score: TrustScore) -> Classification | None:
    return policy.reached(score.value)


@trust_app.command("show")
def show(
    originator: Annotated[
        str | None, typer.Option("--originator", help="Only this originator's row.")
    ] = None,
    policy_file: PolicyOpt = DEFAULT_POLICY,
    events: EventsOpt = None,
    registry_file: RegistryOpt = DEFAULT_AGENCIES,
    now: NowOpt = None,
    live: LiveOpt = None,
    keys: KeysOpt = DEFAULT_KEYS,
) -> None:
    """The trust matrix: how much each originator (row) trusts each partner (column)."""
    policy, registry, at = Policy.load(policy_file), Registry.load(registry_file), _now(now)
    ledger = _ledger(policy, events, at, live=live, registry=registry, keys=keys)
    rows = [registry.get(originator).id] if originator else list(registry.ids)
    table = Table(title=f"trust as of {at:%Y-%m-%d %H:%M}Z (row trusts column)")
    table.add_column("originator", style="bold")
    for partner in registry.ids:
        table.add_column(partner, justify="right")
    for o in rows:
        cells: list[Text | str] = [o]
        for p in registry.ids:
            if o == p:
                cells.append(Text("-", style="dim"))
                continue
            if policy.agreement(o, p).level is AgreementLevel.NONE:
                cells.append(Text("none", style="dim"))
                continue
            score = ledger.score(o, p, policy, at)
            reached = _reached(policy, score)
            mark = reached.value[0] if reached else "-"
            style = STYLE[reached] if reached else "dim"
            # Truncated, not rounded: a 0.5996 shown as "0.60" would contradict its mark.
            shown = math.floor(score.value * 100) / 100
            cells.append(Text(f"{shown:.2f} {mark}", style=style))
        table.add_row(*cells)
    console.print(table)
    legend = Text("highest classification in full: ")
    for classification in reversed(Classification):
        legend.append(
            f"{classification.value[0]}={classification.value} (>= "
            f"{policy.threshold(classification):.2f})  ",
            style=STYLE[classification],
        )
    console.print(legend)


@trust_app.command("explain")
def explain(
    originator: Annotated[str, typer.Argument(help="Originator O (who trusts).")],
    partner: Annotated[str, typer.Argument(help="Partner P (who is trusted).")],
    *,
    policy_file: PolicyOpt = DEFAULT_POLICY,
    events: EventsOpt = None,
    registry_file: RegistryOpt = DEFAULT_AGENCIES,
    now: NowOpt = None,
    live: LiveOpt = None,
    keys: KeysOpt = DEFAULT_KEYS,
) -> None:
    """P's score in O's eyes, its factors, and the highest classification P receives from O."""
    policy, registry, at = Policy.load(policy_file), Registry.load(registry_file), _now(now)
    o, p = registry.get(originator), registry.get(partner)
    if o.id == p.id:
        raise typer.BadParameter("originator and partner are the same agency")
    ledger = _ledger(policy, events, at, live=live, registry=registry, keys=keys)
    score = ledger.score(o.id, p.id, policy, at)
    agreement = policy.agreement(o.id, p.id)
    reached = _reached(policy, score)
    console.print(
        f"[bold]{o.id}[/bold] -> [bold]{p.id}[/bold] as of {at:%Y-%m-%d %H:%M}Z: score "
        f"[bold]{score.value:.3f}[/bold] = alpha {score.alpha:.2f} / (alpha {score.alpha:.2f} "
        f"+ beta {score.beta:.2f})"
    )
    console.print(
        f"agreement: {agreement.level.value} ({agreement.source}); shares "
        f"{', '.join(sorted(c.value for c in agreement.categories)) or 'no category'}"
    )
    table = Table("factor", "value", "explanation")
    for factor in score.factors:
        table.add_row(factor.name, f"{factor.value:+.3f}", factor.note)
    console.print(table)
    override = policy.override(o.id, p.id, p.country)
    if override is not None:
        what = (
            "never shares" if override.kind == "never" else f"always allows up to {override.up_to}"
        )
        console.print(f"override: {o.id} {what} with {p.id} ({override.source})")
    if not agreement.categories or (override is not None and override.kind == "never"):
        console.print(f"[bold]{p.id} receives nothing from {o.id}[/bold]")
    elif reached is None:
        console.print(f"[bold]{p.id} receives nothing from {o.id} by score[/bold]")
    else:
        console.print(
            f"{p.id} receives from {o.id} in full up to [{STYLE[reached]}]{reached.value}[/] "
            f"(threshold {policy.threshold(reached):.2f}); above that, the tearline when it is "
            f"classified {reached.value} or lower"
        )


@policy_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="Policy file to validate.")],
    registry_file: Annotated[
        Path | None, typer.Option("--registry", help="Also check agency ids against a registry.")
    ] = None,
) -> None:
    """Validate a policy file; errors name the key, its line and the rule broken."""
    policy = Policy.load(file)
    if registry_file is not None:
        registry = Registry.load(registry_file)
        unknown = sorted(policy.agencies() - set(registry.ids))
        if unknown:
            raise PolicyError(
                f"policy {file} names agencies missing from {registry_file}: {', '.join(unknown)}"
            )
    level, kept = max_after_leak(policy)
    secret = policy.threshold(Classification.SECRET)
    console.print(
        f"[green]policy {file} is valid[/green]: {len(policy.agreements)} agreements "
        f"({len(policy.index.pairs)} directed pairs), default '{policy.default_agreement.value}', "
        f"{len(policy.overrides)} originator override(s)"
    )
    for classification in Classification:
        console.print(f"  threshold {classification.value}: {policy.threshold(classification)}")
    console.print(
        f"  one leak keeps at most {kept:.3f} (a '{level}' partner with maximal evidence) "
        f"< SECRET {secret}"
    )


def register(app: typer.Typer) -> None:
    """Add ``trust`` and ``policy`` command groups to ``app``."""
    trust_app.command("plot")(plot)
    app.add_typer(trust_app, name="trust")
    policy_app.command("whatif")(whatif)
    app.add_typer(policy_app, name="policy")
