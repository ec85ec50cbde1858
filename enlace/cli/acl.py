"""``enlace acl show|provision|credentials|certificates``: per-agency SCRAM users, client
certificates and ACLs on Kafka."""

from __future__ import annotations

import asyncio
import datetime as dt
import shlex
from pathlib import Path
from typing import Annotated

import typer
from pydantic import Field
from rich.console import Console

from deploy.acl_plan import DEFAULT_ROUTER_PREFIX, AclBinding, acl_command_args, acl_plan
from deploy.localkafka import CLUSTER_FILE, DEFAULT_DATA_DIR, LocalKafka
from deploy.provisioning import (
    CREDENTIALS_FILE,
    AdminConnection,
    load_credentials,
    password_env_var,
    provision,
)
from enlace.core.errors import ConfigError
from enlace.core.logs import configure_logging
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_STATE_DIR, KafkaSettings

acl_app = typer.Typer(
    help="Per-agency SCRAM credentials and Kafka ACLs (docs/design.md, Security).",
    no_args_is_help=True,
)
console = Console()


class AclSettings(KafkaSettings):
    """Environment: ``ENLACE_ROUTER_PREFIX`` (as the router's), ``ENLACE_STATE_DIR``."""

    router_prefix: str = DEFAULT_ROUTER_PREFIX
    state_dir: Path = DEFAULT_STATE_DIR
    acl_parallel: int = Field(default=0, ge=0, le=16, description="JVMs at once; 0 = auto.")

    @property
    def credentials_path(self) -> Path:
        return self.state_dir / CREDENTIALS_FILE


DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="A local secure cluster (`enlace kafka up --secure`) whose admin to use. Default: "
        "ENLACE_KAFKA_SASL_USERNAME/PASSWORD if set, else the default local cluster.",
    ),
]


def _admin(settings: AclSettings, data_dir: Path | None) -> AdminConnection:
    if data_dir is not None:
        return AdminConnection.from_cluster(data_dir)
    if settings.kafka_sasl_username:
        return AdminConnection.from_settings(settings)
    if (DEFAULT_DATA_DIR / CLUSTER_FILE).exists():
        return AdminConnection.from_cluster(DEFAULT_DATA_DIR)
    raise ConfigError(
        "no admin credentials: pass --data-dir of a secure local cluster or set "
        "ENLACE_KAFKA_SECURITY_PROTOCOL=SASL_SSL, ENLACE_KAFKA_SASL_USERNAME and "
        "ENLACE_KAFKA_SASL_PASSWORD"
    )


def _describe(binding: AclBinding) -> tuple[str, str, str, str]:
    return (
        binding.principal,
        binding.resource_type.value.lower().replace("_", "-"),
        binding.pattern_type.value.lower(),
        binding.resource_name,
    )


@acl_app.command("show")
def acl_show(
    commands: Annotated[
        bool, typer.Option("--commands", help="Print the AclCommand arguments instead.")
    ] = False,
) -> None:
    """List the ACL plan and quotas for the agencies of the registry (reads nothing from
    Kafka)."""
    settings = AclSettings()
    registry = Registry.load(settings.agencies_file)
    plan = acl_plan(registry.ids, settings.router_prefix)
    if commands:
        for args in acl_command_args(plan):
            typer.echo(shlex.join(args))
        return
    ops: dict[tuple[str, str, str, str], list[str]] = {}
    for binding in plan:
        ops.setdefault(_describe(binding), []).append(binding.operation.value)
    # Plain aligned lines rather than a table: greppable and never wrapped mid-name.
    rows = [(*key, ",".join(operations)) for key, operations in ops.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[4]]))
    console.print(
        f"{len(plan)} ACLs for {len(registry)} agencies, the router and operators; "
        "everything else is denied"
    )
    typer.echo("quotas per broker (producer B/s, consumer B/s, request %):")
    for agency, quotas in registry.all_quotas.items():
        typer.echo(
            f"  User:{agency}  {quotas.producer_byte_rate}  {quotas.consumer_byte_rate}  "
            f"{quotas.request_percentage:g}"
        )
    console.print("the router and operators have no quota (they carry every agency's traffic)")


