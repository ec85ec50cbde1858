"""``enlace deploy strimzi``: Kubernetes manifests for the exchange, rendered from the registry,
the topic layout and the ACL plan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from deploy.strimzi import ClusterShape, render
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_AGENCIES

deploy_app = typer.Typer(help="Deployment manifests.", no_args_is_help=True)

FILES = {
    "KafkaNodePool": "00-kafka.yaml",
    "Kafka": "00-kafka.yaml",
    "KafkaTopic": "10-topics.yaml",
    "KafkaUser": "20-users.yaml",
    "Deployment": "30-router.yaml",
}


@deploy_app.command("strimzi")
def strimzi(
    out: Annotated[Path, typer.Option(help="Directory for the manifests.")] = Path(
        ".enlace/strimzi"
    ),
    agencies: Annotated[Path, typer.Option(help="Agency registry.")] = DEFAULT_AGENCIES,
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace.")] = "enlace",
    cluster: Annotated[str, typer.Option(help="Kafka cluster name.")] = "enlace",
    kafka_version: Annotated[str, typer.Option(help="A version your Strimzi supports.")] = "4.0.0",
    image: Annotated[str, typer.Option(help="Container image of Enlace.")] = "enlace:0.1.0",
) -> None:
    """Write Kafka (KRaft, 3 nodes, SCRAM + TLS, simple authorization), KafkaTopics, KafkaUsers
    with exactly the ACL plan of `enlace acl show`, and the router Deployment."""
    registry = Registry.load(agencies)
    shape = ClusterShape(
        name=cluster, namespace=namespace, kafka_version=kafka_version, router_image=image
    )
    out.mkdir(parents=True, exist_ok=True)
    documents: dict[str, list[object]] = {}
    for manifest in render(registry.ids, shape, registry.all_quotas):
        documents.setdefault(FILES[manifest["kind"]], []).append(manifest)
    for name, docs in sorted(documents.items()):
        (out / name).write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
        typer.echo(f"{out / name}: {len(docs)} manifest(s)")
    typer.echo(
        f"then: kubectl -n {namespace} create configmap enlace-config "
        "--from-file=deploy/agencies.yaml --from-file=deploy/policy.yaml "
        "--from-file=deploy/keys.yaml; "
        f"kubectl -n {namespace} apply -f {out}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")
