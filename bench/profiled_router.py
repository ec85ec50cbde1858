"""``enlace router run`` under cProfile, profiling only between SIGUSR1 and the stop.

``python -m bench.profiled_router PROFILE_OUT [router run options]``: the router starts and
catches up (reading the shared audit and replay topics from the start) unprofiled; the bench
sends SIGUSR1 once the router is routing, so the profile shows the steady state. The stats
are written to PROFILE_OUT when the router stops (SIGTERM).
"""

from __future__ import annotations

import cProfile
import signal
import sys
from pathlib import Path
from types import FrameType

from enlace.cli import main as enlace_main


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    profiler = cProfile.Profile()

    def start_profiling(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        profiler.enable()

    signal.signal(signal.SIGUSR1, start_profiling)
    sys.argv = ["enlace", "router", "run", *argv[1:]]
    try:
        enlace_main()
    except SystemExit:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(str(out))


if __name__ == "__main__":
    main(sys.argv[1:])
