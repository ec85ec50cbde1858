"""A non-editable install, run from another directory, works with its defaults: the agency
registry, the policy and the key directory ship as package data (docs/design.md's deploy/)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def source_copy(into: Path) -> Path:
    """The files git would ship (tracked or new, not ignored): no stale build/ leaks in."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        check=True, cwd=ROOT, capture_output=True, timeout=60,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def test_a_plain_pip_install_runs_with_its_defaults(tmp_path: Path) -> None:
    source = source_copy(tmp_path / "src")
    target = tmp_path / "site"
    # --no-deps: the dependencies are this venv's; the code under test is only the copy.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(source)],
        check=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert (target / "deploy" / "policy.yaml").is_file()
    assert (target / "deploy" / "kafka" / "pom.xml").is_file()
    assert not (target / "bench").exists(), "the benchmark is not part of the distribution"
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("ENLACE_KAFKA_BOOTSTRAP", None)  # offline: the defaults alone
    where = subprocess.run(
        [sys.executable, "-c", "import broker, enlace; print(broker.__file__, enlace.__file__)"],
        check=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert str(target) in where.stdout, "the installed copy is the one that runs"
    explained = subprocess.run(
        [sys.executable, "-m", "enlace.cli", "trust", "explain", "pa-senafront", "cr-msp"],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert explained.returncode == 0, explained.stderr
    assert "pa-senafront -> cr-msp" in explained.stdout
    checked = subprocess.run(
        [sys.executable, "-m", "enlace.cli", "policy", "check",
         str(target / "deploy" / "policy.yaml")],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
