"""A real Prometheus (Debian's) with deploy/prometheus/ scrapes a running exchange: a Kafka node
with its JMX exporter agent, the router, a publisher, a partner's consumer and the feed lag
exporter. The test reads the key series from Prometheus' HTTP API and watches alerts go
``firing``: on a real dead-letter burst, and on the lag of a consumer that stopped.

Time is compressed, not faked: scrapes and rule evaluation every second, every ``for:`` cut to
1 s, and EnlaceFeedNotConsumed's 5-minute age cut to 3 s. The expressions are otherwise the
deployed ones.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from broker.policy import Policy
from broker.router import Router
from consumers.service import FeedConsumer
from consumers.settings import ConsumerSettings
from deploy.lag_exporter import ExporterSettings, FeedLagExporter
from deploy.localkafka import LocalKafka
from deploy.prometheus_targets import PROMETHEUS_DIR, RULES, host_port, write_prometheus_dir
from enlace.core.http import ServiceHttp
from enlace.core.settings import KafkaSettings
from enlace.core.topics import outbound
from enlace.demo.setup import free_port
from producers.publisher import Publisher
from producers.settings import PublisherSettings
from schemas import headers as hdr
from tests.samples import routed_bulletin
from tests.support import MiniExchange, build_exchange, eventually, free_kafka_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
COMPRESSED_AGE_S = 3


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaSettings, list[str]]]:
    """A node of our own: the suite's broker may be one we did not start (no agent)."""
    local = LocalKafka(tmp_path_factory.mktemp("prom-kafka"))
    spec = local.up(1, port=free_kafka_port())
    try:
        yield KafkaSettings(kafka_bootstrap=spec.bootstrap), spec.metrics_targets
    finally:
        local.down()


