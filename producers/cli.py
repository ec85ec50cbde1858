"""Commands of this package: ``enlace produce`` and ``enlace publisher run|synth``.

Only these functions read the environment (``PublisherSettings()``); options override it.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from enlace.core.logs import configure_logging
from enlace.core.registry import Registry
from enlace.core.runtime import serve
from enlace.core.settings import KafkaSettings
from producers import recall_cli
from producers.inputs import InputFormat
from producers.produce import EXIT_UNACKNOWLEDGED, produce_bytes
from producers.service import PublisherService
from producers.settings import OnError, PublisherSettings
from producers.synthetic import BulletinGenerator, to_json_line

publisher_app = typer.Typer(help="The country producer service.", no_args_is_help=True)

AgencyOpt = Annotated[
    str | None, typer.Option("--agency", help="Publishing agency id (env ENLACE_AGENCY).")
]
KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key", help="Private key file from `enlace keys generate` (env ENLACE_PRODUCER_KEY_FILE)."
    ),
]
KeysOpt = Annotated[
    Path | None,
    typer.Option(
        "--keys",
        help="Key directory: the partners' keys to seal for (wire format 2) and a self-check of "
        "the own key (env ENLACE_KEYS_FILE). Without it, bulletins are signed but in clear.",
    ),
]
TopicOpt = Annotated[
    str | None, typer.Option("--topic", help="Override the outbound topic (tests, drills).")
]


def _settings(**options: Any) -> PublisherSettings:
    return PublisherSettings(
        **{name: value for name, value in options.items() if value is not None}
    )


def produce(
    source: Annotated[
        str, typer.Argument(help="JSON, JSONL, STIX 2.1 or MISP file, or - for stdin.")
    ],
    *,
    agency: AgencyOpt = None,
    key: KeyOpt = None,
    keys: KeysOpt = None,
    topic: TopicOpt = None,
    on_error: Annotated[
        OnError | None,
        typer.Option(
            "--on-error",
            help="Invalid bulletins: skip them and publish the rest, or abort and publish "
            "nothing (default; env ENLACE_ON_ERROR).",
        ),
    ] = None,
    fmt: Annotated[
        InputFormat,
        typer.Option(
            "--format",
            help="auto (JSON or JSON Lines by content and name; a STIX bundle as stix), json, "
            "jsonl, stix (a STIX 2.1 bundle's reports, e.g. an OpenCTI export), misp (MISP "
            "events).",
        ),
    ] = "auto",
    random_ids: Annotated[
        bool,
        typer.Option(
            "--random-ids",
            help="Give id-less bulletins random ids (default: derived from the input's content "
            "and position, so re-running the same input deduplicates at the router).",
        ),
    ] = False,
) -> None:
    """Publish the bulletins of a JSON (object or array) or JSON Lines file, a STIX 2.1
    bundle or MISP events, or stdin. What a STIX or MISP reader leaves out of a bulletin that
    still publishes is printed as a warning.

    Exit code: 0 all published; 1 something was rejected (or the run aborted);
    3 something was not acknowledged by the broker in time (safe to re-run).
    """
    settings = _settings(
        agency=agency, producer_key_file=key, keys_file=keys, topic=topic, on_error=on_error
    )
    configure_logging(settings.log_level, settings.log_format)
    if source == "-":
        data, name = sys.stdin.buffer.read(), ""
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            typer.secho(f"error: cannot read {source}: {exc.strerror}", fg="red", err=True)
            raise typer.Exit(2) from exc
        name = path.name
    code = asyncio.run(produce_bytes(settings, data, name=name, fmt=fmt, stable_ids=not random_ids))
    raise typer.Exit(code)


@publisher_app.command("run")
def run(
    *,
    agency: AgencyOpt = None,
    watch: Annotated[
        Path | None, typer.Option("--watch", help="Drop folder to publish (env ENLACE_WATCH_DIR).")
    ] = None,
    key: KeyOpt = None,
    keys: KeysOpt = None,
    topic: TopicOpt = None,
    http_host: Annotated[str | None, typer.Option(help="HTTP bind address.")] = None,
    http_port: Annotated[
        int | None, typer.Option(help="HTTP port of /bulletins, /metrics, /health (0: any).")
    ] = None,
    intake: Annotated[
        bool | None, typer.Option("--intake/--no-intake", help="Serve POST /bulletins.")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File holding the intake's bearer token (env ENLACE_HTTP_TOKEN_FILE; or set "
            "ENLACE_HTTP_TOKEN). Required unless --insecure-no-auth.",
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Serve POST /bulletins without a token; refused unless --http-host is a "
            "loopback address (env ENLACE_HTTP_INSECURE_NO_AUTH).",
        ),
    ] = False,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert", help="PEM certificate chain: serve HTTPS (env ENLACE_HTTP_TLS_CERT)."
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", help="PEM key of --tls-cert (env ENLACE_HTTP_TLS_KEY)."),
    ] = None,
) -> None:
    """Publish every *.json/*.jsonl dropped into a folder, and serve POST /bulletins."""
    settings = _settings(
        agency=agency,
        watch_dir=watch,
        producer_key_file=key,
        keys_file=keys,
        topic=topic,
        http_host=http_host,
        http_port=http_port,
        intake_enabled=intake,
        http_token_file=token_file,
        # Absent, the flag leaves the environment's choice alone.
        http_insecure_no_auth=insecure_no_auth or None,
        http_tls_cert=tls_cert,
        http_tls_key=tls_key,
    )
    configure_logging(settings.log_level, settings.log_format)
    serve(PublisherService(settings))


@publisher_app.command("synth")
def synth(
    count: Annotated[int, typer.Option(min=1, help="How many bulletins.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same bulletins.")] = 1,
    agency: Annotated[
        list[str] | None, typer.Option("--agency", help="Only these agencies (repeatable).")
    ] = None,
) -> None:
    """Write synthetic bulletins from the seed scenario as JSON Lines to stdout."""
    registry = Registry.load(KafkaSettings().agencies_file)
    generator = BulletinGenerator(seed, registry, agencies=agency or None)
    now = datetime.now(UTC)
    out = sys.stdout
    for _ in range(count):
        out.write(to_json_line(generator.next(now)))
    out.flush()


def register(app: typer.Typer) -> None:
    """Add this package's commands to ``app``."""
    app.command("produce")(produce)
    recall_cli.register(app)
    app.add_typer(publisher_app, name="publisher")


__all__ = ["EXIT_UNACKNOWLEDGED", "register"]
