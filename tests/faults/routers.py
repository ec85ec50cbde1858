"""Real ``enlace router run`` processes for the fault tests: started, SIGKILLed, stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support import MiniExchange


class RouterProcess:
    def __init__(self, ex: MiniExchange, workdir: Path, name: str, **extra_env: str) -> None:
        self.name = name
        env = {
            **os.environ,
            "ENLACE_KAFKA_BOOTSTRAP": ex.settings.kafka_bootstrap,
            "ENLACE_AGENCIES_FILE": str(workdir / "agencies.yaml"),
            "ENLACE_POLICY_FILE": str(workdir / "policy.yaml"),
            "ENLACE_KEYS_FILE": str(workdir / "keys.yaml"),
            "ENLACE_ROUTER_PREFIX": f"t{ex.token}.router.",
            "ENLACE_ROUTER_SESSION_TIMEOUT_MS": "6000",
            "ENLACE_HTTP_PORT": "0",
            "ENLACE_LOG_FORMAT": "json",
            # One process per router: the drills kill and count router processes.
            "ENLACE_ROUTER_WORKERS": "1",
            **extra_env,
        }
        self.log_path = workdir / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "enlace.cli", "router", "run"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def log_text(self) -> bytes:
        self.log.flush()
        return self.log_path.read_bytes()

    def kill_now(self) -> None:
        """For fixture teardown (no event loop): SIGKILL is immediate, the wait is short."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.proc.wait, 10)
        self.log.close()

    async def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(self.proc.wait, 30)
        self.log.close()
        return self.proc.returncode


def write_config(ex: MiniExchange, workdir: Path, agreements: list[dict[str, Any]]) -> None:
    agencies = [a.model_dump() for a in ex.registry]
    (workdir / "agencies.yaml").write_text(yaml.safe_dump({"agencies": agencies}))
    (workdir / "policy.yaml").write_text(yaml.safe_dump({"agreements": agreements}))
    ex.directory.dump(workdir / "keys.yaml")
