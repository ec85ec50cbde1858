"""Child processes of the benchmark (the router, the copier): start, watch, stop.

Their output goes to a log file; only processes started here are ever signalled, by pid.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from enlace.core.errors import EnlaceError


class ChildFailed(EnlaceError):
    """A benchmark child process exited early (its log's tail is in the message)."""


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class Child:
    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str]
    ) -> None:
        self.name = name
        self.argv = [sys.executable, *argv]
        self.log_path = log_path
        self.env = {**os.environ, **env}
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed argv
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env,
            )  # fmt: skip

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)

    def check(self) -> None:
        """Raise :class:`ChildFailed` if the child has exited."""
        if self._proc is not None and self._proc.poll() is not None:
            raise ChildFailed(
                f"{self.name} exited with code {self._proc.returncode}; last log lines:\n"
                + tail(self.log_path)
            )

    async def wait(self, within: float) -> int | None:
        """Wait up to ``within`` seconds for the child to exit by itself; its exit code, or
        None if it is still running (or was never started)."""
        proc = self._proc
        if proc is None:
            return None
        try:
            return await asyncio.to_thread(proc.wait, within)
        except subprocess.TimeoutExpired:
            return None

    async def stop(self, within: float = 30.0) -> int | None:
        """SIGTERM (clean stop: a profile gets written), SIGKILL after ``within`` seconds."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return await asyncio.to_thread(proc.wait, within)
            except subprocess.TimeoutExpired:
                proc.kill()
                return await asyncio.to_thread(proc.wait, 10)
        return proc.returncode
