"""The Strimzi manifests: exactly the topic layout and ACL plan the tests prove, every custom
resource valid for the CRDs of the current Strimzi (``../shared/strimzi/``, served version
``kafka.strimzi.io/v1``: schema, CEL rules, no field the API server would prune), every
built-in object valid for Kubernetes' own strict schemas, and a Kafka version the operator
supports. Nothing here talks to a cluster."""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from deploy.acl_plan import acl_plan
from deploy.strimzi import API, CONFIG_FILES, ClusterShape, render
from deploy.strimzi_versions import (
    DEFAULT_KAFKA_VERSION,
    SUPPORTED_KAFKA_VERSIONS,
    check_kafka_version,
)
from enlace.cli import app
from enlace.core.errors import ConfigError
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES, REPO_ROOT
from enlace.core.topics import exchange_topics
from tests.unit.k8s_schemas import Crds, builtin_problems, k8s_versions

AGENCIES = Registry.load(DEFAULT_AGENCIES).ids
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A copy of the workspace's ../shared/strimzi/ (the current Strimzi's CRDs and
# kafka-versions.yaml, tests/data/README.md): CI runs on a clone that may not sit beside it.
STRIMZI = REPO_ROOT / "tests" / "data" / "strimzi"
SHARED_STRIMZI = REPO_ROOT.parent / "shared" / "strimzi"
CUSTOM = {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
# The oldest Kubernetes Strimzi has supported since 0.48 (1.27) and the newest whose schemas
# kubernetes-validate ships.
K8S_VERSIONS = ["1.27", k8s_versions()[-1]]
FILES = {name: (REPO_ROOT / "deploy" / name).read_text(encoding="utf-8") for name in CONFIG_FILES}


def manifests() -> list[dict[str, Any]]:
    return copy.deepcopy(_manifests())


@cache
def _manifests() -> list[dict[str, Any]]:
    # Round trip through YAML, as kubectl would read them.
    text = yaml.dump_all(render(AGENCIES, config_files=FILES), Dumper=yaml.CSafeDumper)
    return list(yaml.load_all(text, Loader=yaml.CSafeLoader))


def _load(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)


def test_the_copied_crds_are_the_shared_ones_where_those_exist() -> None:
    if not SHARED_STRIMZI.is_dir():
        pytest.skip(f"no {SHARED_STRIMZI} beside this clone to compare the copy with")
    shared = {p.name: p.read_bytes() for p in SHARED_STRIMZI.iterdir() if p.is_file()}
    copied = {p.name: p.read_bytes() for p in STRIMZI.iterdir() if p.is_file()}
    assert copied == shared, "tests/data/strimzi/ is out of date: copy ../shared/strimzi/"


@pytest.fixture(scope="module")
def crds() -> Crds:
    assert STRIMZI.is_dir(), f"the Strimzi CRDs are read from {STRIMZI}"
    return Crds(STRIMZI)


def problems(resource: dict[str, Any], crds: Crds, k8s: str = K8S_VERSIONS[-1]) -> list[str]:
    if resource["kind"] in CUSTOM:
        return crds.problems(resource, k8s)
    return builtin_problems(resource, k8s)


# --- what the manifests grant -------------------------------------------------------------


def test_every_topic_is_a_kafkatopic_with_its_configs() -> None:
    topics = {m["spec"]["topicName"]: m for m in manifests() if m["kind"] == "KafkaTopic"}
    specs = exchange_topics(AGENCIES, partitions=3, replication=3, min_insync=2)
    assert set(topics) == {s.name for s in specs}
    for spec in specs:
        manifest = topics[spec.name]
        assert manifest["spec"]["config"] == dict(spec.configs)
        assert manifest["spec"]["replicas"] == 3


def test_users_grant_exactly_the_acl_plan() -> None:
    granted = set()
    for m in manifests():
        if m["kind"] != "KafkaUser":
            continue
        user = m["metadata"]["name"]
        assert m["spec"]["authentication"] == {"type": "scram-sha-512"}
        for acl in m["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            for operation in acl["operations"]:
                granted.add((f"User:{user}", resource["type"], resource["patternType"],
                             resource["name"], operation.upper()))  # fmt: skip
    kinds = {"TOPIC": "topic", "GROUP": "group", "TRANSACTIONAL_ID": "transactionalId"}
    patterns = {"LITERAL": "literal", "PREFIXED": "prefix"}
    expected = {
        (b.principal, kinds[b.resource_type.value], patterns[b.pattern_type.value],
         b.resource_name, b.operation.value)
        for b in acl_plan(AGENCIES)
    }  # fmt: skip
    assert granted == expected


def test_names_are_valid_kubernetes_names_and_the_cluster_is_replicated() -> None:
    docs = manifests()
    for m in docs:
        assert K8S_NAME.fullmatch(m["metadata"]["name"]), m["metadata"]
    kafka = next(m for m in docs if m["kind"] == "Kafka")
    config = kafka["spec"]["kafka"]["config"]
    assert config["min.insync.replicas"] == "2"
    assert config["unclean.leader.election.enable"] is False
    assert config["auto.create.topics.enable"] is False
    router = next(m for m in docs if m["kind"] == "Deployment")
    env = {e["name"]: e for e in router["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ENLACE_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "enlace-router"
    assert ClusterShape().router_prefix == env["ENLACE_ROUTER_PREFIX"]["value"]


def test_agency_users_carry_their_registry_quotas_and_the_router_none() -> None:
    registry = Registry.load(DEFAULT_AGENCIES)
    users = {m["metadata"]["name"]: m for m in manifests() if m["kind"] == "KafkaUser"}
    for agency, quotas in registry.all_quotas.items():
        assert users[agency]["spec"]["quotas"] == {
            "producerByteRate": quotas.producer_byte_rate,
            "consumerByteRate": quotas.consumer_byte_rate,
            "requestPercentage": quotas.request_percentage,
        }
    assert "quotas" not in users["enlace-router"]["spec"]
    assert "quotas" not in users["enlace-operator"]["spec"]


def test_the_router_reads_the_secrets_strimzi_creates_and_the_rendered_config_map() -> None:
    docs = manifests()
    pod = next(m for m in docs if m["kind"] == "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    # The cluster operator's CA Secret and the user operator's Secret per KafkaUser.
    assert volumes["cluster-ca"]["secret"]["secretName"] == "enlace-cluster-ca-cert"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["ENLACE_KAFKA_SSL_CAFILE"]["value"] == "/etc/enlace/ca/ca.crt"
    ref = env["ENLACE_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    users = {m["metadata"]["name"] for m in docs if m["kind"] == "KafkaUser"}
    assert ref["key"] == "password"
    assert ref["name"] in users
    config = next(m for m in docs if m["kind"] == "ConfigMap")
    assert volumes["config"]["configMap"]["name"] == config["metadata"]["name"]
    assert config["data"] == FILES
    for name in CONFIG_FILES:
        assert env[f"ENLACE_{name.split('.')[0].upper()}_FILE"]["value"].endswith(f"/{name}")


# --- the current Strimzi: API version and Kafka version -----------------------------------


def test_custom_resources_use_the_version_the_crds_serve_and_store(crds: Crds) -> None:
    for path in sorted(STRIMZI.glob("*Crd-*.yaml")):
        crd = _load(path)
        stored = [v["name"] for v in crd["spec"]["versions"] if v["served"] and v["storage"]]
        assert [f"{crd['spec']['group']}/{v}" for v in stored] == [API], path.name
    kinds = {m["kind"] for m in manifests() if m["apiVersion"] == API}
    assert kinds == CUSTOM


def test_the_supported_kafka_versions_are_those_of_strimzis_kafka_versions_yaml() -> None:
    entries = _load(STRIMZI / "kafka-versions.yaml")
    supported = tuple(str(e["version"]) for e in entries if e["supported"])
    assert supported == SUPPORTED_KAFKA_VERSIONS
    (default,) = [str(e["version"]) for e in entries if e["default"]]
    assert default == DEFAULT_KAFKA_VERSION
    kafka = next(m for m in manifests() if m["kind"] == "Kafka")
    assert kafka["spec"]["kafka"]["version"] == DEFAULT_KAFKA_VERSION


def test_an_unsupported_kafka_version_is_refused_with_the_supported_list(tmp_path: Path) -> None:
    for version in ("4.0.0", "4.4.0", "3.9.1"):
        with pytest.raises(ConfigError, match=re.escape(", ".join(SUPPORTED_KAFKA_VERSIONS))):
            check_kafka_version(version)
        with pytest.raises(ConfigError):
            ClusterShape(kafka_version=version)
    result = CliRunner().invoke(
        app, ["deploy", "strimzi", "--out", str(tmp_path / "x"), "--kafka-version", "4.0.0"]
    )
    # `enlace`'s main() prints a ConfigError as one "error: ..." line and exits 1.
    assert isinstance(result.exception, ConfigError)
    assert ", ".join(SUPPORTED_KAFKA_VERSIONS) in str(result.exception)
    assert not (tmp_path / "x").exists()


def test_the_command_writes_what_render_returns(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["deploy", "strimzi", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = [
        doc
        for path in sorted(tmp_path.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
    ]
    key = lambda m: (m["kind"], m["metadata"]["name"])  # noqa: E731 - a sort key
    assert sorted(written, key=key) == sorted(manifests(), key=key)


# --- every resource against its schema ----------------------------------------------------


@pytest.mark.parametrize("k8s", K8S_VERSIONS)
def test_every_rendered_resource_is_valid_for_its_schema(crds: Crds, k8s: str) -> None:
    docs = manifests()
    assert {m["kind"] for m in docs} == CUSTOM | {"ConfigMap", "Deployment"}
    for m in docs:
        assert problems(m, crds, k8s) == [], (m["kind"], m["metadata"]["name"])


def _kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(m for m in docs if m["kind"] == kind))


def _mutations() -> list[tuple[str, str, Any]]:
    """(kind, what, mutate) - each must make the validation fail."""

    def set_(path: str, value: Any) -> Any:
        def mutate(m: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            node: Any = m
            for part in parents:
                node = node[int(part)] if part.isdigit() else node[part]
            node[int(last) if last.isdigit() else last] = value

        return mutate

    def delete(path: str) -> Any:
        def mutate(m: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            node: Any = m
            for part in parents:
                node = node[int(part)] if part.isdigit() else node[part]
            del node[last]

        return mutate

    return [
        ("Kafka", "wrong type", set_("spec.kafka.listeners.0.port", "9093")),
        ("Kafka", "enum", set_("spec.kafka.listeners.0.authentication.type", "scram-sha-256")),
        ("Kafka", "missing required", delete("spec.kafka.listeners")),
        ("Kafka", "unknown field (v1beta2's spec.kafka.replicas)", set_("spec.kafka.replicas", 3)),
        ("Kafka", "unknown field (v1beta2's zookeeper)", set_("spec.zookeeper", {"replicas": 3})),
        ("Kafka", "CEL rule", set_("spec.kafka.rack", {"type": "topology-label"})),
        ("KafkaNodePool", "enum", set_("spec.roles", ["broker", "zookeeper"])),
        ("KafkaNodePool", "missing required", delete("spec.storage")),
        ("KafkaTopic", "minimum", set_("spec.partitions", 0)),
        ("KafkaTopic", "unknown field", set_("spec.retention", "7d")),
        ("KafkaUser", "unknown field (v1beta2's singular acl operation)",
         set_("spec.authorization.acls.0.operation", "Read")),
        ("KafkaUser", "wrong type", set_("spec.quotas.producerByteRate", "1MiB")),
        ("KafkaUser", "CEL rule", set_("spec.authentication.validityDays", 30)),
        ("KafkaUser", "metadata unknown field", set_("metadata.label", {"a": "b"})),
        ("KafkaUser", "metadata wrong type", set_("metadata.labels", {"a": 1})),
        ("KafkaUser", "apiVersion not served", set_("apiVersion", "kafka.strimzi.io/v1beta2")),
        ("Deployment", "unknown field", set_("spec.template.spec.containers.0.enviroment", [])),
        ("Deployment", "wrong type", set_("spec.replicas", "2")),
        ("Deployment", "missing required", delete("spec.selector")),
        ("ConfigMap", "wrong type", set_("data", {"agencies.yaml": 1})),
        ("ConfigMap", "unknown field", set_("spec", {})),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "what", "mutate"), _mutations(), ids=[f"{k}: {w}" for k, w, _ in _mutations()]
)
def test_a_mutated_resource_fails_validation(crds: Crds, kind: str, what: str, mutate: Any) -> None:
    resource = _kind(manifests(), kind)
    assert problems(resource, crds) == []
    mutate(resource)
    assert problems(resource, crds), f"{kind}: {what} passed validation"


def test_openapi_differences_are_mapped_not_dropped() -> None:
    from tests.unit.k8s_schemas import to_json_schema, unknown_fields

    schema = {
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True},
            "name": {"type": "string", "nullable": True},
            "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    converted = to_json_schema(schema)
    assert converted["properties"]["port"] == {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    }
    assert converted["properties"]["name"]["type"] == ["string", "null"]
    assert unknown_fields(schema, {"config": {"any.key": 1}, "port": 1}) == []
    assert unknown_fields(schema, {"other": 1}) == [
        "$.other: field not declared by the schema (pruned)"
    ]
    with pytest.raises(NotImplementedError):
        to_json_schema({"x-kubernetes-list-type": "set"})
