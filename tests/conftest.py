"""Fixtures shared by every tier. The Kafka broker starts only when a test asks for it.

``ENLACE_KAFKA_BOOTSTRAP`` points the suite at an existing broker; otherwise one starts with
the same code path as ``enlace kafka up`` (own data dir and port, so a developer's running
exchange is untouched) and stops at the end of the session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from deploy.localkafka import DEFAULT_LIBS, LocalKafka
from enlace.core.settings import KafkaSettings
from enlace.core.topics import TopicSpec, ensure_topics
from tests.support import free_kafka_port

# Per-example deadlines measure the machine, not the code: on a shared 2-core box right after
# the fault tests they flake. Properties still run every example.
settings.register_profile("enlace", deadline=None, print_blob=True)
settings.load_profile("enlace")

TEST_KAFKA_DIR = Path(__file__).resolve().parent.parent / ".enlace" / "test-kafka"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    existing = os.environ.get("ENLACE_KAFKA_BOOTSTRAP")
    if existing:
        yield existing
        return
    kafka = LocalKafka(TEST_KAFKA_DIR, DEFAULT_LIBS)
    was_running = any(node.alive for node in kafka.status())
    running = kafka.spec() if was_running else None
    spec = kafka.up(1, port=running.port if running is not None else free_kafka_port())
    try:
        yield spec.bootstrap
    finally:
        if not was_running:
            kafka.down()


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap=kafka_bootstrap)


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names unique to this test (topics, groups, transactional ids)."""
    token = uuid.uuid4().hex[:10]
    return lambda name: f"t.{token}.{name}"


@pytest.fixture
def make_topics(
    kafka_settings: KafkaSettings,
) -> Callable[..., Awaitable[list[str]]]:
    async def create(*names: str, partitions: int = 3) -> list[str]:
        await ensure_topics(kafka_settings, [TopicSpec(n, partitions, 1) for n in names])
        return list(names)

    return create
