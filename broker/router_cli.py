"""``enlace router run``: the router service in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from broker.policy import Policy
from broker.router import Router
from broker.settings import RouterSettings
from enlace.core.clients import check_c_extensions
from enlace.core.logs import configure_logging, get_logger
from enlace.core.registry import Registry
from enlace.core.runtime import freeze_heap, run_service
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
    run_service(serve(Router(settings, registry, loaded_policy, directory)))


async def serve(router: Router) -> None:
    """Run until a signal arrives or a background task fails; always stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await router.start()
    freeze_heap()
    try:
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(router.wait())
        done, pending = await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()
        log.info("router_signal_stop")
    finally:
        await router.stop()
