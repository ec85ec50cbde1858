"""deploy/: the Prometheus config and alert rules pass promtool, and every metric that the
alerts and the Grafana dashboard name is one the services really export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from broker.metrics import RouterMetrics
from consumers.metrics import ConsumerMetrics
from deploy.lag_exporter import ExporterMetrics
from producers.metrics import PublisherMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\benlace_[a-z_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_names() -> set[str]:
    names: set[str] = set()
    registries: list[CollectorRegistry] = [
        RouterMetrics().registry,
        PublisherMetrics("pa-senafront").registry,
        ConsumerMetrics().registry,
        ExporterMetrics().registry,
    ]
    for registry in registries:
        for family in registry.collect():
            names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is required: apt-get install prometheus (make test installs it as root)"
        )
    return path


def test_prometheus_config_and_rules_pass_promtool() -> None:
    tool = promtool()
    for args in (
        ["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        ["test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml")],
    ):
        result = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_and_dashboard_only_name_exported_metrics() -> None:
    exported = exported_names()
    alerts = (DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8")
    dashboard = json.loads((DEPLOY / "grafana" / "enlace-dashboard.json").read_text("utf-8"))
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    named = set(METRIC.findall(alerts)) | {m for e in expressions for m in METRIC.findall(e)}
    assert named, "the files name metrics"
    assert named <= exported, f"not exported by any service: {sorted(named - exported)}"
