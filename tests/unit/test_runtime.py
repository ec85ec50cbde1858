"""``serve``: the one way the router, the consumer and the publisher run."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from enlace.core.runtime import serve


class Signalled:
    """Sends itself SIGTERM once running; returns when asked to stop."""

    def __init__(self) -> None:
        self.stops = 0
        self.loop_kind = ""

    async def run(self) -> None:
        self.asked = asyncio.Event()
        self.loop_kind = type(asyncio.get_running_loop()).__module__
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(self.asked.wait(), 10)

    def request_stop(self) -> None:
        self.stops += 1
        self.asked.set()


class Failing:
    async def run(self) -> None:
        raise RuntimeError("a background task failed")

    def request_stop(self) -> None:
        raise AssertionError("not asked")


def test_a_signal_asks_the_service_to_stop_on_uvloop() -> None:
    service = Signalled()
    serve(service)
    assert service.stops == 1
    assert service.loop_kind.startswith("uvloop")


def test_a_failure_reaches_the_caller() -> None:
    with pytest.raises(RuntimeError, match="background task failed"):
        serve(Failing())
