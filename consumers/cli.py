"""Commands of this package: ``enlace consumer run``, ``enlace inbox [show|quarantine]``,
``enlace feedback`` and ``enlace incident``.

Only these functions read the environment (``ConsumerSettings()``); options override it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from consumers.feedback import originator_of, record_feedback, send_event
from consumers.inbox_view import (
    bulletin_panel,
    gaps_text,
    inbox_table,
    parse_since,
    quarantine_table,
    reverify,
)
from consumers.receipts import (
    FEEDBACK_KINDS,
    INCIDENT_KINDS,
    feedback_event,
    incident_event,
    load_agency_key,
)
from consumers.runner import ConsumerService
from consumers.settings import ConsumerSettings
from consumers.sinks import parse_sink_uris
from consumers.store import BulletinStore, InboxQuery
from consumers.taxii import cli as taxii_cli
from enlace.core.errors import ConfigError
from enlace.core.logs import configure_logging, get_logger
from enlace.core.runtime import serve
from schemas.key_directory import KeyDirectory

consumer_app = typer.Typer(help="The partner consumer service.", no_args_is_help=True)
inbox_app = typer.Typer(help="What this agency has received (its SQLite store).")
log = get_logger(__name__)

AgencyOpt = Annotated[
    str | None, typer.Option("--agency", help="This agency's id (env ENLACE_AGENCY).")
]
KeyOpt = Annotated[
    Path | None,
    typer.Option("--key", help="This agency's private key file (env ENLACE_KEY_FILE)."),
]
KeysOpt = Annotated[
    Path | None, typer.Option("--keys", help="Key directory YAML (env ENLACE_KEYS_FILE).")
]
DbOpt = Annotated[
    Path | None,
    typer.Option("--db", help="SQLite store (default: the agency's store under state_dir)."),
]
NoteOpt = Annotated[str | None, typer.Option("--note", help="Free text for the originator.")]
GAPS_SHOWN = 10  # under the inbox listing; `enlace inbox gaps` shows them all


def _settings(**options: Any) -> ConsumerSettings:
    return ConsumerSettings(**{k: v for k, v in options.items() if v is not None})


def _store_path(settings: ConsumerSettings, db: Path | None) -> Path:
    if db is not None:
        return db
    for spec in parse_sink_uris(settings.sink_uris()):
        if spec.kind == "sqlite":
            return Path(spec.target)
    return settings.default_store()


@consumer_app.command("run")
def run(
    *,
    agency: AgencyOpt = None,
    sink: Annotated[
        list[str] | None,
        typer.Option(
            "--sink",
            help="sqlite:PATH, jsonl:PATH, stix:DIR, misp:DIR or webhook:URL; repeatable "
            "(env ENLACE_SINKS).",
        ),
    ] = None,
    key: KeyOpt = None,
    keys: KeysOpt = None,
    http_port: Annotated[
        int | None, typer.Option(help="Port of /metrics and /health (0: any free port).")
    ] = None,
    topic_prefix: Annotated[
        str | None, typer.Option(help="Namespace prefix of every topic (tests, drills).")
    ] = None,
    no_receipts: Annotated[
        bool, typer.Option("--no-receipts", help="Do not send receipts (read-only drills).")
    ] = False,
    taxii: Annotated[
        str | None,
        typer.Option(
            "--taxii",
            help="Also serve the store as TAXII 2.1 on HOST:PORT (credentials: "
            "ENLACE_TAXII_USERNAME/_PASSWORD/_TOKEN; a misp: sink is served at /misp/).",
        ),
    ] = None,
) -> None:
    """Consume this agency's feed, verify every record, store it, send signed receipts."""
    settings = _settings(
        agency=agency,
        sinks=tuple(sink) if sink else None,
        key_file=key,
        keys_file=keys,
        http_port=http_port,
        topic_prefix=topic_prefix,
        receipts=False if no_receipts else None,
    )
    served = None
    if taxii is not None:
        misp = [s.target for s in parse_sink_uris(settings.sink_uris()) if s.kind == "misp"]
        served = taxii_cli.taxii_settings(
            listen=taxii, db=_store_path(settings, None), misp_feed=misp[0] if misp else None
        )
    configure_logging(settings.log_level, settings.log_format)
    serve(ConsumerService(settings, taxii=served))


