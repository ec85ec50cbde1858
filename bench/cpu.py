"""CPU accounting for a phase: the router (or copier), the broker, this process, the machine.

On 2 cores the question "what bounds throughput" is mostly "who used the CPU"; Linux's
/proc answers it without any profiler overhead. Elsewhere the numbers are simply absent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    # fields[0] is the state (field 3 of proc(5)), fields[1] the parent's pid (field 4).
    return stat.rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and fields[1] == str(pid)
    ]


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` and its living descendants so far (a router with
    ``--workers N`` is a supervisor and N worker processes); None if unknown."""
    fields = _stat(pid)
    if fields is None:
        return None
    # utime and stime are fields 14 and 15 of proc(5).
    total = (int(fields[11]) + int(fields[12])) / _TICKS
    for child in _children(pid):
        total += process_cpu_s(child) or 0.0
    return total


def machine_cpu_s() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of all cores since boot, from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0]
    except OSError:
        return None
    values = [int(v) for v in first.split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user/nice
    return (total - idle) / _TICKS, total / _TICKS


@dataclass(frozen=True)
class CpuUse:
    seconds: float
    processes: dict[str, float]  # CPU seconds by name, for those /proc could read
    bench_s: float
    machine_busy: float | None  # 0..1 of all cores

    def share(self, cpu_s: float) -> float:
        return cpu_s / self.seconds if self.seconds > 0 else 0.0

    def describe(self, items: int, item: str = "bulletin") -> str:
        """E.g. ``router 97% of a core (5.1 ms/bulletin), broker 61%, bench 20%, machine 99%``."""
        parts = []
        for name, cpu_s in self.processes.items():
            per = f" ({cpu_s / items * 1e3:.2f} ms/{item})" if items else ""
            parts.append(f"{name} {self.share(cpu_s):.0%}{per}")
        parts.append(f"bench {self.share(self.bench_s):.0%}")
        if self.machine_busy is not None:
            parts.append(f"machine {self.machine_busy:.0%} of 2 cores")
        return "CPU: " + ", ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "seconds": round(self.seconds, 3),
            "cpu_s": {k: round(v, 3) for k, v in self.processes.items()},
            "bench_cpu_s": round(self.bench_s, 3),
            "machine_busy": None if self.machine_busy is None else round(self.machine_busy, 3),
        }


class CpuWindow:
    """Start it before a phase, ``stop()`` after: CPU used in between."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._wall = time.perf_counter()
        self._start = {name: process_cpu_s(pid) for name, pid in self._pids.items()}
        self._bench = time.process_time()
        self._machine = machine_cpu_s()

    def stop(self) -> CpuUse:
        wall = time.perf_counter() - self._wall
        used: dict[str, float] = {}
        for name, pid in self._pids.items():
            before, after = self._start[name], process_cpu_s(pid)
            if before is not None and after is not None:
                used[name] = after - before
        machine = machine_cpu_s()
        busy = None
        if machine is not None and self._machine is not None:
            total = machine[1] - self._machine[1]
            busy = (machine[0] - self._machine[0]) / total if total > 0 else None
        return CpuUse(wall, used, time.process_time() - self._bench, busy)
