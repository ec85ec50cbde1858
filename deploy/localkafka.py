"""A local Apache Kafka from Maven Central jars: fetch, format, start, stop (no Docker).

State lives under ``<data_dir>``: ``node-<id>/`` (properties, log dirs, broker log, pid) and
``cluster.json`` (what ``up`` started, so ``down``/``status`` find it). The jars are copied
once into a cache dir by ``maven-dependency-plugin`` from ``deploy/kafka/pom.xml``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from deploy.tls import NODE_PRINCIPAL, PRINCIPAL_MAPPING_RULES, LocalCA
from enlace.core.errors import EnvironmentProblem, KafkaLaunchError
from enlace.core.logs import get_logger
from enlace.core.settings import REPO_ROOT, SCRAM_MECHANISM

KAFKA_VERSION = "4.4.0"
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J_CONFIG = REPO_ROOT / "deploy" / "kafka" / "log4j2.properties"
# The Prometheus JMX exporter, as a Java agent inside every node: broker metrics at
# http://127.0.0.1:<metrics port>/metrics with the rules of JMX_RULES. 1.0.1 is the newest
# release Maven Central serves here.
JMX_EXPORTER = "io.prometheus.jmx:jmx_prometheus_javaagent:1.0.1"
JMX_AGENT_JAR = "jmx_prometheus_javaagent.jar"
JMX_RULES = REPO_ROOT / "deploy" / "kafka" / "jmx-exporter.yaml"
DEFAULT_LIBS = REPO_ROOT / ".enlace" / f"kafka-{KAFKA_VERSION}" / "libs"
DEFAULT_DATA_DIR = REPO_ROOT / ".enlace" / "kafka"
READY_LINE = "Kafka Server started"
JVM_OPTS = (
    "-Xms512m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
)
CLUSTER_FILE = "cluster.json"
# $1 is the log file, the rest the java command; prints the broker's pid.
_DETACH_SCRIPT = 'log="$1"; shift; setsid "$@" >>"$log" 2>&1 </dev/null & echo $!'
ADMIN_USER = "admin"

log = get_logger(__name__)


@dataclass(frozen=True)
class ClusterSpec:
    """What ``up`` was asked for; written to ``cluster.json`` so later commands agree."""

    nodes: int = 1
    port: int = 9092
    secure: bool = False
    admin_password: str = field(default="", repr=False)
    # Fault drills: one port per node where a TCP proxy in front of that node's PROXIED
    # listener runs; empty (the default) = no such listener. Clients that bootstrap through
    # a proxy get metadata naming the proxies, so all their traffic crosses them.
    proxy_ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # cluster.json gives a list back; the spec compares and hashes as a tuple.
        object.__setattr__(self, "proxy_ports", tuple(self.proxy_ports))
        if self.proxy_ports and len(self.proxy_ports) != self.nodes:
            raise KafkaLaunchError(f"one proxy port per node: {self.nodes} wanted")
        if self.proxy_ports and self.secure:
            # A listener in clear beside SASL_SSL would break "nothing in clear".
            raise KafkaLaunchError("proxied listeners are for plaintext drill clusters only")

    @property
    def shape(self) -> tuple[int, int, bool, tuple[int, ...]]:
        """What must match for ``up`` to reuse a cluster (the password is not shape)."""
        return (self.nodes, self.port, self.secure, self.proxy_ports)

    def broker_port(self, node_id: int) -> int:
        return self.port if self.nodes == 1 else node_id * 10_000 + self.port

    def controller_port(self, node_id: int) -> int:
        return self.broker_port(node_id) + 1

    def mtls_port(self, node_id: int) -> int:
        """The listener for client certificates instead of SCRAM (secure clusters only)."""
        return self.broker_port(node_id) + 2

    def proxied_port(self, node_id: int) -> int:
        """The PROXIED listener (with ``proxy_ports`` only): what a node's proxy forwards to."""
        return self.broker_port(node_id) + 3

    def proxy_port(self, node_id: int) -> int:
        """Where the node's proxy listens: the PROXIED listener's advertised port."""
        return self.proxy_ports[node_id - 1]

    def metrics_port(self, node_id: int) -> int:
        """The JMX exporter agent's ``/metrics`` (loopback; plaintext clusters only)."""
        return self.broker_port(node_id) + 4

    @property
    def metrics(self) -> bool:
        """Whether nodes run the JMX exporter agent. Not on a secure cluster: its HTTP
        endpoint would be a listener that answers without credentials, which "nothing in
        clear, nothing unauthenticated" rules out (a production cluster gets its broker
        metrics from Strimzi's metricsConfig behind the network policy instead)."""
        return not self.secure

    @property
    def metrics_targets(self) -> list[str]:
        """``host:port`` of every node's broker metrics, for a Prometheus scrape config."""
        if not self.metrics:
            return []
        return [f"127.0.0.1:{self.metrics_port(n)}" for n in self.node_ids]

    def all_ports(self, node_id: int) -> tuple[int, ...]:
        """Kafka's listeners and, where it runs, the metrics agent's."""
        extra = (self.metrics_port(node_id),) if self.metrics else ()
        return (*self.ports(node_id), *extra)

    def ports(self, node_id: int) -> tuple[int, ...]:
        """Every Kafka listener of the node."""
        base = (self.broker_port(node_id), self.controller_port(node_id))
        if self.secure:
            return (*base, self.mtls_port(node_id))
        return (*base, self.proxied_port(node_id)) if self.proxy_ports else base

    @property
    def proxied_bootstrap(self) -> str:
        """Bootstrap through the proxies (empty without ``proxy_ports``)."""
        return ",".join(f"127.0.0.1:{p}" for p in self.proxy_ports)

    @property
    def mtls_bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.mtls_port(n)}" for n in self.node_ids)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.broker_port(n)}" for n in self.node_ids)

    @property
    def node_ids(self) -> range:
        return range(1, self.nodes + 1)


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    pid: int | None
    alive: bool
    port: int


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    if candidate and candidate.exists():
        return str(candidate)
    found = shutil.which("java")
    if not found:
        raise EnvironmentProblem(
            "Java 17+ is required to run Kafka: install it "
            "(Debian: apt-get install openjdk-17-jre-headless)"
        )
    return found


