"""``enlace demo``: the whole exchange of 11 agencies on a local Kafka."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the demo command to ``app``."""
