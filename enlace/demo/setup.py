"""Preparing a demo run: keys for every agency, the key directory, the run's policy, the
router process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import yaml

from broker.policy import Policy
from enlace.core.errors import KafkaLaunchError, PolicyError
from enlace.core.registry import Registry
from enlace.core.settings import KafkaSettings
from schemas.agency_key import AgencyKey
from schemas.key_directory import KeyDirectory


def agency_keys(registry: Registry, key_dir: Path) -> dict[str, AgencyKey]:
    """Each agency's signing key from ``key_dir``, generated (0600) on first use."""
    keys: dict[str, AgencyKey] = {}
    for agency in registry.ids:
        existing = sorted(key_dir.glob(f"{agency}.*.key")) if key_dir.is_dir() else []
        if existing:
            keys[agency] = AgencyKey.load(existing[-1])
            continue
        # Valid from yesterday: synthetic bulletins carry issued_at a few minutes back.
        key = AgencyKey.generate(agency, valid_from=datetime.now(UTC) - timedelta(days=1))
        key.save(key_dir)
        keys[agency] = key
    return keys


def write_key_directory(keys: dict[str, AgencyKey], path: Path) -> KeyDirectory:
    directory = KeyDirectory.from_keys(keys.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    directory.dump(path)
    return directory


def write_demo_policy(source: Path, path: Path, rerelease_for: str) -> Path:
    """``source`` with releases when trust is earned switched on for ``rerelease_for`` (unless
    the policy already says whether they happen for it), written to ``path`` and checked by
    the router's own loader. Every other originator keeps the policy's choice (off by
    default): an originator decides whether a later score may release what it published."""
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read policy {source}: {exc}") from exc
    if not isinstance(document, dict):
        raise PolicyError(f"policy {source}: the top level must be a mapping of keys")
    overrides = document.setdefault("overrides", {}) or {}
    document["overrides"] = overrides
    own = overrides.setdefault(rerelease_for, {}) or {}
    overrides[rerelease_for] = own
    own.setdefault("rerelease", True)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Written by `enlace demo` from {source}: rerelease switched on for {rerelease_for}.\n"
    )
    path.write_text(header + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    Policy.load(path)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RouterProcess:
    """``enlace router run`` as a child process, logging JSON to a file."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    @classmethod
    def spawn(
        cls,
        settings: KafkaSettings,
        *,
        agencies: Path,
        policy: Path,
        keys: Path,
        log_path: Path,
        prefix: str,
        port: int,
    ) -> RouterProcess:
        env = {
            **os.environ,
            "ENLACE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "ENLACE_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
            "ENLACE_AGENCIES_FILE": str(agencies),
            "ENLACE_POLICY_FILE": str(policy),
            "ENLACE_KEYS_FILE": str(keys),
            "ENLACE_ROUTER_PREFIX": prefix,
            "ENLACE_HTTP_PORT": str(port),
            "ENLACE_TRUST_SNAPSHOT_SECONDS": "1",
            "ENLACE_LOG_FORMAT": "json",
            # One router process: the demo's rates need no second core's worth of routing,
            # and its live view reads one /metrics endpoint.
            "ENLACE_ROUTER_WORKERS": "1",
        }
        if settings.kafka_sasl_username:
            env["ENLACE_KAFKA_SASL_USERNAME"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password:
            env["ENLACE_KAFKA_SASL_PASSWORD"] = settings.kafka_sasl_password.get_secret_value()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "enlace.cli", "router", "run"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return cls(process, port, log_path)

    async def wait_ready(self, timeout: float = 120.0) -> None:  # noqa: ASYNC109 - a plain bound
        url = f"http://127.0.0.1:{self.port}/health"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                if self.process.poll() is not None:
                    raise KafkaLaunchError(
                        f"the router exited with {self.process.returncode}; see {self.log_path}"
                    )
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.3)
        raise KafkaLaunchError(f"the router was not ready in {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the router finishes or aborts its transaction), SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode
