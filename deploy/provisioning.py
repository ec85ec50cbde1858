"""Apply the security plan to a running Kafka: SCRAM users and ACLs, through Kafka's own CLIs.

aiokafka has no SCRAM or ACL admin API, so ``org.apache.kafka.tools.ConfigCommand`` sets the
SCRAM-SHA-512 credentials (one launch per user: the tool alters one entity at a time) and
``org.apache.kafka.tools.AclCommand`` the ACLs (one launch per group of
:func:`deploy.acl_plan.acl_command_args`). JVM launches are the cost, so provisioning reads
the broker's state first (two launches), changes only what differs, runs launches a few at a
time, and keeps a class-data-sharing archive next to the jars (a launch drops from ~1.7 s to
~0.8 s of CPU).

Secrets never reach argv: the admin's JAAS line and each user's password go through 0600
files in a private temporary directory that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from pydantic import SecretStr

from deploy.acl_plan import (
    DEFAULT_ROUTER_PREFIX,
    AclBinding,
    acl_command_args,
    acl_diff,
    acl_plan,
    is_managed_principal,
    parse_acl_list,
    parse_scram_users,
    principals,
    user,
)
from deploy.localkafka import ADMIN_USER, DEFAULT_LIBS, LocalKafka, fetch_jars, java_binary
from deploy.quota_plan import clear_quota_args, parse_user_quotas, quota_diff, set_quota_args
from enlace.core.errors import BrokerError, ConfigError
from enlace.core.logs import get_logger
from enlace.core.registry import Quotas
from enlace.core.settings import SCRAM_MECHANISM, KafkaSettings

CONFIG_COMMAND = "org.apache.kafka.tools.ConfigCommand"
ACL_COMMAND = "org.apache.kafka.tools.AclCommand"
CREDENTIALS_FILE = "credentials.json"
PASSWORD_ENV_PREFIX = "ENLACE_SCRAM_PASSWORD_"  # noqa: S105 - an env var name, not a secret
TOOL_TIMEOUT_S = 120.0
# C1 only and the serial GC: a CLI that lives a second gains nothing from C2 or G1.
_TOOL_JVM_OPTS = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
# JVM warnings (CDS mismatches after a JDK upgrade) on stderr, never mixed into parsed stdout.
_QUIET_JVM_LOG = ("-Xlog:disable", "-Xlog:all=error:stderr")
_QUIET_LOG4J = """\
appender.console.type = Console
appender.console.name = STDERR
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
"""

log = get_logger(__name__)


@dataclass(frozen=True)
class AdminConnection:
    """How the provisioner reaches the broker as a super user."""

    bootstrap: str
    username: str
    password: str = field(repr=False)
    security_protocol: str = "SASL_PLAINTEXT"
    ssl_cafile: Path | None = None

    @classmethod
    def from_cluster(cls, data_dir: Path) -> Self:
        """The admin of a secure cluster started by ``enlace kafka up --secure``."""
        spec = LocalKafka(data_dir).spec()
        if spec is None:
            raise ConfigError(f"no local Kafka in {data_dir} (cluster.json is missing)")
        if not spec.secure:
            raise ConfigError(
                f"the Kafka in {data_dir} runs without SASL/ACLs; start it with "
                "`enlace kafka up --secure`"
            )
        ca = LocalKafka(data_dir).ca
        if not ca.exists():
            raise ConfigError(
                f"the secure Kafka in {data_dir} has no certificate authority (it predates "
                "TLS): `enlace kafka down`, remove the data dir and `enlace kafka up --secure`"
            )
        return cls(spec.bootstrap, ADMIN_USER, spec.admin_password, "SASL_SSL", ca.ca_cert)

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> Self:
        """The admin named by ``ENLACE_KAFKA_SASL_USERNAME`` / ``ENLACE_KAFKA_SASL_PASSWORD``."""
        if not settings.kafka_security_protocol.startswith("SASL"):
            raise ConfigError("provisioning needs ENLACE_KAFKA_SECURITY_PROTOCOL=SASL_*")
        if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
            raise ConfigError(
                "provisioning needs ENLACE_KAFKA_SASL_USERNAME and ENLACE_KAFKA_SASL_PASSWORD "
                "of a super user (or --data-dir of a local secure cluster)"
            )
        return cls(
            settings.kafka_bootstrap,
            settings.kafka_sasl_username,
            settings.kafka_sasl_password.get_secret_value(),
            settings.kafka_security_protocol,
            settings.kafka_ssl_cafile,
        )

    def command_config(self) -> str:
        """The ``--command-config`` properties of Kafka's CLIs."""
        lines = [
            f"security.protocol={self.security_protocol}",
            f"sasl.mechanism={SCRAM_MECHANISM}",
            (
                "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
                f'required username="{_jaas_escape(self.username)}" '
                f'password="{_jaas_escape(self.password)}";'
            ),
        ]
        if self.ssl_cafile is not None:
            lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={self.ssl_cafile}"]
        return "\n".join(lines) + "\n"

    def client_settings(self, username: str, password: str) -> KafkaSettings:
        """aiokafka settings of another principal on the same cluster."""
        return KafkaSettings(
            kafka_bootstrap=self.bootstrap,
            kafka_security_protocol="SASL_SSL"
            if self.security_protocol == "SASL_SSL"
            else "SASL_PLAINTEXT",
            kafka_sasl_username=username,
            kafka_sasl_password=SecretStr(password),
            kafka_ssl_cafile=self.ssl_cafile,
        )