@inbox_app.callback(invoke_without_command=True)
def inbox(
    ctx: typer.Context,
    *,
    agency: AgencyOpt = None,
    db: DbOpt = None,
    category: Annotated[str | None, typer.Option(help="e.g. DRUG_TRAFFICKING, CYBER.")] = None,
    origin: Annotated[str | None, typer.Option(help="Originating agency id.")] = None,
    release: Annotated[str | None, typer.Option(help="full or tearline.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Received since: 24h, 7d, or an ISO date.")
    ] = None,
    search: Annotated[str | None, typer.Option(help="Text in title, summary, details.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
) -> None:
    """List received bulletins, newest first."""
    ctx.obj = {"agency": agency, "db": db}
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings(agency=agency)
    path = _store_path(settings, db)
    query = InboxQuery(
        category=category.upper() if category else None,
        origin=origin,
        release=release.lower() if release else None,
        since=parse_since(since, datetime.now(UTC)) if since else None,
        search=search,
        limit=limit,
    )
    store = BulletinStore.open(path, create=False)
    try:
        rows = store.inbox(query)
        total = store.count()
        gaps = store.gap_rows(GAPS_SHOWN)
        gap_count, gap_offsets = store.gap_totals()
    finally:
        store.close()
    console = Console()
    console.print(inbox_table(rows, title=f"{settings.agency} inbox — {len(rows)} of {total}"))
    # Whatever the filters, a feed gap is shown: it is what the inbox cannot list.
    warning = gaps_text(gaps, total=gap_count, missed=gap_offsets)
    if warning is not None:
        console.print(warning, end="")


def _open_for(
    ctx: typer.Context, agency: str | None, db: Path | None
) -> tuple[ConsumerSettings, BulletinStore]:
    parent = ctx.obj or {}
    settings = _settings(agency=agency or parent.get("agency"))
    path = _store_path(settings, db or parent.get("db"))
    return settings, BulletinStore.open(path, create=False)


@inbox_app.command("show")
def inbox_show(
    ctx: typer.Context,
    bulletin_id: Annotated[str, typer.Argument(help="Bulletin id (or a unique prefix).")],
    agency: AgencyOpt = None,
    db: DbOpt = None,
    keys: KeysOpt = None,
) -> None:
    """Print one bulletin in full with its verification status, re-checked against the keys."""
    settings, store = _open_for(ctx, agency, db)
    try:
        matches = [i for i in store.ids() if i.startswith(bulletin_id.lower())]
        if len(matches) != 1:
            raise ConfigError(
                f"{bulletin_id!r} matches {len(matches)} bulletins in {store.path}; "
                "give more of the id"
            )
        stored = store.get(matches[0])
    finally:
        store.close()
    assert stored is not None
    keys_file = keys or settings.keys_file
    directory = KeyDirectory.load(keys_file) if keys_file.exists() else None
    Console().print(bulletin_panel(stored, recheck=reverify(stored, directory)))


@inbox_app.command("quarantine")
def inbox_quarantine(
    ctx: typer.Context,
    agency: AgencyOpt = None,
    db: DbOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
) -> None:
    """Feed records that failed verification or decoding, with the reason."""
    _, store = _open_for(ctx, agency, db)
    try:
        rows = store.quarantine_rows(limit)
    finally:
        store.close()
    Console().print(quarantine_table(rows))


@inbox_app.command("gaps")
def inbox_gaps(
    ctx: typer.Context,
    agency: AgencyOpt = None,
    db: DbOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 1_000,
) -> None:
    """Feed ranges that expired before this agency read them (retention outran the consumer)."""
    _, store = _open_for(ctx, agency, db)
    try:
        gaps = store.gap_rows(limit)
        gap_count, gap_offsets = store.gap_totals()
    finally:
        store.close()
    warning = gaps_text(gaps, total=gap_count, missed=gap_offsets)
    Console().print(warning if warning is not None else "no feed gaps", end="" if warning else "\n")


def feedback(
    bulletin_id: Annotated[str, typer.Argument(help="The bulletin the feedback is about.")],
    verdict: Annotated[str, typer.Argument(help=" | ".join(FEEDBACK_KINDS))],
    *,
    agency: AgencyOpt = None,
    note: NoteOpt = None,
    origin: Annotated[
        str | None, typer.Option(help="The bulletin's originator (default: from the store).")
    ] = None,
    db: DbOpt = None,
    key: KeyOpt = None,
) -> None:
    """Tell a bulletin's originator it was actioned, useful or not useful (signed)."""
    settings = _settings(agency=agency, key_file=key)
    configure_logging(settings.log_level, settings.log_format)
    path = _store_path(settings, db)
    subject = origin or originator_of(bulletin_id, path)
    signing_key = load_agency_key(settings.agency, settings.key_file, settings.key_dir)
    event = feedback_event(
        settings.agency, subject, bulletin_id, verdict, note=note, now=datetime.now(UTC)
    )
    topic = asyncio.run(send_event(settings, event, signing_key))
    record_feedback(event, path)
    typer.echo(f"sent {event.kind.value} {event.event_id} to {subject} via {topic}")


def incident(
    bulletin_id: Annotated[str, typer.Argument(help="The bulletin concerned.")],
    *,
    against: Annotated[str, typer.Option("--against", help="The partner agency reported.")],
    kind: Annotated[str, typer.Option("--kind", help=" | ".join(INCIDENT_KINDS))],
    agency: AgencyOpt = None,
    note: NoteOpt = None,
    key: KeyOpt = None,
) -> None:
    """As an originator, report a partner's mishandling, leak or corruption (signed)."""
    settings = _settings(agency=agency, key_file=key)
    configure_logging(settings.log_level, settings.log_format)
    signing_key = load_agency_key(settings.agency, settings.key_file, settings.key_dir)
    event = incident_event(
        settings.agency, against, kind, bulletin_id, note=note, now=datetime.now(UTC)
    )
    topic = asyncio.run(send_event(settings, event, signing_key))
    typer.echo(f"sent {event.kind.value} {event.event_id} against {against} via {topic}")


def register(app: typer.Typer) -> None:
    """Add this package's commands to ``app``."""
    app.add_typer(consumer_app, name="consumer")
    taxii_cli.register(app)
    app.add_typer(inbox_app, name="inbox")
    app.command("feedback")(feedback)
    app.command("incident")(incident)
