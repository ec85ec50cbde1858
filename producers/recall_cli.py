"""``enlace recall``: an originator withdraws a bulletin it published (producers/recall.py).

Prints what was published (recall id, bulletin id, topic, partition, offset) on stdout, or one
``error: ...`` line on stderr. Exit codes as ``enlace produce``'s: 0 published; 1 refused
before sending (bad bulletin id or reason, settings, a key that is not the agency's);
3 not acknowledged (Kafka unreachable or too slow: look for it on the topic, then re-run).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError as PydanticValidationError

from enlace.core.errors import (
    BrokerError,
    ClockSkewRefused,
    ConfigError,
    EnlaceError,
    SignatureError,
    ValidationError,
)
from enlace.core.logs import configure_logging
from producers.produce import EXIT_OK, EXIT_REJECTED, EXIT_UNACKNOWLEDGED
from producers.publisher import Publisher
from producers.recall import MAX_REASON, RecallReceipt
from producers.settings import PublisherSettings
from schemas.models import problems_of


def settings_of(**options: Any) -> PublisherSettings:
    """The publisher's settings from the environment and the given options, or one
    :class:`ConfigError` line naming what is missing or wrong (no pydantic dump)."""
    given = {name: value for name, value in options.items() if value is not None}
    try:
        return PublisherSettings(**given)
    except PydanticValidationError as exc:
        listing = "; ".join(
            f"{path}: {rule}" + (" (--agency or ENLACE_AGENCY)" if path == "agency" else "")
            for path, rule in problems_of(exc)
        )
        raise ConfigError(f"publisher settings are invalid: {listing}") from exc


def exit_code_of(error: EnlaceError) -> int:
    """Refused before sending (fix the input) or not acknowledged (the broker: re-run)."""
    if isinstance(error, BrokerError):
        return EXIT_UNACKNOWLEDGED
    return EXIT_REJECTED


async def publish_recall(
    settings: PublisherSettings, bulletin_id: str, reason: str
) -> RecallReceipt:
    """Load the key and registry and validate and sign the recall (refusing a bad id or
    reason, or a key of another agency, before any I/O), then connect, publish, disconnect."""
    publisher = Publisher(settings)
    publisher.load()
    recall, sealed = publisher.seal_recall(bulletin_id, reason)
    async with publisher:
        return await publisher.send_recall(recall, sealed)


def recall(
    bulletin_id: Annotated[
        str, typer.Argument(help="Id (UUID) of a bulletin this agency published.")
    ],
    *,
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help=f"Why it is withdrawn (1-{MAX_REASON} characters, one line); every partner "
            "that received the bulletin reads it.",
        ),
    ],
    agency: Annotated[
        str | None, typer.Option("--agency", help="Originating agency id (env ENLACE_AGENCY).")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="The agency's private key file from `enlace keys generate` "
            "(env ENLACE_PRODUCER_KEY_FILE).",
        ),
    ] = None,
    keys: Annotated[
        Path | None,
        typer.Option(
            "--keys",
            help="Key directory: refuse to send unless the own key is listed there and valid, "
            "as the router checks it (env ENLACE_KEYS_FILE).",
        ),
    ] = None,
    topic: Annotated[
        str | None, typer.Option("--topic", help="Override the outbound topic (tests, drills).")
    ] = None,
) -> None:
    """Recall (withdraw) a bulletin: publish a recall signed with the agency's key on its
    outbound topic, on the bulletin's own partition, after the bulletin.

    Exit code: 0 published; 1 refused before sending (bulletin id not a
    UUID, empty or too long reason, a key that is not the agency's, bad
    settings); 3 not acknowledged by the broker (unreachable or too slow;
    it may still land: look before re-running, a second recall has a new id).

    The router accepts a recall only from the bulletin's originator and only
    for a bulletin it routed, and forwards it only to the partners that
    received the bulletin; otherwise it dead-letters it (recall_unknown,
    recall_not_originator). The publisher cannot check either: "published"
    means Kafka stored the recall, not that the router accepted it.
    """
    try:
        settings = settings_of(agency=agency, producer_key_file=key, keys_file=keys, topic=topic)
    except ConfigError as exc:
        _fail(exc)
    # A one-shot command reports on stdout; the publisher's service logs (started, stopped,
    # "publishing in clear": a recall is never sealed, the router must read it) would only
    # confuse. ENLACE_LOG_LEVEL=DEBUG shows them.
    verbose = settings.log_level.upper() == "DEBUG"
    configure_logging("DEBUG" if verbose else "ERROR", settings.log_format)
    if not verbose:
        # aiokafka logs each failed connection attempt through the standard library; the
        # error line below says the same once.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        receipt = asyncio.run(publish_recall(settings, bulletin_id, reason))
    except (ValidationError, ConfigError, SignatureError, BrokerError, ClockSkewRefused) as exc:
        _fail(exc)
    typer.echo(receipt.describe())
    typer.echo(
        "the router forwards it to the partners that received the bulletin, or dead-letters "
        "it (recall_unknown, recall_not_originator)"
    )
    raise typer.Exit(EXIT_OK)


def _fail(error: EnlaceError) -> NoReturn:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(exit_code_of(error))


def register(app: typer.Typer) -> None:
    """Add ``enlace recall`` to ``app``."""
    app.command("recall")(recall)


__all__ = ["exit_code_of", "publish_recall", "register", "settings_of"]
