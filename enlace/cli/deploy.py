"""``enlace deploy strimzi``: Kubernetes manifests for the exchange, rendered from the registry,
the topic layout and the ACL plan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from deploy.strimzi import ClusterShape, render
from deploy.strimzi_versions import DEFAULT_KAFKA_VERSION, SUPPORTED_KAFKA_VERSIONS
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES, DEFAULT_KEYS, DEFAULT_POLICY

deploy_app = typer.Typer(help="Deployment manifests.", no_args_is_help=True)

FILES = {
    "KafkaNodePool": "00-kafka.yaml",
    "Kafka": "00-kafka.yaml",
    "KafkaTopic": "10-topics.yaml",
    "KafkaUser": "20-users.yaml",
    "ConfigMap": "30-router.yaml",
    "Deployment": "30-router.yaml",
}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the ConfigMap's files) as literal blocks, readable in review."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


@deploy_app.command("strimzi")
def strimzi(
    out: Annotated[Path, typer.Option(help="Directory for the manifests.")] = Path(
        ".enlace/strimzi"
    ),
    agencies: Annotated[Path, typer.Option(help="Agency registry.")] = DEFAULT_AGENCIES,
    policy: Annotated[Path, typer.Option(help="Release policy (into the ConfigMap).")] = (
        DEFAULT_POLICY
    ),
    keys: Annotated[Path, typer.Option(help="Key directory (into the ConfigMap).")] = (
        DEFAULT_KEYS
    ),
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace.")] = "enlace",
    cluster: Annotated[str, typer.Option(help="Kafka cluster name.")] = "enlace",
    kafka_version: Annotated[
        str,
        typer.Option(help=f"Kafka version: one of {', '.join(SUPPORTED_KAFKA_VERSIONS)}."),
    ] = DEFAULT_KAFKA_VERSION,
    image: Annotated[str, typer.Option(help="Container image of Enlace.")] = "enlace:0.1.0",
) -> None:
    """Write Kafka (KRaft, 3 nodes, SCRAM + TLS, simple authorization), KafkaTopics, KafkaUsers
    with exactly the ACL plan of `enlace acl show`, the router's ConfigMap (registry, policy,
    key directory) and its Deployment, as `kafka.strimzi.io/v1`."""
    registry = Registry.load(agencies)
    shape = ClusterShape(
        name=cluster, namespace=namespace, kafka_version=kafka_version, router_image=image
    )
    files = {
        "agencies.yaml": agencies.read_text(encoding="utf-8"),
        "policy.yaml": policy.read_text(encoding="utf-8"),
        "keys.yaml": keys.read_text(encoding="utf-8"),
    }
    out.mkdir(parents=True, exist_ok=True)
    documents: dict[str, list[object]] = {}
    for manifest in render(registry.ids, shape, registry.all_quotas, files):
        documents.setdefault(FILES[manifest["kind"]], []).append(manifest)
    for name, docs in sorted(documents.items()):
        text = yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
        (out / name).write_text(text, encoding="utf-8")
        typer.echo(f"{out / name}: {len(docs)} manifest(s)")
    typer.echo(f"then: kubectl create namespace {namespace}; kubectl apply -f {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")
