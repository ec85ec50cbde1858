"""Prometheus for a running exchange: the scrape config and rules of ``deploy/prometheus/``
with the targets of what runs, as file-based service discovery (``targets/<job>.json``).

The scrape config names no address itself, so a deployment lists only what it started and no
target is down by design (a fixed list of every possible port kept ``EnlaceRouterDown``
pending in every deployment). ``enlace demo`` writes one into its state dir; the Prometheus
test writes one for the services it starts.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from enlace.core.settings import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
CONFIG = "prometheus.yml"
RULES = "alerts.yml"
# Prometheus job -> the targets file its file_sd_configs read (see prometheus.yml).
JOB_FILES: Mapping[str, str] = {
    "enlace-router": "router",
    "enlace-producers": "producers",
    "enlace-consumers": "consumers",
    "enlace-ops-exporter": "ops-exporter",
    "kafka": "kafka",
}


def host_port(url: str) -> str:
    """``http://127.0.0.1:9300/metrics`` → ``127.0.0.1:9300``."""
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0]


def target_files(jobs: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """File name → JSON of each job's targets (pure); ValueError for an unknown job."""
    files: dict[str, str] = {}
    for job, targets in jobs.items():
        if job not in JOB_FILES:
            raise ValueError(f"no Prometheus job {job!r}; known: {', '.join(JOB_FILES)}")
        groups = [{"targets": sorted(set(targets)), "labels": {}}] if targets else []
        files[f"{JOB_FILES[job]}.json"] = json.dumps(groups, indent=2) + "\n"
    return files


def write_prometheus_dir(
    directory: Path,
    jobs: Mapping[str, Sequence[str]],
    *,
    rules: Path | None = None,
) -> Path:
    """The scrape config, the rules (``rules`` or ours) and the targets of ``jobs`` into
    ``directory``; returns the config's path. Target files are replaced atomically, so a
    Prometheus watching them never reads half a file."""
    targets = directory / "targets"
    targets.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROMETHEUS_DIR / CONFIG, directory / CONFIG)
    shutil.copyfile(rules or PROMETHEUS_DIR / RULES, directory / RULES)
    for name, text in target_files(jobs).items():
        tmp = targets / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(targets / name)
    return directory / CONFIG
