"""``enlace router run``: the router service in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import structlog
import typer

from broker.policy import Policy
from broker.router import Router
from broker.settings import RouterSettings
from broker.workers import WorkerPool, default_workers
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
    workers: Annotated[
        int | None,
        typer.Option(
            help="Router processes in one consumer group (default ENLACE_ROUTER_WORKERS, "
            "0: one per core); worker i serves /metrics on --http-port + i."
        ),
    ] = None,
    worker_index: Annotated[
        int | None, typer.Option(hidden=True, help="Set by the supervisor for its workers.")
    ] = None,
) -> None:
    """Route every agency's outbound bulletins to the partner feeds the policy allows."""
    overrides: dict[str, Any] = {
        name: value
        for name, value in {
            "agencies_file": agencies,
            "policy_file": policy,
            "keys_file": keys,
            "http_port": http_port,
            "router_workers": workers,
        }.items()
        if value is not None
    }
    settings = RouterSettings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    check_c_extensions()
    count = settings.router_workers or default_workers()
    if worker_index is None and count > 1:
        _supervise(settings, count, agencies=agencies, policy=policy, keys=keys)
        return
    if worker_index is not None:
        structlog.contextvars.bind_contextvars(worker=worker_index)
    registry = Registry.load(settings.agencies_file)
    loaded_policy = Policy.load(settings.policy_file)
    directory = KeyDirectory.load(settings.keys_file)
    serve(Router(settings, registry, loaded_policy, directory))


def _supervise(
    settings: RouterSettings,
    count: int,
    *,
    agencies: Path | None,
    policy: Path | None,
    keys: Path | None,
) -> None:
    """Run ``count`` workers, each this command with ``--workers 1``: their settings come from
    the same environment, and the files named here are passed on as given."""
    # Validate what every worker would load, once, before starting any.
    Registry.load(settings.agencies_file)
    Policy.load(settings.policy_file)
    KeyDirectory.load(settings.keys_file)
    files = [
        arg
        for name, path in (("--agencies", agencies), ("--policy", policy), ("--keys", keys))
        if path is not None
        for arg in (name, str(path))
    ]

    def command(index: int) -> list[str]:
        port = settings.http_port + index if settings.http_port else 0
        return ["-m", "enlace.cli", "router", "run", "--workers", "1", "--worker-index",
                str(index), "--http-port", str(port), *files]  # fmt: skip

    log.info("router_workers", workers=count, first_http_port=settings.http_port)
    code = WorkerPool(count, command).run()
    if code:
        raise typer.Exit(code)
