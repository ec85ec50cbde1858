"""structlog set-up shared by every service: JSON for services, readable in a terminal.

Lines about a bulletin carry ``bulletin_id`` and ``origin``; never its details or entities.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

LogFormat = Literal["json", "console", "auto"]


def configure_logging(
    level: str = "INFO", fmt: LogFormat = "auto", *, file: TextIO | None = None
) -> None:
    """Configure structlog once per process; ``auto`` picks console on a TTY, JSON otherwise.

    ``file`` (default stderr) takes the lines elsewhere, e.g. while a live view owns the terminal.
    """
    out = file or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
