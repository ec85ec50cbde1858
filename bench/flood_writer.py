"""The flooding partner: pre-signed trust events to one receipts topic, as fast as a plain
producer takes them (a child process of the flood phase, like a partner's own client).

``python -m bench.flood_writer --bootstrap B --topic T --records FILE`` sends every record of
FILE (see :func:`bench.junk.dump_records`) with an idempotent acks=all producer, waits for
every acknowledgement, and prints one JSON line: how many were written, the wall-clock time
of the first send and of the last acknowledgement, and how many failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.junk import load_records
from enlace.core import clients
from enlace.core.clients import check_c_extensions
from enlace.core.settings import KafkaSettings


async def write(settings: KafkaSettings, topic: str, path: Path) -> dict[str, Any]:
    records = load_records(path)
    producer = clients.producer(settings)
    await producer.start()
    try:
        first_send = time.time()
        started = time.perf_counter()
        futures = [
            await producer.send(topic, value, key=key, headers=headers)
            for key, value, headers in records
        ]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        seconds = time.perf_counter() - started
    finally:
        await producer.stop()
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    return {
        "written": len(records) - len(failed),
        "failed": len(failed),
        "first_send": first_send,
        "acked": first_send + seconds,
        "seconds": seconds,
        "error": repr(failed[0]) if failed else None,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.flood_writer", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=Path, required=True)
    args = parser.parse_args(argv)
    check_c_extensions()
    settings = KafkaSettings(kafka_bootstrap=args.bootstrap)
    print(json.dumps(asyncio.run(write(settings, args.topic, args.records))), flush=True)


if __name__ == "__main__":
    main()
