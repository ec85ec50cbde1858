"""``python -m bench`` (``make bench``): see :mod:`bench` for what it measures."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import structlog

from bench import machine
from bench.exchange import build_exchange, new_token
from bench.flood import run_flood
from bench.history_phase import SIZES, parse_sizes, run_history
from bench.kafka_env import kafka_for_bench
from bench.plan import Plan
from bench.report import BenchResult, render
from bench.run import Progress, Run, describe, run_all
from enlace.core.clients import check_c_extensions
from enlace.core.logs import configure_logging
from enlace.core.settings import KafkaSettings

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure raw Kafka, a transactional copy and Enlace's publish and "
        "end-to-end path on the configured broker (ENLACE_KAFKA_BOOTSTRAP).",
    )
    parser.add_argument("--quick", action="store_true", help="a ~30 s run with small counts")
    parser.add_argument("--bulletins", type=int, help="bulletins per saturation phase")
    parser.add_argument("--rate", type=float, help="offered rate of the fixed-rate rows (/s)")
    parser.add_argument(
        "--profile-router", action="store_true",
        help="run the router process under cProfile and report its hotspots",
    )  # fmt: skip
    parser.add_argument(
        "--private-kafka", action="store_true",
        help="start a private broker (127.0.0.1:9292) even if the configured one answers: "
        "no other traffic on it, so its CPU use is the bench's alone",
    )  # fmt: skip
    parser.add_argument(
        "--flood", action="store_true",
        help="run only the flood phase: what junk trust events from one partner cost the "
        "other agencies' latency and the router's memory",
    )  # fmt: skip
    parser.add_argument("--flood-events", type=int, help="junk trust events of --flood")
    parser.add_argument(
        "--history", action="store_true",
        help="run only the history phase: router start-up (time to the first release, "
        "memory) against a large trust history, each size on a fresh private broker",
    )  # fmt: skip
    parser.add_argument(
        "--history-sizes", default=",".join(str(s) for s in SIZES),
        help="receipts (and as many audit releases) per history size, comma-separated "
        "(default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="JSON result path (default bench/results/)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.history:
        return history(args)
    base = Plan.quick() if args.quick else Plan.standard()
    try:
        plan = base.with_overrides(
            bulletins=args.bulletins,
            rate=args.rate,
            profile_router=args.profile_router,
            flood_events=args.flood_events,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    check_c_extensions()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS_DIR / f"bench-{stamp}.log"
    with log_path.open("a", encoding="utf-8") as log_file:
        route_logs(log_file)
        result = measure(
            plan, stamp, private_kafka=args.private_kafka, log_path=log_path, flood=args.flood
        )
    out = args.out or RESULTS_DIR / f"bench-{stamp}.json"
    out.write_text(json.dumps(result.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    print(f"JSON written to {out}", file=sys.stderr)
    sys.stdout.write(render(result))
    return 1 if result.problems else 0


def history(args: argparse.Namespace) -> int:
    """``--history``: always on private brokers (a fresh one per size), whatever
    ``--private-kafka`` says: the history must be the only data the router reads."""
    try:
        sizes = parse_sizes(args.history_sizes)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    check_c_extensions()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS_DIR / f"bench-{stamp}-history.log"
    progress = Progress()
    progress(f"logs of this run: {log_path}")
    with log_path.open("a", encoding="utf-8") as log_file:
        route_logs(log_file)
        result = run_history(sizes, progress, RESULTS_DIR, stamp)
    out = args.out or RESULTS_DIR / f"bench-{stamp}-history.json"
    out.write_text(json.dumps(result.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    print(f"JSON written to {out}", file=sys.stderr)
    progress(f"total {progress.elapsed:.0f} s")
    sys.stdout.write(render(result))
    return 1 if result.problems else 0


def route_logs(log_file: TextIO) -> None:
    """Services log at INFO (the router's per-bulletin line is part of its cost), into a
    file so that the report on stdout stays readable."""
    configure_logging("INFO", "json")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=log_file))
    # aiokafka logs through the standard library (e.g. a leader not elected yet on a fresh
    # topic, which it retries): into the same file.
    logging.basicConfig(
        level=logging.WARNING,
        handlers=[logging.StreamHandler(log_file)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def measure(
    plan: Plan, stamp: str, *, private_kafka: bool, log_path: Path, flood: bool = False
) -> BenchResult:
    progress = Progress()
    progress(f"logs of this run: {log_path}")
    settings = KafkaSettings()
    with (
        tempfile.TemporaryDirectory(prefix="enlace-bench-") as tmp,
        kafka_for_bench(settings, progress, private=private_kafka) as (kafka, broker),
    ):
        workdir = Path(tmp)
        token = new_token()
        exchange = build_exchange(workdir, token)
        result = BenchResult(machine=describe(kafka, plan, broker, exchange), config=asdict(plan))
        progress(f"run {token} on {broker}")
        run = Run(kafka, plan, exchange=exchange, workdir=workdir, result=result, progress=progress)
        try:
            asyncio.run(run_flood(run) if flood else run_all(run))
        except Exception as exc:  # noqa: BLE001 - a failed phase still reports what was measured
            result.problems.append(f"run stopped early: {exc!r} (see {log_path})")
        finally:
            for name in ("router-1.log", "router-2.log", "copier.log", "router.prof", "flood.log"):
                child_log = workdir / name
                if child_log.exists():
                    (RESULTS_DIR / f"bench-{stamp}-{name}").write_bytes(child_log.read_bytes())
        result.problems += [
            f"{r.stage} ({r.load}): {r.note}"
            for r in result.rows
            if "NOT ARRIVED" in r.note or "NOT ACKNOWLEDGED" in r.note
        ]
        result.machine["load average at end"] = machine.load_average()
        result.machine["payload"] = f"{run.payload.size} bytes per record (value + headers)"
    progress(f"total {progress.elapsed:.0f} s")
    return result


if __name__ == "__main__":
    sys.exit(main())
