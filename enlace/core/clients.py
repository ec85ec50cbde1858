"""aiokafka clients with Enlace's safety settings, set explicitly in one place.

aiokafka's defaults (acks=1, no idempotence, auto-commit, latest reset, read_uncommitted) are
unsafe for an exchange that must lose nothing; every service builds its clients here.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from enlace.core.errors import EnvironmentProblem
from enlace.core.settings import KafkaSettings

# 256 KiB batches and a short linger: one request in flight per broker, so batch size drives
# throughput (see docs/kafka-notes.md).
PRODUCER_BATCH_BYTES = 262_144
PRODUCER_LINGER_MS = 5
# Transactional producers commit often; the default 100 ms backoff would dominate commit time.
TRANSACTIONAL_RETRY_BACKOFF_MS = 15
MAX_REQUEST_BYTES = 2_097_152


def check_c_extensions() -> None:
    """Refuse to run on pure-Python aiokafka: it is ~100x slower (pure-Python CRC32C)."""
    try:
        from aiokafka.record import _crecords  # noqa: F401, PLC0415 - probe only
    except ImportError as exc:
        raise EnvironmentProblem(
            "aiokafka C extensions are missing; reinstall aiokafka from a wheel"
        ) from exc


def producer(
    settings: KafkaSettings, *, transactional_id: str | None = None, **overrides: Any
) -> AIOKafkaProducer:
    kwargs: dict[str, Any] = {
        **settings.client_kwargs(),
        "acks": "all",
        "enable_idempotence": True,
        "max_batch_size": PRODUCER_BATCH_BYTES,
        "linger_ms": PRODUCER_LINGER_MS,
        "max_request_size": MAX_REQUEST_BYTES,
        "request_timeout_ms": 30_000,
    }
    if transactional_id is not None:
        kwargs["transactional_id"] = transactional_id
        kwargs["retry_backoff_ms"] = TRANSACTIONAL_RETRY_BACKOFF_MS
    kwargs.update(overrides)
    return AIOKafkaProducer(**kwargs)


def consumer(
    settings: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    kwargs: dict[str, Any] = {
        **settings.client_kwargs(),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_partition_fetch_bytes": MAX_REQUEST_BYTES,
    }
    kwargs.update(overrides)
    return AIOKafkaConsumer(*topics, **kwargs)
