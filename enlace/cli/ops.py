"""Operator commands: ``enlace kafka up|down|status|stop-node|start-node``, ``enlace topics``
and ``enlace ops exporter``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from deploy.lag_exporter import ExporterSettings, exporter_for
from deploy.localkafka import DEFAULT_DATA_DIR, LocalKafka
from enlace.core.logs import configure_logging
from enlace.core.registry import Registry
from enlace.core.runtime import serve
from enlace.core.settings import KafkaSettings
from enlace.core.topics import ensure_topics, exchange_topics

kafka_app = typer.Typer(
    help="Run a local Apache Kafka from Maven Central jars.", no_args_is_help=True
)
topics_app = typer.Typer(help="Provision the exchange's topics.", no_args_is_help=True)
console = Console()

DataDir = Annotated[Path, typer.Option("--data-dir", help="Where node data, logs and pids live.")]


@kafka_app.command("up")
def kafka_up(
    nodes: Annotated[int, typer.Option(help="1, or 3 for a replicated cluster.")] = 1,
    port: Annotated[
        int, typer.Option(help="Broker port (3 nodes: 1<port>, 2<port>, 3<port>).")
    ] = 9092,
    secure: Annotated[
        bool,
        typer.Option(
            help="TLS on every listener: SCRAM-SHA-512 over TLS, client certificates on the "
            "MTLS and controller listeners, the ACL authorizer."
        ),
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Fetch Kafka (once), format storage, start the broker(s) and wait until ready."""
    configure_logging("INFO", "console")
    spec = LocalKafka(data_dir).up(nodes, port=port, secure=secure)
    console.print(
        f"[green]Kafka up[/green] bootstrap={spec.bootstrap} nodes={spec.nodes} "
        f"secure={spec.secure}"
    )
    for target in spec.metrics_targets:
        console.print(f"broker metrics (JMX exporter): http://{target}/metrics")
    if spec.secure:
        console.print(f"admin credentials (SCRAM-SHA-512) are in {data_dir / 'cluster.json'}")
        console.print(
            f"clients trust {LocalKafka(data_dir).ca.ca_cert} (ENLACE_KAFKA_SSL_CAFILE); "
            f"SASL_SSL on {spec.bootstrap}, client certificates (mTLS) on {spec.mtls_bootstrap}"
        )


@kafka_app.command("down")
def kafka_down(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Stop what `up` started: SIGTERM, then SIGKILL after 20 s."""
    configure_logging("INFO", "console")
    stopped = LocalKafka(data_dir).down()
    console.print(f"stopped node(s): {stopped}" if stopped else "no Kafka node was running")


@kafka_app.command("status")
def kafka_status(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Say which nodes run where."""
    kafka = LocalKafka(data_dir)
    statuses = kafka.status()
    if not statuses:
        console.print(f"no local Kafka in {data_dir}")
        raise typer.Exit(3)
    table = Table("node", "pid", "state", "listener")
    for node in statuses:
        state = "[green]running[/green]" if node.alive else "[red]stopped[/red]"
        table.add_row(str(node.node_id), str(node.pid or "-"), state, f"127.0.0.1:{node.port}")
    console.print(table)
    if not all(node.alive for node in statuses):
        raise typer.Exit(3)


@kafka_app.command("stop-node")
def kafka_stop_node(
    node_id: int,
    hard: Annotated[bool, typer.Option(help="SIGKILL instead of a clean shutdown.")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Stop one node of the cluster (fault drills)."""
    LocalKafka(data_dir).stop_node(node_id, hard=hard)


@kafka_app.command("start-node")
def kafka_start_node(node_id: int, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Start one stopped node again and wait until it is ready."""
    LocalKafka(data_dir).start_node(node_id)


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic of docs/design.md for each agency of the registry (idempotent)."""
    settings = KafkaSettings()
    configure_logging(settings.log_level, settings.log_format)
    registry = Registry.load(settings.agencies_file)
    specs = exchange_topics(
        registry.ids,
        partitions=settings.topic_partitions,
        replication=settings.topic_replication,
        min_insync=settings.topic_min_insync,
    )
    created = asyncio.run(ensure_topics(settings, specs))
    console.print(f"{len(created)} topic(s) created, {len(specs) - len(created)} already present")


ops_app = typer.Typer(help="Services for the exchange's operators.", no_args_is_help=True)


@ops_app.command("exporter")
def exporter(
    http_port: Annotated[
        int | None, typer.Option(help="Port of /metrics and /health (default 9340).")
    ] = None,
    interval: Annotated[
        float | None, typer.Option(help="Seconds between observations (default 15).")
    ] = None,
) -> None:
    """Export every feed's lag from the broker's side (committed offsets vs the feed's end),
    as the operator principal; a dead partner consumer shows as growing lag."""
    options: dict[str, Any] = {"exporter_http_port": http_port, "exporter_interval_s": interval}
    settings = ExporterSettings(**{k: v for k, v in options.items() if v is not None})
    configure_logging(settings.log_level, settings.log_format)
    serve(exporter_for(settings))


def register(app: typer.Typer) -> None:
    app.add_typer(kafka_app, name="kafka")
    app.add_typer(topics_app, name="topics")
    app.add_typer(ops_app, name="ops")
