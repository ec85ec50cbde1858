"""Kubernetes manifests for Strimzi, rendered from the same registry, topic layout and ACL
plan the local tools use, so a cluster on Kubernetes grants exactly what the tests prove.

Pure: ``render(...)`` returns the manifests as dicts; ``enlace deploy strimzi`` writes them.
Strimzi's ``kafka.strimzi.io/v1`` API (the only one Strimzi 1.0 and later serve), KRaft with a
node pool (the default since Strimzi 0.48, which ignores the old ``strimzi.io/kraft`` and
``strimzi.io/node-pools`` annotations, so they are not set). The operators create the Secrets:
one per KafkaUser (key ``password``) and the cluster CA (``<cluster>-cluster-ca-cert``, key
``ca.crt``), which the router Deployment reads; the ConfigMap carries the registry, the policy
and the key directory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from deploy.acl_plan import (
    OPERATOR_USER,
    ROUTER_USER,
    AclBinding,
    PatternType,
    ResourceType,
    acl_plan,
)
from deploy.strimzi_versions import DEFAULT_KAFKA_VERSION, check_kafka_version
from enlace.core import topics
from enlace.core.registry import Quotas
from enlace.core.topics import TopicSpec, exchange_topics

API = "kafka.strimzi.io/v1"
CONFIG_MAP = "enlace-config"
# The files the router reads from the ConfigMap, by their key in it.
CONFIG_FILES = ("agencies.yaml", "policy.yaml", "keys.yaml")
Manifest = dict[str, Any]

_RESOURCE = {
    ResourceType.TOPIC: "topic",
    ResourceType.GROUP: "group",
    ResourceType.TRANSACTIONAL_ID: "transactionalId",
}
_PATTERN = {PatternType.LITERAL: "literal", PatternType.PREFIXED: "prefix"}


@dataclass(frozen=True)
class ClusterShape:
    name: str = "enlace"
    namespace: str = "enlace"
    kafka_version: str = DEFAULT_KAFKA_VERSION
    replicas: int = 3
    storage: str = "100Gi"
    partitions: int = 3
    router_image: str = "enlace:0.1.0"
    router_prefix: str = topics.ROUTER_PREFIX

    def __post_init__(self) -> None:
        check_kafka_version(self.kafka_version)


def _meta(name: str, shape: ClusterShape, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": shape.namespace,
        "labels": {"strimzi.io/cluster": shape.name, "app.kubernetes.io/part-of": "enlace"},
    }
    meta.update(extra)
    return meta


def kafka_cluster(shape: ClusterShape) -> list[Manifest]:
    isr = str(min(2, shape.replicas))
    pool: Manifest = {
        "apiVersion": API,
        "kind": "KafkaNodePool",
        "metadata": _meta("dual-role", shape),
        "spec": {
            "replicas": shape.replicas,
            "roles": ["controller", "broker"],
            "storage": {"type": "persistent-claim", "size": shape.storage, "deleteClaim": False},
        },
    }
    kafka: Manifest = {
        "apiVersion": API,
        "kind": "Kafka",
        "metadata": {
            "name": shape.name,
            "namespace": shape.namespace,
            "labels": {"app.kubernetes.io/part-of": "enlace"},
        },
        "spec": {
            "kafka": {
                "version": shape.kafka_version,
                "listeners": [
                    {
                        "name": "scram",
                        "port": 9093,
                        "type": "internal",
                        "tls": True,
                        "authentication": {"type": "scram-sha-512"},
                    }
                ],
                "authorization": {"type": "simple"},
                "config": {
                    "auto.create.topics.enable": False,
                    "default.replication.factor": shape.replicas,
                    "min.insync.replicas": isr,
                    "offsets.topic.replication.factor": shape.replicas,
                    "transaction.state.log.replication.factor": shape.replicas,
                    "transaction.state.log.min.isr": isr,
                    "unclean.leader.election.enable": False,
                },
            },
            "entityOperator": {"topicOperator": {}, "userOperator": {}},
        },
    }
    return [pool, kafka]


def kafka_topics(specs: Iterable[TopicSpec], shape: ClusterShape) -> list[Manifest]:
    return [
        {
            "apiVersion": API,
            "kind": "KafkaTopic",
            # Kubernetes names allow no dots or upper case; the real name goes in spec.
            "metadata": _meta(spec.name.replace(".", "-").replace("_", "-"), shape),
            "spec": {
                "topicName": spec.name,
                "partitions": spec.partitions,
                "replicas": spec.replication,
                "config": dict(spec.configs),
            },
        }
        for spec in specs
    ]


def kafka_users(
    plan: Iterable[AclBinding], shape: ClusterShape, quotas: Mapping[str, Quotas] | None = None
) -> list[Manifest]:
    """One KafkaUser per principal, SCRAM-SHA-512, with exactly its ACLs from the plan and,
    for an agency, its quotas (the router and operators have none)."""
    grouped: dict[tuple[str, ResourceType, PatternType, str], list[str]] = defaultdict(list)
    for binding in sorted(plan):
        key = (
            binding.principal,
            binding.resource_type,
            binding.pattern_type,
            binding.resource_name,
        )
        grouped[key].append(binding.operation.value.capitalize())
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (principal, rtype, pattern, name), operations in grouped.items():
        by_user[principal.removeprefix("User:")].append(
            {
                "resource": {
                    "type": _RESOURCE[rtype],
                    "name": name,
                    "patternType": _PATTERN[pattern],
                },
                "operations": sorted(set(operations)),
                "host": "*",
            }
        )
    return [
        {
            "apiVersion": API,
            "kind": "KafkaUser",
            "metadata": _meta(user, shape),
            "spec": {
                "authentication": {"type": "scram-sha-512"},
                "authorization": {"type": "simple", "acls": acls},
                **_user_quotas(user, quotas),
            },
        }
        for user, acls in sorted(by_user.items())
    ]


def _user_quotas(user: str, quotas: Mapping[str, Quotas] | None) -> dict[str, Any]:
    if user in (ROUTER_USER, OPERATOR_USER):
        return {}
    limits = (quotas or {}).get(user) or Quotas()
    return {
        "quotas": {
            "producerByteRate": limits.producer_byte_rate,
            "consumerByteRate": limits.consumer_byte_rate,
            "requestPercentage": limits.request_percentage,
        }
    }


def router_deployment(shape: ClusterShape) -> list[Manifest]:
    """The router: two instances in one group (they share the input partitions)."""
    labels = {"app.kubernetes.io/name": "enlace-router", "app.kubernetes.io/part-of": "enlace"}
    env = [
        {"name": "ENLACE_KAFKA_BOOTSTRAP", "value": f"{shape.name}-kafka-bootstrap:9093"},
        {"name": "ENLACE_KAFKA_SECURITY_PROTOCOL", "value": "SASL_SSL"},
        {"name": "ENLACE_KAFKA_SSL_CAFILE", "value": "/etc/enlace/ca/ca.crt"},
        {"name": "ENLACE_KAFKA_SASL_USERNAME", "value": ROUTER_USER},
        {
            "name": "ENLACE_KAFKA_SASL_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": ROUTER_USER, "key": "password"}},
        },
        {"name": "ENLACE_ROUTER_PREFIX", "value": shape.router_prefix},
        {"name": "ENLACE_TOPIC_REPLICATION", "value": str(shape.replicas)},
        {"name": "ENLACE_TOPIC_MIN_INSYNC", "value": str(min(2, shape.replicas))},
        {"name": "ENLACE_AGENCIES_FILE", "value": "/etc/enlace/config/agencies.yaml"},
        {"name": "ENLACE_POLICY_FILE", "value": "/etc/enlace/config/policy.yaml"},
        {"name": "ENLACE_KEYS_FILE", "value": "/etc/enlace/config/keys.yaml"},
        {"name": "ENLACE_HTTP_HOST", "value": "0.0.0.0"},  # noqa: S104 - inside the pod
        {"name": "ENLACE_LOG_FORMAT", "value": "json"},
    ]
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "enlace-router", "namespace": shape.namespace, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9180"},
                },
                "spec": {
                    "terminationGracePeriodSeconds": 60,
                    "containers": [
                        {
                            "name": "router",
                            "image": shape.router_image,
                            "args": ["router", "run"],
                            "env": env,
                            "ports": [{"name": "metrics", "containerPort": 9180}],
                            "readinessProbe": {"httpGet": {"path": "/health", "port": 9180}},
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": 9180},
                                "initialDelaySeconds": 120,
                            },
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/enlace/config"},
                                {"name": "cluster-ca", "mountPath": "/etc/enlace/ca"},
                            ],
                        }
                    ],
                    "volumes": [
                        # agencies.yaml, policy.yaml and keys.yaml (config_map below).
                        {"name": "config", "configMap": {"name": CONFIG_MAP}},
                        {
                            "name": "cluster-ca",
                            "secret": {"secretName": f"{shape.name}-cluster-ca-cert"},
                        },
                    ],
                },
            },
        },
    }
    return [deployment]


def config_map(files: Mapping[str, str], shape: ClusterShape) -> Manifest:
    """The router's configuration files (key = file name in CONFIG_FILES, value = text)."""
    missing = set(CONFIG_FILES) - set(files)
    if missing:
        raise ValueError(f"config map lacks {sorted(missing)}")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIG_MAP,
            "namespace": shape.namespace,
            "labels": {"app.kubernetes.io/part-of": "enlace"},
        },
        "data": {name: files[name] for name in CONFIG_FILES},
    }


def render(
    agencies: Iterable[str],
    shape: ClusterShape | None = None,
    quotas: Mapping[str, Quotas] | None = None,
    config_files: Mapping[str, str] | None = None,
) -> list[Manifest]:
    """Everything for one exchange: cluster, topics, users with ACLs and quotas, the router
    and, given the files' texts, its ConfigMap."""
    shape = shape or ClusterShape()
    ids = list(agencies)
    specs = exchange_topics(
        ids,
        partitions=shape.partitions,
        replication=shape.replicas,
        min_insync=min(2, shape.replicas),
        router_prefix=shape.router_prefix,
    )
    plan = acl_plan(ids, shape.router_prefix)
    return [
        *kafka_cluster(shape),
        *kafka_topics(specs, shape),
        *kafka_users(plan, shape, quotas),
        *([config_map(config_files, shape)] if config_files is not None else []),
        *router_deployment(shape),
    ]
