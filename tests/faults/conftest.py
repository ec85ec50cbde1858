"""The fault tier's shared secure cluster: one broker for every security module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from deploy.localkafka import DEFAULT_LIBS, LocalKafka
from deploy.provisioning import AdminConnection, provision
from enlace.core.topics import ensure_topics, exchange_topics
from tests.faults.secure_cluster import AGENCIES, SecureExchange
from tests.support import free_kafka_port


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def secure(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecureExchange]:
    root = tmp_path_factory.mktemp("secure-acl")
    kafka = LocalKafka(root / "kafka", DEFAULT_LIBS)
    await asyncio.to_thread(kafka.up, 1, port=free_kafka_port(), secure=True)
    try:
        conn = AdminConnection.from_cluster(kafka.data_dir)
        admin = conn.client_settings(conn.username, conn.password)
        specs = exchange_topics(AGENCIES, partitions=1, replication=1, min_insync=1)
        await ensure_topics(admin, specs)
        credentials = root / "state" / "credentials.json"
        first = await provision(AGENCIES, conn, credentials_path=credentials, env={})
        yield SecureExchange(kafka, conn, credentials, first, list(AGENCIES))
    finally:
        await asyncio.to_thread(kafka.down)
