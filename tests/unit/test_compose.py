"""deploy/compose.yaml against the Compose Specification's JSON schema (tests/data/, see its
README), with the Enlace services on the Dockerfile's image and Prometheus scraping each of
them; ``docker compose config`` too where a Compose CLI exists (none on the project's
machines: that test skips). Nothing here starts a container."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from functools import cache
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic_settings import BaseSettings

from broker.settings import RouterSettings
from consumers.settings import ConsumerSettings
from enlace.core.settings import REPO_ROOT
from producers.settings import PublisherSettings
from tests.unit.test_deploy_config import promtool

COMPOSE = REPO_ROOT / "deploy" / "compose.yaml"
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus" / "compose.yml"
SCHEMA = REPO_ROOT / "tests" / "data" / "compose-spec.json"
ENLACE = {"topics", "router", "publisher", "consumer"}


@cache
def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return document


def compose() -> dict[str, Any]:
    return copy.deepcopy(_compose())


def problems(document: Any) -> list[str]:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_the_compose_file_is_valid_for_the_compose_specification() -> None:
    assert problems(compose()) == []


@pytest.mark.parametrize(
    ("what", "path", "value"),
    [
        ("unknown service key", ("services", "router", "enviroment"), {}),
        ("wrong type", ("services", "kafka", "ports"), "9092:9092"),
        ("unknown top-level key", ("service",), {}),
        ("bad restart type", ("services", "router", "restart"), 3),
    ],
)
def test_a_mutated_compose_file_fails_the_schema(
    what: str, path: tuple[str, ...], value: Any
) -> None:
    document = compose()
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert problems(document), what
    document = compose()
    del document["services"]
    document["servics"] = {}
    assert problems(document)


def test_the_stack_is_kraft_kafka_the_router_one_agency_and_prometheus() -> None:
    services = compose()["services"]
    assert set(services) == ENLACE | {"kafka", "prometheus"}
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    for name in ENLACE:
        service = services[name]
        assert service["image"] == "enlace:0.1.0"
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert (COMPOSE.parent / service["build"]["context"] / "deploy" / "Dockerfile").is_file()
    assert services["router"]["command"] == ["router", "run"]
    assert services["publisher"]["command"][:2] == ["publisher", "run"]
    assert services["consumer"]["command"][:2] == ["consumer", "run"]


def test_every_enlace_variable_is_a_setting_of_its_service() -> None:
    services = compose()["services"]
    settings: dict[str, type[BaseSettings]] = {
        "topics": RouterSettings,
        "router": RouterSettings,
        "publisher": PublisherSettings,
        "consumer": ConsumerSettings,
    }
    for name, cls in settings.items():
        fields = {f"ENLACE_{field.upper()}" for field in cls.model_fields}
        for variable in services[name]["environment"]:
            assert variable in fields, (name, variable)
    publisher = services["publisher"]["environment"]
    consumer = services["consumer"]["environment"]
    assert publisher["ENLACE_AGENCY"] == "pa-senafront"
    assert consumer["ENLACE_AGENCY"] == "cr-msp"
    assert json.loads(consumer["ENLACE_SINKS"])[0].startswith("sqlite:")


def test_prometheus_scrapes_every_long_running_enlace_service() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    targets = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    services = compose()["services"]
    assert (
        targets["enlace-router"]
        == f"router:{services['router']['environment']['ENLACE_HTTP_PORT']}"
    )
    assert targets["enlace-producers"] == (
        f"publisher:{services['publisher']['environment']['ENLACE_HTTP_PORT']}"
    )
    # The consumer shares Prometheus's network namespace (its /metrics binds loopback).
    consumer = services["consumer"]
    assert consumer["network_mode"] == "service:prometheus"
    assert targets["enlace-consumers"] == f"localhost:{consumer['command'][-1]}"
    mounts = {m.split(":")[0]: m.split(":")[1] for m in services["prometheus"]["volumes"]}
    assert mounts["./prometheus/compose.yml"] == "/etc/prometheus/prometheus.yml"
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS.parent / rule_file).is_file()
        assert mounts[f"./prometheus/{rule_file}"] == f"/etc/prometheus/{rule_file}"


def test_promtool_accepts_the_compose_scrape_config() -> None:
    result = subprocess.run(
        [promtool(), "check", "config", "--syntax-only", str(PROMETHEUS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return [docker, "compose"]
    return None


@pytest.mark.skipif(_compose_cli() is None, reason="no Docker Compose CLI on this machine")
def test_docker_compose_config_accepts_the_file() -> None:
    cli = _compose_cli()
    assert cli is not None
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "--quiet", "--no-interpolate"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