def fetch_jars(libs: Path = DEFAULT_LIBS) -> Path:
    """Copy Kafka's runtime classpath from Maven Central into ``libs`` once."""
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise EnvironmentProblem(
            "Maven is required to fetch Kafka's jars from Maven Central: install it "
            "(Debian: apt-get install maven), or set ENLACE_KAFKA_BOOTSTRAP to an existing Kafka"
        )
    libs.mkdir(parents=True, exist_ok=True)
    log.info("kafka_fetch", version=KAFKA_VERSION, into=str(libs))
    cmd = [
        mvn, "-B", "-q", "-f", str(POM),
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
        f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    if result.returncode != 0:
        raise KafkaLaunchError(
            "fetching Kafka from Maven Central failed (is the Maven Central mirror reachable?):\n"
            + (result.stdout + result.stderr)[-2000:]
        )
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise KafkaLaunchError(f"Maven finished but no kafka_2.13 jar is in {libs}")
    fetch_agent(agent_of(libs))
    marker.touch()
    return libs


def agent_of(libs: Path) -> Path:
    """Where the JMX exporter agent lives beside ``libs`` (never on Kafka's classpath: the
    agent jar shades its own copies of libraries Kafka also ships)."""
    return libs.parent / "jmx-exporter" / JMX_AGENT_JAR


def fetch_agent(jar: Path) -> Path:
    """Copy the JMX exporter agent from Maven Central to ``jar`` once."""
    if jar.exists():
        return jar
    mvn = shutil.which("mvn")
    if not mvn:
        raise EnvironmentProblem("Maven is required to fetch the JMX exporter from Maven Central")
    jar.parent.mkdir(parents=True, exist_ok=True)
    log.info("jmx_exporter_fetch", artifact=JMX_EXPORTER, into=str(jar.parent))
    cmd = [
        mvn, "-B", "-q", "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
        f"-Dartifact={JMX_EXPORTER}", f"-DoutputDirectory={jar.parent}", "-Dmdep.stripVersion=true",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    stripped = jar.parent / "jmx_prometheus_javaagent.jar"
    if result.returncode != 0 or not stripped.exists():
        raise KafkaLaunchError(
            f"fetching {JMX_EXPORTER} from Maven Central failed:\n"
            + (result.stdout + result.stderr)[-2000:]
        )
    return jar


def run_java_tool(libs: Path, main_class: str, *args: str, timeout: float = 120) -> str:
    """Run one of Kafka's Java CLIs (StorageTool, TopicCommand, AclCommand...)."""
    cmd = [java_binary(), "-Xmx256m", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
           "-cp", f"{libs}/*", main_class, *args]  # fmt: skip
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    except subprocess.TimeoutExpired as exc:
        raise KafkaLaunchError(f"{main_class} did not finish in {timeout:.0f}s") from exc
    if result.returncode != 0:
        raise KafkaLaunchError(f"{main_class} {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _not_zombie(pid)
    return done == 0


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class LocalKafka:
    """The local single-node or 3-node KRaft cluster under one data dir."""

    def __init__(self, data_dir: Path = DEFAULT_DATA_DIR, libs: Path = DEFAULT_LIBS) -> None:
        self.data_dir = data_dir
        self.libs = libs

    # -- state ---------------------------------------------------------------------------
    def node_dir(self, node_id: int) -> Path:
        return self.data_dir / f"node-{node_id}"

    @property
    def ca(self) -> LocalCA:
        """The secure cluster's certificate authority; ``ca.ca_cert`` is what clients trust."""
        return LocalCA(self.data_dir / "tls")

    def keystore(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "tls" / "node.pem"

    def spec(self) -> ClusterSpec | None:
        path = self.data_dir / CLUSTER_FILE
        if not path.exists():
            return None
        return ClusterSpec(**json.loads(path.read_text(encoding="utf-8")))

    def _save_spec(self, spec: ClusterSpec) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / CLUSTER_FILE
        path.write_text(json.dumps(asdict(spec)), encoding="utf-8")
        path.chmod(0o600)  # holds the admin password of a secure cluster

    def _pid(self, node_id: int) -> int | None:
        pid_file = self.node_dir(node_id) / "kafka.pid"
        if not pid_file.exists():
            return None
        return int(pid_file.read_text(encoding="ascii").strip())

    def status(self) -> list[NodeStatus]:
        spec = self.spec()
        if spec is None:
            return []
        statuses = []
        for node_id in spec.node_ids:
            pid = self._pid(node_id)
            statuses.append(
                NodeStatus(
                    node_id, pid, pid is not None and pid_alive(pid), spec.broker_port(node_id)
                )
            )
        return statuses

    # -- up / down -----------------------------------------------------------------------
    def up(
        self,
        nodes: int = 1,
        *,
        port: int = 9092,
        secure: bool = False,
        proxy_ports: Sequence[int] = (),
        timeout: float = 90,
    ) -> ClusterSpec:
        """Start the cluster (idempotent: a running cluster of the same shape is returned).

        ``proxy_ports`` (fault drills, one per node) adds a PROXIED listener to each node,
        advertised at that port, where the caller runs a TCP proxy to ``proxied_port``."""
        if nodes not in (1, 3):
            raise KafkaLaunchError("--nodes must be 1 or 3")
        wanted = ClusterSpec(nodes=nodes, port=port, secure=secure, proxy_ports=tuple(proxy_ports))
        existing = self.spec()
        if existing is not None and any(node.alive for node in self.status()):
            if existing.shape != wanted.shape:
                raise KafkaLaunchError(
                    f"a different Kafka ({existing.nodes} node(s), port {existing.port}, "
                    f"secure={existing.secure}, proxy ports {list(existing.proxy_ports)}) "
                    f"runs from {self.data_dir}; run `enlace kafka down` first"
                )
            for node_id in existing.node_ids:
                self.start_node(node_id, timeout=timeout)
            return existing
        if existing is not None and existing.shape == wanted.shape:
            spec = existing  # restart a stopped cluster on its data
        else:
            if existing is not None:
                shutil.rmtree(self.data_dir)
            password = os.environ.get("ENLACE_KAFKA_ADMIN_PASSWORD") or secrets.token_urlsafe(18)
            spec = replace(wanted, admin_password=password)
        java_binary()
        fetch_jars(self.libs)
        for node_id in spec.node_ids:
            for p in spec.all_ports(node_id):
                if port_in_use(p):
                    raise EnvironmentProblem(
                        f"port {p} on 127.0.0.1 is taken by another process; stop it or pass "
                        "--port with a free base port"
                    )
        self._save_spec(spec)
        self._format(spec)
        for node_id in spec.node_ids:
            self._launch(spec, node_id)
        deadline = time.monotonic() + timeout
        for node_id in spec.node_ids:
            self._wait_ready(node_id, deadline)
        log.info("kafka_up", bootstrap=spec.bootstrap, nodes=nodes, secure=secure)
        return spec

    def down(self, timeout: float = 20) -> list[int]:
        """Stop every node cleanly, forcefully after ``timeout``; return the ids stopped."""
        spec = self.spec()
        if spec is None:
            return []
        # All at once: stopping nodes one by one makes the last ones wait on a lost quorum.
        pids = {n: self._pid(n) for n in spec.node_ids}
        running = {n: pid for n, pid in pids.items() if pid is not None and pid_alive(pid)}
        for pid in running.values():
            os.kill(pid, signal.SIGTERM)
        if not _wait_for(lambda: not any(pid_alive(p) for p in running.values()), timeout):
            for node_id, pid in running.items():
                if pid_alive(pid):
                    log.warning("kafka_node_kill", node=node_id, pid=pid)
                    os.kill(pid, signal.SIGKILL)
            _wait_for(lambda: not any(pid_alive(p) for p in running.values()), 10)
        for node_id in running:
            (self.node_dir(node_id) / "kafka.pid").unlink(missing_ok=True)
        stopped = sorted(running)
        log.info("kafka_down", stopped=stopped)
        return stopped

    def stop_node(self, node_id: int, *, timeout: float = 30, hard: bool = False) -> bool:
        pid = self._pid(node_id)
        if pid is None or not pid_alive(pid):
            return False
        os.kill(pid, signal.SIGKILL if hard else signal.SIGTERM)
        if not _wait_for(lambda: not pid_alive(pid), timeout):
            log.warning("kafka_node_kill", node=node_id, pid=pid)
            os.kill(pid, signal.SIGKILL)
            _wait_for(lambda: not pid_alive(pid), 10)
        (self.node_dir(node_id) / "kafka.pid").unlink(missing_ok=True)
        return True

    def start_node(self, node_id: int, *, timeout: float = 90) -> None:
        spec = self.spec()
        if spec is None or node_id not in spec.node_ids:
            raise KafkaLaunchError(f"no node {node_id} in {self.data_dir}; run `enlace kafka up`")
        pid = self._pid(node_id)
        if pid is not None and pid_alive(pid):
            return
        self._launch(spec, node_id)
        self._wait_ready(node_id, time.monotonic() + timeout)

    # -- internals -----------------------------------------------------------------------
    def _format(self, spec: ClusterSpec) -> None:
        unformatted = [
            n for n in spec.node_ids if not (self.node_dir(n) / "data" / "meta.properties").exists()
        ]
        if not unformatted:
            return
        cluster_id = run_java_tool(self.libs, "kafka.tools.StorageTool", "random-uuid").strip()
        for node_id in unformatted:
            props = self._write_properties(spec, node_id)
            args = ["format", "-t", cluster_id, "-c", str(props), "--ignore-formatted"]
            if spec.secure:
                args += [
                    "--add-scram",
                    f"{SCRAM_MECHANISM}=[name={ADMIN_USER},password={spec.admin_password}]",
                ]
            run_java_tool(self.libs, "kafka.tools.StorageTool", *args)

    def _write_properties(self, spec: ClusterSpec, node_id: int) -> Path:
        node_dir = self.node_dir(node_id)
        node_dir.mkdir(parents=True, exist_ok=True)
        tls = None
        if spec.secure:
            tls = NodeTls(self._ensure_keystore(node_id), self.ca.ca_cert)
        props = node_properties(spec, node_id, node_dir / "data", tls)
        path = node_dir / "server.properties"
        path.write_text("\n".join(f"{k}={v}" for k, v in props.items()) + "\n", encoding="utf-8")
        path.chmod(0o600)
        return path

    def _ensure_keystore(self, node_id: int) -> Path:
        """The node's certificate, issued once at format time (a restart keeps it)."""
        keystore = self.keystore(node_id)
        if not keystore.exists():
            now = dt.datetime.now(dt.UTC)
            self.ca.ensure(now=now)
            self.ca.issue_node(node_id, keystore, now=now)
        return keystore

    def _launch(self, spec: ClusterSpec, node_id: int) -> None:
        node_dir = self.node_dir(node_id)
        props = self._write_properties(spec, node_id)
        log_path = node_dir / "broker.log"
        metrics = []
        if spec.metrics:
            agent = fetch_agent(agent_of(self.libs))
            metrics = [f"-javaagent:{agent}=127.0.0.1:{spec.metrics_port(node_id)}:{JMX_RULES}"]
        cmd = [java_binary(), *JVM_OPTS, *metrics, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
               f"-Dkafka.logs.dir={node_dir / 'logs'}", "-cp", f"{self.libs}/*",
               "kafka.Kafka", str(props)]  # fmt: skip
        with log_path.open("ab") as out:
            out.write(f"\n--- launching node {node_id} at {time.time():.0f}\n".encode())
        # Detached through a shell so the broker outlives this process without a Popen
        # handle to reap, in its own session so Ctrl-C in the launching terminal spares it.
        result = subprocess.run(  # noqa: S603 - fixed argv, no user input in the script
            ["/bin/sh", "-c", _DETACH_SCRIPT, "sh", str(log_path), *cmd],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if result.returncode != 0 or not result.stdout.strip().isdigit():
            raise KafkaLaunchError(f"could not launch Kafka node {node_id}: {result.stderr}")
        pid = int(result.stdout.strip())
        (node_dir / "kafka.pid").write_text(str(pid), encoding="ascii")
        (node_dir / "launch.offset").write_text(str(log_path.stat().st_size), encoding="ascii")

    def _wait_ready(self, node_id: int, deadline: float) -> None:
        node_dir = self.node_dir(node_id)
        log_path = node_dir / "broker.log"
        offset = int((node_dir / "launch.offset").read_text(encoding="ascii"))
        pid = self._pid(node_id)
        while time.monotonic() < deadline:
            with log_path.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode("utf-8", "replace")
            if READY_LINE in text:
                return
            if pid is None or not pid_alive(pid):
                raise KafkaLaunchError(
                    f"Kafka node {node_id} exited during start-up; last log lines:\n"
                    + "\n".join(text.splitlines()[-25:])
                )
            time.sleep(0.2)
        raise KafkaLaunchError(f"Kafka node {node_id} not ready in time; see {log_path}")


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@dataclass(frozen=True)
class NodeTls:
    keystore: Path  # PEM: the node's key and certificate chain
    truststore: Path  # PEM: the CA


def node_properties(
    spec: ClusterSpec, node_id: int, log_dir: Path, tls: NodeTls | None = None
) -> dict[str, str]:
    """The broker+controller properties of one KRaft node (combined mode)."""
    if spec.secure and tls is None:
        raise KafkaLaunchError("a secure node needs its certificate (NodeTls)")
    replication = "3" if spec.nodes == 3 else "1"
    min_isr = "2" if spec.nodes == 3 else "1"
    voters = ",".join(f"{n}@127.0.0.1:{spec.controller_port(n)}" for n in spec.node_ids)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        **_listeners(spec, node_id),
        "log.dirs": str(log_dir),
        "num.partitions": "3",
        "default.replication.factor": replication,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replication,
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
        "unclean.leader.election.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "log.cleaner.dedupe.buffer.size": "16777216",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "auto.create.topics.enable": "false",
        # Local clusters serve tests and drills: enforce retention within a second (Kafka's
        # default checks every 5 min), so a short-retention drill (a partner offline beyond
        # its feed's retention) runs in seconds. Cheap: nothing expires under the default
        # 7-day retention.
        "log.retention.check.interval.ms": "1000",
        # Kept at Kafka 4's default on purpose: records stamped > 1 h ahead are refused.
        "log.message.timestamp.after.max.ms": "3600000",
    }
    if tls is not None:
        props |= _security(spec, tls)
    return props


def _listeners(spec: ClusterSpec, node_id: int) -> dict[str, str]:
    broker = f"127.0.0.1:{spec.broker_port(node_id)}"
    controller = f"CONTROLLER://127.0.0.1:{spec.controller_port(node_id)}"
    if not spec.secure and spec.proxy_ports:
        # Kafka answers metadata with the advertised addresses of the listener the request
        # came in on: a client that bootstraps through a proxy is told of the proxies only,
        # while replication and every other client stay on PLAINTEXT, direct.
        proxied = f"127.0.0.1:{spec.proxied_port(node_id)}"
        advertised = f"127.0.0.1:{spec.proxy_port(node_id)}"
        return {
            "listeners": f"PLAINTEXT://{broker},PROXIED://{proxied},{controller}",
            "advertised.listeners": f"PLAINTEXT://{broker},PROXIED://{advertised}",
            "listener.security.protocol.map": (
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT"
            ),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
        }
    if not spec.secure:
        return {
            "listeners": f"PLAINTEXT://{broker},{controller}",
            "advertised.listeners": f"PLAINTEXT://{broker}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
        }
    # Nothing in clear, nothing unauthenticated: SCRAM over TLS for clients and between
    # brokers, client certificates on the MTLS listener and on the controller listener.
    mtls = f"MTLS://127.0.0.1:{spec.mtls_port(node_id)}"
    return {
        "listeners": f"SASL_SSL://{broker},{mtls},{controller}",
        "advertised.listeners": f"SASL_SSL://{broker},{mtls}",
        "listener.security.protocol.map": "CONTROLLER:SSL,SASL_SSL:SASL_SSL,MTLS:SSL",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "SASL_SSL",
    }


def _security(spec: ClusterSpec, tls: NodeTls) -> dict[str, str]:
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls.truststore),
        "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
        "ssl.principal.mapping.rules": PRINCIPAL_MAPPING_RULES,
        "listener.name.controller.ssl.client.auth": "required",
        "listener.name.mtls.ssl.client.auth": "required",
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN_USER}" password="{spec.admin_password}";'
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        # The nodes' certificate principal runs controller RPCs (CLUSTER_ACTION); the admin
        # provisions. No ANONYMOUS: every listener authenticates.
        "super.users": f"User:{ADMIN_USER};User:{NODE_PRINCIPAL}",
    }
