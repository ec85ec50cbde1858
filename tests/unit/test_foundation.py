"""Pure pieces of the foundation: registry rules, topic names, node properties, settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from deploy.localkafka import ClusterSpec, NodeTls, node_properties
from enlace.core.errors import BrokerError, KafkaLaunchError, RegistryError
from enlace.core.registry import Registry, check_agency_id
from enlace.core.settings import DEFAULT_AGENCIES, KafkaSettings
from enlace.core.topics import (
    _raise_topic_errors,
    agency_of,
    exchange_topics,
    feed,
    outbound,
    receipts,
)

SEED = {
    "bz-bdf", "ca-rcmp", "co-ponal", "cr-msp", "do-dncd", "sv-pnc",
    "us-jiatfs", "gt-pnc", "hn-fusina", "mx-sedena", "pa-senafront",
}  # fmt: skip


def test_seed_registry_has_the_eleven_agencies() -> None:
    registry = Registry.load(DEFAULT_AGENCIES)
    assert set(registry.ids) == SEED
    assert registry.country_of("pa-senafront") == "PA"
    assert "cr-msp" in registry


@pytest.mark.parametrize(
    ("agency_id", "rule"),
    [
        ("PA-senafront", "lowercase"),
        ("pa_senafront", "lowercase"),
        ("p\u0430-senafront", "non-ASCII"),  # Cyrillic a, a confusable look-alike
        ("p-x", "lowercase"),
    ],
)
def test_malformed_agency_ids_are_refused(agency_id: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        check_agency_id(agency_id)


def test_registry_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "agencies.yaml"
    path.write_text("agencies:\n  - {id: pa-x1, country: CR, name: X}\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="prefix must be its country"):
        Registry.load(path)
    with pytest.raises(RegistryError, match="unknown agency 'zz-nobody'"):
        Registry.load(DEFAULT_AGENCIES).get("zz-nobody")


def test_topic_names_follow_the_design() -> None:
    assert outbound("pa-senafront") == "enlace.outbound.pa-senafront"
    assert feed("cr-msp") == "enlace.feed.cr-msp"
    assert receipts("cr-msp") == "enlace.receipts.cr-msp"
    assert agency_of("enlace.feed.cr-msp") == "cr-msp"
    specs = {s.name: s for s in exchange_topics(["cr-msp"], partitions=3, replication=3,
                                                min_insync=2)}  # fmt: skip
    assert set(specs) == {
        "enlace.outbound.cr-msp", "enlace.feed.cr-msp", "enlace.receipts.cr-msp",
        "enlace.trust.scores", "enlace.audit", "enlace.deadletter", "enlace.router.seen",
        "enlace.router.trust",
    }  # fmt: skip
    assert ("cleanup.policy", "compact") in specs["enlace.trust.scores"].configs
    assert ("cleanup.policy", "compact") in specs["enlace.router.trust"].configs
    assert specs["enlace.router.trust"].partitions == 1
    assert all(("min.insync.replicas", "2") in s.configs for s in specs.values())
    assert ("retention.ms", "-1") in specs["enlace.audit"].configs
    assert ("retention.ms", "-1") in specs["enlace.receipts.cr-msp"].configs
    assert ("retention.ms", str(30 * 24 * 3600 * 1000)) in specs["enlace.feed.cr-msp"].configs


def test_cluster_node_properties() -> None:
    spec = ClusterSpec(nodes=3, port=9092)
    props = node_properties(spec, 2, Path("/d"))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:19093,2@127.0.0.1:29093,3@127.0.0.1:39093"
    )
    assert props["min.insync.replicas"] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    assert props["auto.create.topics.enable"] == "false"
    assert "authorizer.class.name" not in props


def test_secure_node_properties_leave_no_listener_in_clear_or_unauthenticated() -> None:
    spec = ClusterSpec(nodes=3, secure=True, admin_password="pw")
    tls = NodeTls(Path("/d/node.pem"), Path("/d/ca.pem"))
    props = node_properties(spec, 2, Path("/d"), tls)
    assert props["listeners"] == (
        "SASL_SSL://127.0.0.1:29092,MTLS://127.0.0.1:29094,CONTROLLER://127.0.0.1:29093"
    )
    protocols = dict(kv.split(":") for kv in props["listener.security.protocol.map"].split(","))
    assert set(protocols.values()) <= {"SSL", "SASL_SSL"}
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    # Certificates are demanded where no password is: the controller and the MTLS listener.
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["listener.name.mtls.ssl.client.auth"] == "required"
    assert props["ssl.keystore.location"] == "/d/node.pem"
    assert props["ssl.truststore.type"] == "PEM"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert "ANONYMOUS" not in props["super.users"]
    assert props["super.users"] == "User:admin;User:kafka-node"
    assert 'password="pw"' in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert spec.ports(2) == (29092, 29093, 29094)
    with pytest.raises(KafkaLaunchError, match="certificate"):
        node_properties(spec, 1, Path("/d"))


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENLACE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("ENLACE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("ENLACE_KAFKA_SASL_USERNAME", "cr-msp")
    monkeypatch.setenv("ENLACE_KAFKA_SASL_PASSWORD", "s3cret")
    settings = KafkaSettings()
    assert "s3cret" not in repr(settings)
    kwargs = settings.client_kwargs()
    assert kwargs["sasl_plain_password"] == "s3cret"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"


async def test_components_used_before_start_say_so_with_one_error() -> None:
    from broker.replay import SeenIndex, SeenLoader
    from consumers.sinks.sqlite import SqliteSink
    from enlace.core.errors import EnlaceError, NotStarted
    from producers.publisher import Publisher
    from producers.settings import PublisherSettings

    assert issubclass(NotStarted, EnlaceError)
    loader = SeenLoader(KafkaSettings(), SeenIndex(timedelta(days=1)))
    with pytest.raises(NotStarted, match="replay index loader used before start"):
        await loader.catch_up()
    publisher = Publisher(PublisherSettings(agency="pa-senafront"))
    with pytest.raises(NotStarted, match="publisher not started"):
        _ = publisher.agency
    with pytest.raises(NotStarted, match="is not started"):
        await SqliteSink("unused.db").write([])


def test_topic_creation_errors_are_raised_except_already_exists() -> None:
    _raise_topic_errors([{"topic": "a", "error_code": 0}, {"topic": "b", "error_code": 36}])
    refused = [
        {"topic": "a", "error_code": 38, "error_message": "only 1 broker(s) are registered"},
        {"topic": "b", "error_code": 0},
    ]
    with pytest.raises(BrokerError, match=r"refused to create 1 topic\(s\): a: .*registered"):
        _raise_topic_errors(refused)
