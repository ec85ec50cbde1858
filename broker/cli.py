"""Commands of this package, registered on the root ``enlace`` app.

Each concept keeps its commands in its own module (``trust_cli``: trust and policy); this
module only registers them.
"""

from __future__ import annotations

import typer

from broker import audit_cli, router_cli, trust_cli


def register(app: typer.Typer) -> None:
    """Add this package's commands to ``app``."""
    trust_cli.register(app)
    audit_cli.register(app)
    app.add_typer(router_cli.router_app, name="router")
