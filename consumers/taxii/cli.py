"""``enlace taxii serve``: a partner's store as a TAXII 2.1 server (OpenCTI, any client).

Only this function reads the environment (``TaxiiSettings()``); options override it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError as SettingsInvalid

from consumers.taxii.service import TaxiiService
from consumers.taxii.settings import TaxiiSettings
from enlace.core.errors import ConfigError
from enlace.core.logs import configure_logging
from enlace.core.runtime import serve as serve_service

taxii_app = typer.Typer(help="TAXII 2.1 over this agency's store.", no_args_is_help=True)


def taxii_settings(**options: Any) -> TaxiiSettings:
    """Settings from the environment with ``options`` over them; ConfigError if invalid."""
    try:
        return TaxiiSettings(**{k: v for k, v in options.items() if v is not None})
    except SettingsInvalid as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError(f"TAXII settings: {problems}") from exc


@taxii_app.command("serve")
def serve(
    *,
    db: Annotated[Path, typer.Option("--db", help="The agency's SQLite store.")],
    listen: Annotated[
        str | None,
        typer.Option(help="HOST:PORT (default 127.0.0.1:9500; env ENLACE_TAXII_LISTEN)."),
    ] = None,
    misp_feed: Annotated[
        Path | None,
        typer.Option("--misp-feed", help="A misp: sink's directory, served at /misp/."),
    ] = None,
    anonymous: Annotated[
        bool, typer.Option("--anonymous", help="Serve without authentication (on purpose only).")
    ] = False,
) -> None:
    """Serve the store as TAXII 2.1 (credentials: ENLACE_TAXII_USERNAME/_PASSWORD/_TOKEN)."""
    settings = taxii_settings(
        db=db, listen=listen, misp_feed=misp_feed, anonymous=True if anonymous else None
    )
    configure_logging(settings.log_level, settings.log_format)
    serve_service(TaxiiService(settings))


def register(app: typer.Typer) -> None:
    app.add_typer(taxii_app, name="taxii")