def _compressed_rules(target: Path) -> Path:
    rules = yaml.safe_load((PROMETHEUS_DIR / RULES).read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
            if rule.get("alert") == "EnlaceFeedNotConsumed":
                assert "> 300" in rule["expr"], "the compressed threshold follows the real one"
                rule["expr"] = rule["expr"].replace("> 300", f"> {COMPRESSED_AGE_S}")
    target.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return target


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        answer.raise_for_status()
        return list(answer.json()["data"]["result"])

    def value(self, expr: str) -> float | None:
        found = self.query(expr)
        return float(found[0]["value"][1]) if found else None

    def firing(self) -> set[tuple[str, str]]:
        answer = requests.get(f"{self.url}/api/v1/alerts", timeout=5)
        answer.raise_for_status()
        return {
            (a["labels"]["alertname"], a["labels"].get("agency", ""))
            for a in answer.json()["data"]["alerts"]
            if a["state"] == "firing"
        }

    def targets_up(self) -> dict[str, int]:
        answer = requests.get(f"{self.url}/api/v1/targets", timeout=5)
        answer.raise_for_status()
        up: dict[str, int] = {}
        for target in answer.json()["data"]["activeTargets"]:
            job = target["labels"]["job"]
            up[job] = up.get(job, 0) + (target["health"] == "up")
        return up


@pytest.fixture
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail("prometheus is required: apt-get install prometheus (make test installs it)")
    return found


@dataclass
class Running:
    ex: MiniExchange
    router: Router
    publisher: Publisher
    consumer: FeedConsumer
    consumer_task: asyncio.Task[None]
    exporter: FeedLagExporter
    http: list[ServiceHttp]


@pytest.fixture
async def running(kafka: tuple[KafkaSettings, list[str]], tmp_path: Path) -> AsyncIterator[Running]:
    settings, _ = kafka
    ex = await build_exchange(settings)
    pa, us = ex.agency("PA"), ex.agency("US")
    ex.policy = Policy.model_validate({"agreements": [{"between": [pa, us], "level": "full"}]})
    keys_file, agencies_file = tmp_path / "keys.yaml", tmp_path / "agencies.yaml"
    ex.directory.dump(keys_file)
    agencies = [a.model_dump() for a in ex.registry]
    agencies_file.write_text(yaml.safe_dump({"agencies": agencies}), encoding="utf-8")
    http: list[ServiceHttp] = []
    async with Router(ex.router_settings(), ex.registry, ex.policy, ex.directory) as router:
        publisher = Publisher(
            PublisherSettings(
                kafka_bootstrap=settings.kafka_bootstrap,
                agency=pa,
                keys_file=keys_file,
                agencies_file=agencies_file,
            ),
            key=ex.keys[pa],
            registry=ex.registry,
        )
        consumer = FeedConsumer(
            ConsumerSettings(
                kafka_bootstrap=settings.kafka_bootstrap,
                agency=us,
                sinks=(f"sqlite:{tmp_path / 'us.sqlite3'}",),
                keys_file=keys_file,
                agencies_file=agencies_file,
                state_dir=tmp_path / "state",
                poll_timeout_ms=100,
            ),
            directory=ex.directory,
            key=ex.keys[us],
        )
        exporter = FeedLagExporter(
            ExporterSettings(
                kafka_bootstrap=settings.kafka_bootstrap,
                exporter_http_port=0,
                exporter_interval_s=0.5,
            ),
            ex.registry.ids,
        )
        await publisher.start()
        await consumer.start()
        task = asyncio.create_task(consumer.run())
        for registry in (publisher.metrics.registry, consumer.metrics.registry):
            server = ServiceHttp(registry, port=0)
            await server.start()
            http.append(server)
        exporter_task = asyncio.create_task(exporter.run())
        await eventually(lambda: exporter.http.port is not None, "the exporter listens")
        try:
            yield Running(ex, router, publisher, consumer, task, exporter, http)
        finally:
            exporter.request_stop()
            await exporter_task
            for server in http:
                await server.stop()
            await consumer.stop()
            await task
            await publisher.stop()


@pytest.fixture
def prometheus(
    prometheus_binary: str,
    running: Running,
    kafka: tuple[KafkaSettings, list[str]],
    tmp_path: Path,
) -> Iterator[Prometheus]:
    _, kafka_targets = kafka
    config = write_prometheus_dir(
        tmp_path / "prometheus",
        {
            "enlace-router": [host_port(running.router.http.url)],
            "enlace-producers": [host_port(running.http[0].url)],
            "enlace-consumers": [host_port(running.http[1].url)],
            "enlace-ops-exporter": [host_port(running.exporter.http.url)],
            "kafka": kafka_targets,
        },
        rules=_compressed_rules(tmp_path / "rules.yml"),
    )
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("5s", "1s"), encoding="utf-8")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield Prometheus(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


async def _ask(prom: Prometheus, what: str, check: Callable[[Prometheus], bool]) -> None:
    async def holds() -> bool:
        try:
            return bool(await asyncio.to_thread(check, prom))
        except requests.RequestException:
            return False  # Prometheus still starting

    await eventually(holds, what, within=60.0)


async def test_prometheus_scrapes_the_exchange_and_fires_on_dead_letters_and_a_stopped_consumer(
    running: Running, prometheus: Prometheus
) -> None:
    ex = running.ex
    pa, us = ex.agency("PA"), ex.agency("US")
    jobs = {"enlace-router", "enlace-producers", "enlace-consumers", "enlace-ops-exporter", "kafka"}

    def every_job_up(p: Prometheus) -> bool:
        up = p.targets_up()
        return all(up.get(job, 0) >= 1 for job in jobs)

    await _ask(prometheus, "every target is up", every_job_up)

    for _ in range(5):
        await running.publisher.publish(routed_bulletin(pa))
    await _ask(
        prometheus,
        "deliveries and routing latency are scraped",
        lambda p: (
            (p.value("sum(enlace_bulletins_delivered_total)") or 0) >= 5
            and (p.value("sum(enlace_publish_to_route_seconds_count)") or 0) >= 5
            and (p.value("sum(enlace_publish_to_delivery_seconds_count)") or 0) >= 5
        ),
    )
    # The broker's own series, from its JMX exporter agent (scraped every 10 s).
    await _ask(
        prometheus,
        "the broker's series are scraped",
        lambda p: (
            p.value("sum(kafka_controller_kafkacontroller_activecontrollercount)") == 1
            and p.value("sum(kafka_server_replicamanager_underreplicatedpartitions)") == 0
            and (p.value("sum(kafka_server_brokertopicmetrics_messagesinpersec_total)") or 0) > 0
        ),
    )
    # Publish → delivery measured from the publisher's send: well under the 5 min the author's
    # issued_at could add.
    p99 = prometheus.value(
        "histogram_quantile(0.99, sum by (le) (enlace_publish_to_delivery_seconds_bucket))"
    )
    assert p99 is not None
    assert p99 < 30

    # A dead-letter burst: records on pa's topic that pa never signed.
    forged = hdr.build(origin=pa, key_id=ex.keys[pa].key_id, sig=bytes(64))
    await ex.publish_raw(
        outbound(pa), [(f"x{n}".encode(), b"junk" * 40, forged) for n in range(40)]
    )
    await _ask(
        prometheus,
        "EnlaceForgeryAttempts and EnlaceDeadLettersRising fire",
        lambda p: {("EnlaceForgeryAttempts", ""), ("EnlaceDeadLettersRising", "")} <= p.firing(),
    )

    # The partner's consumer stops; releases keep arriving in its feed.
    await running.consumer.stop()
    await running.consumer_task
    for _ in range(3):
        await running.publisher.publish(routed_bulletin(pa))
    await _ask(
        prometheus,
        "EnlaceFeedNotConsumed fires for the stopped partner only",
        lambda p: ("EnlaceFeedNotConsumed", us) in p.firing(),
    )
    assert ("EnlaceFeedNotConsumed", pa) not in prometheus.firing()
    lag = prometheus.value(f'enlace_feed_lag_records{{agency="{us}"}}')
    assert lag is not None
    assert lag >= 3
