"""The transactional copy baseline: the router's engine with the routing logic taken out.

``python -m bench.copier --bootstrap B --prefix P --route SRC:DST:FANOUT ...`` runs
:class:`broker.engine.TransactionalEngine` (read_committed consumer, one transactional
producer per input partition, outputs and offsets in one transaction) with a handler that
writes each input record ``FANOUT`` times to ``DST`` unchanged. The difference between this
and the router is the router's own work: verification, decoding, decisions, audit records.
Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from broker.engine import BatchOutcome, OutRecord, TransactionalEngine
from enlace.core.clients import check_c_extensions
from enlace.core.logs import configure_logging
from enlace.core.settings import KafkaSettings


class CopyHandler:
    def __init__(self, routes: dict[str, tuple[str, int]]) -> None:
        self._routes = routes

    async def prepare(self, assigned: set[TopicPartition]) -> None:
        del assigned  # a copy keeps no state

    def handle(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> BatchOutcome:
        dest, fanout = self._routes[tp.topic]
        outcome = BatchOutcome()
        for record in records:
            out = OutRecord(dest, record.value or b"", record.key, tuple(record.headers))
            outcome.outputs.extend([out] * fanout)
        return outcome


class NoObserver:
    def committed(self, tp: TopicPartition, records: int, outputs: int, seconds: float) -> None:
        del tp, records, outputs, seconds

    def aborted(self, tp: TopicPartition, reason: str) -> None:
        del tp, reason


def parse_route(text: str) -> tuple[str, str, int]:
    source, dest, fanout = text.rsplit(":", 2)
    if not source or not dest or int(fanout) < 1:
        raise argparse.ArgumentTypeError(f"route {text!r} must be SRC:DST:FANOUT (FANOUT >= 1)")
    return source, dest, int(fanout)


async def serve(engine: TransactionalEngine) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await engine.start()
    runner = asyncio.create_task(engine.run())
    try:
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        await engine.stop()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.copier", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True, help="transactional id prefix")
    parser.add_argument("--route", type=parse_route, action="append", required=True)
    parser.add_argument("--max-batch", type=int, default=500)
    args = parser.parse_args(argv)
    configure_logging("INFO", "json")
    check_c_extensions()
    settings = KafkaSettings(kafka_bootstrap=args.bootstrap)
    routes = {source: (dest, fanout) for source, dest, fanout in args.route}
    engine = TransactionalEngine(
        settings,
        CopyHandler(routes),
        NoObserver(),
        topics=list(routes),
        group_id=f"{args.prefix}copiers",
        transactional_prefix=args.prefix,
        max_batch=args.max_batch,
        poll_ms=100,
    )
    asyncio.run(serve(engine))


if __name__ == "__main__":
    main()
