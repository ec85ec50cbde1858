"""``enlace router run --workers N``: N router processes in one consumer group, supervised.

Python routes on one core; a router process is bound by its own CPU long before Kafka is
(README, "Benchmarks"). Workers are ordinary routers (``--workers 1``) in the same group: each
owns the input partitions the group assigns it, with their transactional producers, and
reads the whole trust state from Kafka as any router instance does, so nothing is shared in
memory and a worker's crash is a rebalance, as a router's is.

The supervisor only starts, watches and stops them:

* SIGTERM / SIGINT: SIGTERM to every worker (each finishes or aborts its transaction in
  flight), SIGKILL after ``stop_timeout_s``;
* a worker that exits unasked is restarted after a backoff; the others take its partitions
  meanwhile. Workers that keep dying right after their start (a bad config, Kafka down) stop
  the supervisor with an error instead of a restart loop;
* workers get SIGKILL if the supervisor dies (``PR_SET_PDEATHSIG``), so killing the
  supervisor kills the router, as it would a single process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from enlace.core.logs import get_logger

log = get_logger(__name__)

QUICK_EXIT_S = 15.0  # a worker that dies this soon after its start failed to start
GIVE_UP_AFTER = 3  # consecutive quick exits of one worker
MAX_BACKOFF_S = 30.0
POLL_S = 0.2
_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """One worker per core this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


@dataclass(frozen=True, slots=True)
class Restart:
    delay_s: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


@dataclass
class WorkerHistory:
    """One worker slot's exits; only the run of quick exits matters."""

    quick_exits: int = 0
    exits: list[tuple[float, int]] = field(default_factory=list)  # (lived seconds, code)


def after_exit(history: WorkerHistory, lived_s: float, code: int) -> Restart | GiveUp:
    """What to do when a worker exits unasked (pure): restart after a backoff that doubles
    with each quick exit in a row, or give up after :data:`GIVE_UP_AFTER` of them."""
    history.exits.append((lived_s, code))
    history.quick_exits = history.quick_exits + 1 if lived_s < QUICK_EXIT_S else 0
    if history.quick_exits >= GIVE_UP_AFTER:
        return GiveUp(
            f"worker exited {history.quick_exits} times in a row within {QUICK_EXIT_S:.0f} s "
            f"of its start (last exit code {code}); see its log lines above"
        )
    return Restart(min(MAX_BACKOFF_S, 2.0 ** max(0, history.quick_exits - 1)))


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the supervisor goes, however it goes."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class _Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float | None = None
    history: WorkerHistory = field(default_factory=WorkerHistory)


class WorkerPool:
    """Runs ``count`` workers, ``command(i)`` each, until a signal or a worker gives up."""

    def __init__(
        self,
        count: int,
        command: Callable[[int], Sequence[str]],
        *,
        stop_timeout_s: float = 45.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if count < 1:
            raise ValueError("a pool needs at least one worker")
        self._command = command
        self._stop_timeout_s = stop_timeout_s
        self._clock = clock
        self._slots = [_Slot(i) for i in range(count)]
        self._stop_requested = False
        self._failure: str | None = None

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if not self._stop_requested:
            log.info("router_workers_stopping", signal=signum)
        self._stop_requested = True

    def run(self) -> int:
        """Supervise until stopped; 0 after a requested stop, 1 if a worker gave up."""
        previous = {
            sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for slot in self._slots:
                self._spawn(slot)
            log.info("router_workers_started", workers=len(self._slots))
            while not self._stop_requested and self._failure is None:
                self._watch()
                time.sleep(POLL_S)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self._failure is not None:
            log.error("router_workers_gave_up", reason=self._failure)
            return 1
        return 0

    def _spawn(self, slot: _Slot) -> None:
        argv = [sys.executable, *self._command(slot.index)]
        slot.proc = subprocess.Popen(argv, preexec_fn=_die_with_parent)  # noqa: S603, PLW1509 - our interpreter and CLI; the hook only sets the death signal
        slot.started = self._clock()
        slot.restart_at = None
        log.info("router_worker_started", worker=slot.index, pid=slot.proc.pid)

    def _watch(self) -> None:
        now = self._clock()
        for slot in self._slots:
            if slot.proc is None:
                if slot.restart_at is not None and now >= slot.restart_at:
                    self._spawn(slot)
                continue
            code = slot.proc.poll()
            if code is None:
                continue
            lived = now - slot.started
            slot.proc = None
            log.warning(
                "router_worker_exited", worker=slot.index, code=code, lived_s=round(lived, 1)
            )
            action = after_exit(slot.history, lived, code)
            if isinstance(action, GiveUp):
                self._failure = action.reason
                return
            slot.restart_at = now + action.delay_s

    def _stop_all(self) -> None:
        living = [s.proc for s in self._slots if s.proc is not None and s.proc.poll() is None]
        for proc in living:
            proc.send_signal(signal.SIGTERM)
        deadline = self._clock() + self._stop_timeout_s
        for proc in living:
            try:
                proc.wait(max(0.0, deadline - self._clock()))
            except subprocess.TimeoutExpired:
                log.warning("router_worker_killed", pid=proc.pid, after_s=self._stop_timeout_s)
                proc.kill()
                proc.wait()
        log.info("router_workers_stopped", workers=len(living))
