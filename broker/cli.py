"""Commands of this package, registered on the root ``enlace`` app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to ``app``."""