@acl_app.command("provision")
def acl_provision(
    data_dir: DataDirOpt = None,
    prune: Annotated[
        bool, typer.Option(help="Remove ACLs of Enlace principals that the plan no longer has.")
    ] = False,
    reset_passwords: Annotated[
        bool, typer.Option(help="Set every SCRAM credential again (after out-of-band changes).")
    ] = False,
) -> None:
    """Create SCRAM-SHA-512 users, set each agency's quotas and apply the ACL plan
    (idempotent).

    Passwords come from ENLACE_SCRAM_PASSWORD_<NAME> (e.g. ENLACE_SCRAM_PASSWORD_CR_MSP),
    else from <state-dir>/credentials.json, else are generated and saved there (mode 0600).
    """
    settings = AclSettings()
    configure_logging(settings.log_level, settings.log_format)
    registry = Registry.load(settings.agencies_file)
    report = asyncio.run(
        provision(
            registry.ids,
            _admin(settings, data_dir),
            credentials_path=settings.credentials_path,
            router_prefix=settings.router_prefix,
            quotas=registry.all_quotas,
            prune=prune,
            reset_passwords=reset_passwords,
            parallel=settings.acl_parallel or None,
        )
    )
    typer.echo(
        f"credentials set: {len(report.credentials_set)}, unchanged: "
        f"{len(report.credentials_kept)}, removed: {len(report.users_removed)}; quotas set: "
        f"{len(report.quotas_set)}, cleared: {len(report.quotas_cleared)}; ACLs added: "
        f"{len(report.acls_added)}, removed: {len(report.acls_removed)}; "
        f"{report.jvm_launches} JVM launches, {report.seconds:.1f}s"
    )
    if report.credentials_set:
        console.print(f"passwords are in {settings.credentials_path} (mode 0600)")
    if report.acls_stale or report.users_stale:
        console.print(
            f"[yellow]{len(report.acls_stale)} ACL(s) and {len(report.users_stale)} user(s) of "
            "Enlace principals are not in the plan (an agency left the registry?); --prune "
            "removes them[/yellow]"
        )
        for name in report.users_stale:
            typer.echo(f"  user {name}")
        for binding in report.acls_stale:
            typer.echo("  " + " ".join(_describe(binding)) + f" {binding.operation.value}")


@acl_app.command("credentials")
def acl_credentials(
    name: Annotated[str, typer.Argument(help="An agency id, enlace-router or enlace-operator.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Print the ENLACE_KAFKA_* lines a service of NAME needs (shows the password)."""
    settings = AclSettings()
    stored = load_credentials(settings.credentials_path)
    if name not in stored:
        raise ConfigError(
            f"no stored password for {name!r} in {settings.credentials_path} (run `enlace acl "
            f"provision`, or it comes from {password_env_var(name)})"
        )
    client = _admin(settings, data_dir).client_settings(name, stored[name])
    typer.echo(f"ENLACE_KAFKA_BOOTSTRAP={client.kafka_bootstrap}")
    typer.echo(f"ENLACE_KAFKA_SECURITY_PROTOCOL={client.kafka_security_protocol}")
    if client.kafka_ssl_cafile is not None:
        typer.echo(f"ENLACE_KAFKA_SSL_CAFILE={shlex.quote(str(client.kafka_ssl_cafile))}")
    typer.echo(f"ENLACE_KAFKA_SASL_USERNAME={name}")
    typer.echo(f"ENLACE_KAFKA_SASL_PASSWORD={shlex.quote(stored[name])}")


@acl_app.command("certificates")
def acl_certificates(
    name: Annotated[str, typer.Argument(help="An agency id (or any principal of the plan).")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write NAME.pem and NAME.key. Default: the state dir's certificates/."
        ),
    ] = None,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The local secure cluster whose CA signs.")
    ] = DEFAULT_DATA_DIR,
) -> None:
    """Issue a client certificate for mTLS: the broker's MTLS listener maps it to User:NAME.

    The certificate replaces the SCRAM password, not the ACLs: NAME may do exactly what
    `enlace acl show` grants it. Prints the ENLACE_KAFKA_* lines that use it."""
    settings = AclSettings()
    kafka = LocalKafka(data_dir)
    spec = kafka.spec()
    if spec is None or not spec.secure or not kafka.ca.exists():
        raise ConfigError(
            f"no secure local cluster with a CA in {data_dir}; `enlace kafka up --secure` makes "
            "one (for Strimzi, KafkaUser with `authentication: tls` issues certificates)"
        )
    issued = kafka.ca.issue_client(
        name, out or settings.state_dir / "certificates", now=dt.datetime.now(dt.UTC)
    )
    typer.echo(f"ENLACE_KAFKA_BOOTSTRAP={spec.mtls_bootstrap}")
    typer.echo("ENLACE_KAFKA_SECURITY_PROTOCOL=SSL")
    typer.echo(f"ENLACE_KAFKA_SSL_CAFILE={shlex.quote(str(kafka.ca.ca_cert))}")
    typer.echo(f"ENLACE_KAFKA_SSL_CERTFILE={shlex.quote(str(issued.cert))}")
    typer.echo(f"ENLACE_KAFKA_SSL_KEYFILE={shlex.quote(str(issued.key))}")


def register(app: typer.Typer) -> None:
    app.add_typer(acl_app, name="acl")
