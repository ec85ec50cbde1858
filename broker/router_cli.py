"""``enlace router run``: the router service in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from broker.policy import Policy
from broker.router import Router
from broker.settings import RouterSettings
from enlace.core.clients import check_c_extensions
from enlace.core.logs import configure_logging, get_logger
from enlace.core.registry import Registry
from enlace.core.runtime import serve
from schemas.key_directory import KeyDirectory

router_app = typer.Typer(help="The router: verification, trust, release, audit.")
log = get_logger(__name__)


@router_app.command("run")
def run(
    agencies: Annotated[Path | None, typer.Option(help="Agency registry YAML.")] = None,
    policy: Annotated[Path | None, typer.Option(help="Release policy YAML.")] = None,
    keys: Annotated[Path | None, typer.Option(help="Key directory YAML.")] = None,
    http_port: Annotated[int | None, typer.Option(help="Port of /metrics and /health.")] = None,
) -> None:
    """Route every agency's outbound bulletins to the partner feeds the policy allows."""
    overrides: dict[str, Any] = {
        name: value
        for name, value in {
            "agencies_file": agencies,
            "policy_file": policy,
            "keys_file": keys,
            "http_port": http_port,
        }.items()
        if value is not None
    }
    settings = RouterSettings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    check_c_extensions()
    registry = Registry.load(settings.agencies_file)
    loaded_policy = Policy.load(settings.policy_file)
    directory = KeyDirectory.load(settings.keys_file)
    serve(Router(settings, registry, loaded_policy, directory))