def _jaas_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


# -- credentials --------------------------------------------------------------------------
def password_env_var(name: str) -> str:
    """``cr-msp`` → ``ENLACE_SCRAM_PASSWORD_CR_MSP`` (agency ids never contain ``_``)."""
    return PASSWORD_ENV_PREFIX + name.upper().replace("-", "_")


def load_credentials(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc}") from exc
    users = raw.get("users") if isinstance(raw, dict) else None
    if not isinstance(users, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in users.items()
    ):
        raise ConfigError(f"credentials file {path} is malformed (expected {{'users': {{}}}})")
    return dict(users)


def save_credentials(path: Path, users: Mapping[str, str]) -> None:
    """Write atomically, readable by the owner only (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(
        {"mechanism": SCRAM_MECHANISM, "users": dict(sorted(users.items()))}, indent=2
    )
    fd, tmp = tempfile.mkstemp(prefix=".credentials.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body + "\n")
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    path.chmod(0o600)


@dataclass(frozen=True)
class ResolvedPasswords:
    passwords: dict[str, str] = field(repr=False)
    # Passwords the broker may not hold yet: freshly generated or supplied by the environment.
    unsynced: frozenset[str]
    stored: dict[str, str] = field(repr=False)  # what the credentials file should hold


def resolve_passwords(
    names: Iterable[str], stored: Mapping[str, str], env: Mapping[str, str]
) -> ResolvedPasswords:
    """Environment first, then the credentials file, else a new random password."""
    passwords: dict[str, str] = {}
    unsynced: set[str] = set()
    keep = dict(stored)
    for name in names:
        from_env = env.get(password_env_var(name))
        if from_env:
            passwords[name] = from_env
            unsynced.add(name)
            keep.pop(name, None)  # the environment owns it; no stale copy on disk
        elif name in stored:
            passwords[name] = stored[name]
        else:
            passwords[name] = keep[name] = secrets.token_urlsafe(24)
            unsynced.add(name)
    return ResolvedPasswords(passwords, frozenset(unsynced), keep)


# -- running Kafka's CLIs -----------------------------------------------------------------
class KafkaTools:
    """Kafka's Java CLIs against one cluster, a few JVMs at a time, secrets in 0600 files."""

    def __init__(self, conn: AdminConnection, libs: Path = DEFAULT_LIBS, parallel: int = 2) -> None:
        self.conn = conn
        self.libs = libs
        self.launches = 0
        self._semaphore = asyncio.Semaphore(max(1, parallel))
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._archive = libs.parent / "tools.jsa"
        # Scrubbed from error messages: a tool may echo a malformed config line back.
        self._secrets = {conn.password} - {""}

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(fetch_jars, self.libs)
        java_binary()  # fail early with the install hint
        self._tmp = tempfile.TemporaryDirectory(prefix="enlace-acl-")
        work = Path(self._tmp.name)
        (work / "admin.properties").write_text(self.conn.command_config(), encoding="utf-8")
        (work / "log4j2.properties").write_text(_QUIET_LOG4J, encoding="utf-8")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def _work(self) -> Path:
        assert self._tmp is not None, "use `async with KafkaTools(...)`"
        return Path(self._tmp.name)

    def secret_file(self, name: str, content: str, secret: str) -> Path:
        """A 0600 file in the private work dir; ``secret`` is scrubbed from tool errors."""
        if secret:
            self._secrets.add(secret)
        path = self._work / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        return path

    async def run(self, main_class: str, *args: str) -> str:
        """Run one CLI with the admin connection; its stdout, or BrokerError with its stderr."""
        connection = [
            "--bootstrap-server", self.conn.bootstrap,
            "--command-config", str(self._work / "admin.properties"),
        ]  # fmt: skip
        async with self._semaphore:
            cds, dumped = self._cds_flags()
            cmd = [
                java_binary(), *_TOOL_JVM_OPTS, *_QUIET_JVM_LOG, *cds,
                f"-Dlog4j2.configurationFile={self._work / 'log4j2.properties'}",
                "-cp", f"{self.libs}/*", main_class, *connection, *args,
            ]  # fmt: skip
            self.launches += 1
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(), TOOL_TIMEOUT_S)
            except TimeoutError as exc:
                proc.kill()
                await proc.wait()
                raise BrokerError(f"{main_class} did not finish in {TOOL_TIMEOUT_S:.0f}s") from exc
            if dumped is not None:
                self._adopt_archive(dumped, proc.returncode == 0)
        stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        if proc.returncode != 0:
            # The tools print their error on stdout.
            detail = (stdout + stderr).strip()
            for secret in self._secrets:
                detail = detail.replace(secret, "***")
            detail = detail[-1500:]
            raise BrokerError(f"{main_class.rsplit('.', 1)[-1]} {args[0]} failed: {detail}")
        return stdout

    def _cds_flags(self) -> tuple[list[str], Path | None]:
        """Use the class-data archive if there is one, else have this launch write it."""
        if self._archive.exists():
            return [f"-XX:SharedArchiveFile={self._archive}"], None
        if not os.access(self._archive.parent, os.W_OK):
            return [], None
        dump = self._work / f"tools-{secrets.token_hex(4)}.jsa"
        return [f"-XX:ArchiveClassesAtExit={dump}"], dump

    def _adopt_archive(self, dumped: Path, ok: bool) -> None:
        if ok and dumped.exists() and not self._archive.exists():
            # Atomic: a concurrent launch sees no archive or a whole one.
            dumped.replace(self._archive)
        dumped.unlink(missing_ok=True)

    async def run_all(self, invocations: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
        """Run every invocation (``parallel`` at a time); BrokerError naming all failures."""
        results = await asyncio.gather(
            *(self.run(main, *args) for main, args in invocations), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise BrokerError(
                f"{len(failures)} of {len(invocations)} provisioning step(s) failed; first: "
                f"{failures[0]}"
            ) from failures[0]
        return [r for r in results if isinstance(r, str)]


# -- provisioning -------------------------------------------------------------------------
@dataclass(frozen=True)
class ProvisionReport:
    credentials_set: tuple[str, ...]
    credentials_kept: tuple[str, ...]
    quotas_set: tuple[str, ...]
    quotas_cleared: tuple[str, ...]
    acls_added: tuple[AclBinding, ...]
    acls_removed: tuple[AclBinding, ...]
    # Bindings and users of Enlace principals the plan no longer names (prune removes them).
    acls_stale: tuple[AclBinding, ...]
    users_removed: tuple[str, ...]
    users_stale: tuple[str, ...]
    jvm_launches: int
    seconds: float

    @property
    def changed(self) -> bool:
        return bool(
            self.credentials_set
            or self.quotas_set
            or self.quotas_cleared
            or self.acls_added
            or self.acls_removed
            or self.users_removed
        )


@dataclass(frozen=True)
class BrokerState:
    users: set[str]  # with a SCRAM credential
    quotas: dict[str, dict[str, float]]
    acls: set[AclBinding]


async def read_state(tools: KafkaTools) -> BrokerState:
    """SCRAM users, user quotas and ACLs the broker holds now (two launches, side by side)."""
    users_out, acls_out = await tools.run_all(
        [
            (CONFIG_COMMAND, ["--describe", "--entity-type", "users"]),
            (ACL_COMMAND, ["--list"]),
        ]
    )
    return BrokerState(
        parse_scram_users(users_out), parse_user_quotas(users_out), parse_acl_list(acls_out)
    )


def _set_password_step(tools: KafkaTools, name: str, password: str) -> tuple[str, list[str]]:
    secret = tools.secret_file(
        f"scram-{name}.properties", f"{SCRAM_MECHANISM}=password={password}\n", password
    )
    return CONFIG_COMMAND, [
        "--alter", "--add-config-file", str(secret), "--entity-type", "users",
        "--entity-name", name,
    ]  # fmt: skip


def _delete_user_step(name: str) -> tuple[str, list[str]]:
    return CONFIG_COMMAND, [
        "--alter", "--delete-config", SCRAM_MECHANISM, "--entity-type", "users",
        "--entity-name", name,
    ]  # fmt: skip


async def provision(
    agencies: Sequence[str],
    conn: AdminConnection,
    *,
    credentials_path: Path,
    router_prefix: str = DEFAULT_ROUTER_PREFIX,
    libs: Path = DEFAULT_LIBS,
    quotas: Mapping[str, Quotas] | None = None,
    prune: bool = False,
    reset_passwords: bool = False,
    env: Mapping[str, str] | None = None,
    parallel: int | None = None,
) -> ProvisionReport:
    """Make the broker hold a SCRAM user per principal, each agency's quotas (``quotas``, else
    :class:`Quotas` defaults) and exactly the plan's ACLs.

    Idempotent: a second run reads the state (two JVM launches) and changes nothing.
    Passwords are saved (0600) before the broker learns them, so a failed run never leaves a
    user whose password is lost. With ``prune``, Enlace principals that the plan no longer
    names (an agency that left the registry) lose their ACLs and their SCRAM credential.
    """
    started = time.monotonic()
    plan = acl_plan(agencies, router_prefix)
    names = principals(agencies)
    stored = load_credentials(credentials_path)
    resolved = resolve_passwords(names, stored, os.environ if env is None else env)
    if resolved.stored != stored:
        save_credentials(credentials_path, resolved.stored)
    workers = parallel or min(4, max(2, os.cpu_count() or 2))
    async with KafkaTools(conn, libs, workers) as tools:
        state = await read_state(tools)
        existing_users = state.users
        desired_quotas = {a: (quotas or {}).get(a) or Quotas() for a in agencies}
        quota_changes = quota_diff(
            desired_quotas, state.quotas, managed=lambda u: is_managed_principal(user(u))
        )
        to_set = [
            n for n in names if reset_passwords or n in resolved.unsynced or n not in existing_users
        ]
        departed = sorted(
            u for u in existing_users if u not in names and is_managed_principal(user(u))
        )
        diff = acl_diff(plan, state.acls)
        steps = [_set_password_step(tools, n, resolved.passwords[n]) for n in to_set]
        steps += [(CONFIG_COMMAND, set_quota_args(u, c)) for u, c in quota_changes.to_set.items()]
        # Without prune a departed agency keeps its quotas, as it keeps its ACLs (reported).
        clearing = {
            u: keys for u, keys in quota_changes.to_clear.items() if prune or u not in departed
        }
        steps += [(CONFIG_COMMAND, clear_quota_args(u, k)) for u, k in clearing.items()]
        steps += [(ACL_COMMAND, args) for args in acl_command_args(diff.missing, "add")]
        if prune:
            steps += [(ACL_COMMAND, args) for args in acl_command_args(diff.extra, "remove")]
            steps += [_delete_user_step(name) for name in departed]
        await tools.run_all(steps)
        launches = tools.launches
    if prune and any(name in resolved.stored for name in departed):
        # A departed agency's password has no use left; do not keep a secret around.
        save_credentials(
            credentials_path, {k: v for k, v in resolved.stored.items() if k not in departed}
        )
    report = ProvisionReport(
        credentials_set=tuple(to_set),
        credentials_kept=tuple(n for n in names if n not in to_set),
        quotas_set=tuple(quota_changes.to_set),
        quotas_cleared=tuple(clearing),
        acls_added=diff.missing,
        acls_removed=diff.extra if prune else (),
        acls_stale=() if prune else diff.extra,
        users_removed=tuple(departed) if prune else (),
        users_stale=() if prune else tuple(departed),
        jvm_launches=launches,
        seconds=time.monotonic() - started,
    )
    log.info(
        "acl_provisioned",
        users_set=len(report.credentials_set),
        users_removed=len(report.users_removed),
        quotas_set=len(report.quotas_set),
        acls_added=len(report.acls_added),
        acls_removed=len(report.acls_removed),
        stale=len(report.acls_stale) + len(report.users_stale),
        jvm_launches=launches,
        seconds=round(report.seconds, 1),
    )
    return report
