"""aiokafka clients with Enlace's safety settings, set explicitly in one place.

aiokafka's defaults (acks=1, no idempotence, auto-commit, latest reset, read_uncommitted) are
unsafe for an exchange that must lose nothing; every service builds its clients here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError

from enlace.core.errors import EnvironmentProblem
from enlace.core.settings import KafkaSettings

# 256 KiB batches and a short linger: one request in flight per broker, so batch size drives
# throughput (see docs/kafka-notes.md).
PRODUCER_BATCH_BYTES = 262_144
PRODUCER_LINGER_MS = 5
# Transactional producers commit often; the default 100 ms backoff would dominate commit time.
TRANSACTIONAL_RETRY_BACKOFF_MS = 15
MAX_REQUEST_BYTES = 2_097_152


def _reset_is_a_connection_error(send: Callable[..., Any]) -> Callable[..., Any]:
    """aiokafka turns an OSError from writing a request into KafkaConnectionError, its
    "reconnect and retry"; uvloop (our event loop) raises RuntimeError instead when the
    connection was reset under it (aio-libs/aiokafka#1038, open in 0.14). Uncaught, that
    RuntimeError kills the client's own tasks (metadata sync, group coordination) for good:
    the client hangs while the process lives on. Seen under random resets in
    tests/faults/test_nemesis_partition.py."""

    @functools.wraps(send)
    def guarded(self: AIOKafkaConnection, *args: Any, **kwargs: Any) -> Any:
        writer = self._writer
        try:
            return send(self, *args, **kwargs)
        except RuntimeError as err:
            if writer is None or not writer.transport.is_closing():
                raise  # not the closed-transport case: not ours to reinterpret
            self.close(reason=CloseReason.CONNECTION_BROKEN)
            raise KafkaConnectionError(
                f"Connection at {self.host}:{self.port} broken: {err}"
            ) from err

    return guarded


if not getattr(AIOKafkaConnection.send, "__wrapped__", None):  # once, however imported
    AIOKafkaConnection.send = _reset_is_a_connection_error(AIOKafkaConnection.send)
    # The SASL handshake writes the same way, at (re)connection.
    AIOKafkaConnection._send_sasl_token = _reset_is_a_connection_error(  # noqa: SLF001
        AIOKafkaConnection._send_sasl_token  # noqa: SLF001
    )


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
