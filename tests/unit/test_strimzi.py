"""The Strimzi manifests carry exactly the topic layout and the ACL plan the tests prove."""

from __future__ import annotations

import re
from typing import Any

import yaml

from deploy.acl_plan import acl_plan
from deploy.strimzi import ClusterShape, render
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES
from enlace.core.topics import exchange_topics

AGENCIES = Registry.load(DEFAULT_AGENCIES).ids
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def manifests() -> list[dict[str, Any]]:
    # Round trip through YAML, as kubectl would read them.
    return list(yaml.safe_load_all(yaml.safe_dump_all(render(AGENCIES), sort_keys=False)))


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
