"""Running a long-lived service's event loop: uvloop when present, and a frozen heap.

uvloop is ~10-15 % faster for our Kafka-heavy loops; ``gc.freeze()`` after start-up keeps
the collector from re-scanning the long-lived objects (schemas, keys, policy) on every
decode-heavy batch.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # noqa: PLC0415 - optional accelerator
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_service(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` for services."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def freeze_heap() -> None:
    """Call once start-up objects exist: they move out of the collector's generations."""
    gc.collect()
    gc.freeze()
