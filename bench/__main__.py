"""``python -m bench`` (``make bench``): see :mod:`bench` for what it measures."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import structlog

from bench import machine
from bench.exchange import build_exchange, new_token
from bench.kafka_env import kafka_for_bench
from bench.plan import Plan
from bench.report import BenchResult, render
from bench.run import Progress, Run, describe, run_all
from enlace.clients import check_c_extensions
from enlace.logs import configure_logging
from enlace.settings import KafkaSettings

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
    parser.add_argument("--out", type=Path, help="JSON result path (default bench/results/)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = Plan.quick() if args.quick else Plan.standard()
    try:
        plan = base.with_overrides(
            bulletins=args.bulletins, rate=args.rate, profile_router=args.profile_router
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    check_c_extensions()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS_DIR / f"bench-{stamp}.log"
    # Services log at INFO (the router's per-bulletin line is part of its cost); into a file,
    # so the report on stdout stays readable.
    configure_logging("INFO", "json")
    log_file = log_path.open("a", encoding="utf-8")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=log_file))
    # aiokafka logs through the standard library (e.g. a leader not elected yet on a fresh
    # topic, which it retries): into the same file.
    logging.basicConfig(
        level=logging.WARNING,
        handlers=[logging.StreamHandler(log_file)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    progress = Progress()
    progress(f"logs of this run: {log_path}")
    settings = KafkaSettings()
    with (
        tempfile.TemporaryDirectory(prefix="enlace-bench-") as tmp,
        kafka_for_bench(settings, progress, private=args.private_kafka) as (kafka, broker),
    ):
        workdir = Path(tmp)
        token = new_token()
        exchange = build_exchange(workdir, token)
        result = BenchResult(machine=describe(kafka, plan, broker, exchange), config=vars(plan))
        progress(f"run {token} on {broker}")
        run = Run(kafka, plan, exchange=exchange, workdir=workdir, result=result, progress=progress)
        try:
            asyncio.run(run_all(run))
        finally:
            for name in ("router.log", "copier.log", "router.prof"):
                child_log = workdir / name
                if child_log.exists():
                    (RESULTS_DIR / f"bench-{stamp}-{name}").write_bytes(child_log.read_bytes())
        result.machine["load average at end"] = machine.load_average()
        result.machine["payload"] = f"{run.payload.size} bytes per record (value + headers)"
    out = args.out or RESULTS_DIR / f"bench-{stamp}.json"
    out.write_text(json.dumps(result.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    progress(f"total {progress_total(progress):.0f} s; JSON written to {out}")
    sys.stdout.write(render(result))
    log_file.close()
    return 0


def progress_total(progress: Progress) -> float:
    import time  # noqa: PLC0415 - tiny helper

    return time.perf_counter() - progress.started


if __name__ == "__main__":
    sys.exit(main())
