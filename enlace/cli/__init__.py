"""The ``enlace`` command: one entry point, a subcommand group per concept.

Each package contributes its commands through a ``register(app)`` function, so this module
only assembles them. Settings are read from the environment here and nowhere below.
"""

from __future__ import annotations

import sys

import typer

from broker import cli as broker_cli
from consumers import cli as consumers_cli
from enlace.cli import acl as acl_cli
from enlace.cli import demo as demo_cli
from enlace.cli import deploy as deploy_cli
from enlace.cli import ops as ops_cli
from enlace.core.errors import EnlaceError
from producers import cli as producers_cli
from schemas import cli as schemas_cli

app = typer.Typer(
    name="enlace",
    help="Enlace: interagency intelligence exchange on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (
    ops_cli,
    acl_cli,
    deploy_cli,
    schemas_cli,
    broker_cli,
    producers_cli,
    consumers_cli,
    demo_cli,
):
    module.register(app)


def main() -> None:
    """Console-script entry point: Enlace errors become one readable line and exit code 1."""
    try:
        app()
    except EnlaceError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
