"""Fault drills of the partner consumer: SIGKILL its own process at a chosen point.

Off by default (``fault_kill_at`` unset); never set in production. The fault suite uses it
to crash a real ``enlace consumer run`` at the three points where a partner's state is
split between places that do not commit together:

- ``after_sink_write``: every sink holds the batch, Kafka has not seen its offsets committed.
  The restart re-reads the batch: the store must turn it into no-ops.
- ``mid_batch``: the first sink to finish holds the batch while the others are still writing
  (sinks write concurrently). This is the dangerous one: the sinks disagree about what they
  hold, so any commit rule other than "the lowest position every sink holds" loses records
  in the lagging sink, and the store, if it is the lagging one, must still get every record
  after the restart (the JSONL sink, if it finished first, repeats lines: at-least-once).
- ``after_receipt``: the broker acknowledged a flush of receipts, the store has not marked
  them sent. The restart sends them again with the same deterministic event ids.

The kill happens at the ``fault_kill_after``-th arrival at the point (or, with a non-zero
``fault_seed``, at a seeded arrival between the first and that one), logged just before as
``consumer_killed_on_purpose`` so a drill's log shows where each process died.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from enum import StrEnum

from enlace.core.logs import get_logger

log = get_logger(__name__)


class KillPoint(StrEnum):
    AFTER_SINK_WRITE = "after_sink_write"
    MID_BATCH = "mid_batch"
    AFTER_RECEIPT = "after_receipt"


def kill_target(after: int, seed: int) -> int:
    """The arrival at which the drill kills: ``after``, or a seeded one in ``[1, after]``."""
    if after < 1:
        raise ValueError("fault_kill_after counts arrivals from 1")
    if seed == 0:
        return after
    return random.Random(seed).randint(1, after)  # noqa: S311 - drill choice, not crypto


def _sigkill() -> None:
    # SIGKILL, not an exception or sys.exit: no finally block, flush or clean leave runs.
    os.kill(os.getpid(), signal.SIGKILL)


class KillDrill:
    """Counts arrivals at one point and kills the process at the chosen one."""

    def __init__(
        self,
        at: KillPoint | None,
        *,
        after: int = 1,
        seed: int = 0,
        kill: Callable[[], None] = _sigkill,
    ) -> None:
        self.at = at
        self.target = kill_target(after, seed)
        self.arrivals = 0
        self._kill = kill

    def reached(self, point: KillPoint, **context: object) -> None:
        if point is not self.at:
            return
        self.arrivals += 1
        if self.arrivals == self.target:
            log.warning(
                "consumer_killed_on_purpose", point=point.value, arrival=self.arrivals, **context
            )
            self._kill()


__all__ = ["KillDrill", "KillPoint", "kill_target"]
