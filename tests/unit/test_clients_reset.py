"""The aiokafka shim of enlace/core/clients.py: a write on a connection that a reset closed
under uvloop (RuntimeError, aio-libs/aiokafka#1038) is the KafkaConnectionError aiokafka
retries on, and any other RuntimeError stays what it is."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import KafkaConnectionError

import enlace.core.clients  # noqa: F401 - importing it applies the shim


class _Transport:
    def __init__(self, closing: bool) -> None:
        self.closing = closing

    def is_closing(self) -> bool:
        return self.closing


class _Writer:
    """What uvloop's stream writer does once its transport is closed: refuse with RuntimeError."""

    def __init__(self, closing: bool) -> None:
        self.transport = _Transport(closing)
        self.closed = False

    def write(self, _data: bytes) -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    def close(self) -> None:
        self.closed = True


class _Struct:
    def build_request_header(self, **_kw: Any) -> Any:
        return self

    def encode(self) -> bytes:
        return b"x"


class _Request:
    def prepare(self, _versions: Any) -> _Struct:
        return _Struct()


async def _connection(closing: bool) -> tuple[AIOKafkaConnection, _Writer]:
    conn = AIOKafkaConnection("127.0.0.1", 9)
    writer = _Writer(closing)
    conn._writer = writer
    conn._reader = asyncio.StreamReader()
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    conn._read_task = done
    conn._versions = {}
    return conn, writer


async def test_a_write_on_a_reset_connection_is_a_connection_error() -> None:
    conn, writer = await _connection(closing=True)
    with pytest.raises(KafkaConnectionError, match="broken"):
        conn.send(_Request())
    assert writer.closed
    assert not conn.connected()  # closed: the client reconnects instead of reusing it


async def test_another_runtime_error_is_not_reinterpreted() -> None:
    conn, _ = await _connection(closing=False)
    try:
        with pytest.raises(RuntimeError, match="unable to perform"):
            conn.send(_Request())
    finally:
        conn.close()
