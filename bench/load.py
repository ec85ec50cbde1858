"""Open-loop load: call ``send(n)`` with what a fixed rate owes, whatever the pipeline does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bench.stats import due

TICK_S = 0.005


async def paced(
    rate: float, count: int, send: Callable[[int], None], stop: asyncio.Event | None = None
) -> float:
    """Offer ``count`` items at ``rate``/s in ticks (fewer if ``stop`` is set first); return
    the seconds it took.

    ``send`` must not block (start a task for anything that waits on the broker), so a slow
    pipeline shows up as latency, never as a lower offered rate.
    """
    started = time.perf_counter()
    sent = 0
    while sent < count and not (stop is not None and stop.is_set()):
        owed = due(rate, time.perf_counter() - started, sent, count)
        if owed:
            send(owed)
            sent += owed
        await asyncio.sleep(TICK_S)
    return time.perf_counter() - started
