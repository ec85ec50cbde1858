"""The opt-in PROXIED listener of a local cluster (fault drills): generated properties, ports,
the spec's round trip through cluster.json, and the default left as it was."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from deploy.localkafka import ClusterSpec, node_properties
from enlace.core.errors import KafkaLaunchError


def test_proxied_listener_advertises_the_proxy_port_and_keeps_replication_direct() -> None:
    spec = ClusterSpec(nodes=3, port=9092, proxy_ports=(41001, 41002, 41003))
    props = node_properties(spec, 2, Path("/d"))
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:29092,PROXIED://127.0.0.1:29095,CONTROLLER://127.0.0.1:29093"
    )
    # A client that came in on PROXIED is told of the proxy, never of the broker's own port.
    assert props["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:29092,PROXIED://127.0.0.1:41002"
    )
    protocols = dict(kv.split(":") for kv in props["listener.security.protocol.map"].split(","))
    assert protocols == {
        "CONTROLLER": "PLAINTEXT",
        "PLAINTEXT": "PLAINTEXT",
        "PROXIED": "PLAINTEXT",
    }
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert spec.ports(2) == (29092, 29093, 29095)
    assert spec.proxied_port(2) == 29095
    assert spec.proxy_port(3) == 41003
    assert spec.proxied_bootstrap == "127.0.0.1:41001,127.0.0.1:41002,127.0.0.1:41003"
    assert spec.bootstrap == "127.0.0.1:19092,127.0.0.1:29092,127.0.0.1:39092"


def test_without_proxy_ports_nothing_changes() -> None:
    spec = ClusterSpec(nodes=3, port=9092)
    props = node_properties(spec, 2, Path("/d"))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert "PROXIED" not in props["listener.security.protocol.map"]
    assert spec.ports(2) == (29092, 29093)
    assert spec.proxied_bootstrap == ""


def test_proxy_ports_survive_cluster_json_and_shape_compares_them() -> None:
    spec = ClusterSpec(nodes=3, port=9092, proxy_ports=(41001, 41002, 41003))
    again = ClusterSpec(**json.loads(json.dumps(asdict(spec))))  # the list comes back a tuple
    assert again == spec
    assert again.shape == (3, 9092, False, (41001, 41002, 41003))
    assert ClusterSpec(nodes=3, port=9092).shape != spec.shape


def test_proxy_ports_are_one_per_node_and_plaintext_only() -> None:
    with pytest.raises(KafkaLaunchError, match="one proxy port per node"):
        ClusterSpec(nodes=3, proxy_ports=(41001,))
    with pytest.raises(KafkaLaunchError, match="plaintext"):
        ClusterSpec(nodes=1, secure=True, proxy_ports=(41001,))
