"""Resident memory of a child process (the router), from /proc: now, and the peak over a phase.

Elsewhere than Linux the numbers are simply absent (None).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

MIB = 1024 * 1024


def rss_mib(pid: int | None, field: str = "VmRSS") -> float | None:
    """``VmRSS`` (or another ``kB`` ``field`` of /proc/PID/status) of ``pid`` in MiB (None if
    /proc cannot tell)."""
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            # The line reads e.g. "VmRSS:  123456 kB".
            return int(line.split()[1]) * 1024 / MIB
    return None


def peak_rss_mib(pid: int | None) -> float | None:
    """The kernel's high-water mark of ``pid``'s resident memory (``VmHWM``), in MiB: the
    true peak, which samples every second can miss."""
    return rss_mib(pid, "VmHWM")


class RssSampler:
    """Samples ``rss_mib(pid)`` every ``every_s`` seconds between ``start()`` and ``stop()``."""

    def __init__(self, pid: int | None, every_s: float = 1.0) -> None:
        self._pid = pid
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None
        self.samples: list[float] = []

    @property
    def peak(self) -> float | None:
        return max(self.samples, default=None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample(), name="bench-rss")

    async def stop(self) -> float | None:
        """Stop sampling; the peak seen."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        return self.peak

    async def _sample(self) -> None:
        while True:
            value = rss_mib(self._pid)
            if value is not None:
                self.samples.append(value)
            await asyncio.sleep(self._every_s)
