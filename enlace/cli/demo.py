"""``enlace demo``: the whole exchange of 11 agencies on a local Kafka."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from deploy.localkafka import DEFAULT_DATA_DIR, LocalKafka
from enlace.core.errors import EnvironmentProblem
from enlace.core.logs import configure_logging, get_logger
from enlace.core.registry import Registry
from enlace.core.settings import DEFAULT_POLICY, KafkaSettings
from enlace.demo.accounting import Verdict
from enlace.demo.runner import Demo, DemoOptions, DemoState

log = get_logger(__name__)
console = Console()


def demo(
    seconds: Annotated[float, typer.Option(help="How long agencies publish.")] = 60.0,
    rate: Annotated[float, typer.Option(help="Bulletins per second, all agencies.")] = 20.0,
    seed: Annotated[int, typer.Option(help="Seed of the story and the bulletins.")] = 7,
    state_dir: Annotated[
        Path, typer.Option(help="Keys, key directory, stores and logs (kept after the run).")
    ] = Path(".enlace/demo"),
    policy: Annotated[Path, typer.Option(help="Release policy.")] = DEFAULT_POLICY,
    tui: Annotated[bool, typer.Option(help="Live terminal view; --no-tui logs instead.")] = True,
    metrics_port_base: Annotated[
        int, typer.Option(help="Router on BASE, producers BASE+1.., consumers BASE+21..; 0: any.")
    ] = 9300,
) -> None:
    """Run Kafka, the router and a producer and consumer per agency, with a scripted story.

    Exits 0 only if every published bulletin was accounted for (routed, duplicate or
    dead-lettered) and every release was delivered exactly once.
    """
    settings = KafkaSettings()
    if tui:
        # The live view owns the terminal: service logs go to the state dir instead.
        _log_to_file(state_dir / "logs" / "demo.log", settings.log_level)
    else:
        configure_logging(settings.log_level, settings.log_format)
    started_kafka: LocalKafka | None = None
    kafka_metrics: tuple[str, ...] = ()
    if "ENLACE_KAFKA_BOOTSTRAP" not in os.environ:
        kafka = LocalKafka(DEFAULT_DATA_DIR)
        running = any(node.alive for node in kafka.status())
        console.print("Kafka: " + ("using the running local broker" if running else
                                   "starting a local broker (first run fetches it)…"))  # fmt: skip
        try:
            spec = kafka.up(1)
        except EnvironmentProblem as exc:
            raise EnvironmentProblem(
                f"{exc}; to run the demo on the broker already listening there, "
                "export ENLACE_KAFKA_BOOTSTRAP=127.0.0.1:9092"
            ) from exc
        settings = KafkaSettings(kafka_bootstrap=spec.bootstrap)
        started_kafka = None if running else kafka
        kafka_metrics = tuple(spec.metrics_targets)
    options = DemoOptions(
        seconds=seconds,
        rate=rate,
        seed=seed,
        state_dir=state_dir,
        agencies_file=settings.agencies_file,
        policy_file=policy,
        metrics_port_base=metrics_port_base,
        kafka_metrics=kafka_metrics,
    )
    try:
        verdict, state = asyncio.run(_run(settings, options, tui=tui))
    finally:
        if started_kafka is not None:
            console.print("stopping the Kafka broker the demo started…")
            started_kafka.down()
    from enlace.demo.view import summary  # noqa: PLC0415 - rich view only when needed

    console.print(summary(state, verdict))
    console.print(f"state kept in {state_dir} (keys, keys.yaml, stores/, logs/, prometheus/)")
    if state.prometheus_config is not None:
        console.print(
            "Prometheus config of these endpoints (start it while a demo runs): "
            f"prometheus --config.file={state.prometheus_config}"
        )
    if not verdict.ok:
        raise typer.Exit(1)


async def _run(
    settings: KafkaSettings, options: DemoOptions, *, tui: bool
) -> tuple[Verdict, DemoState]:
    from enlace.demo.view import render  # noqa: PLC0415 - keeps `enlace --help` fast

    runner = Demo(settings, options)
    agencies = Registry.load(options.agencies_file).ids
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        interrupted = True
        if main is not None:
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    last_log = 0.0

    def log_tick(state: DemoState) -> None:
        nonlocal last_log
        if time.monotonic() - last_log < 5:
            return
        last_log = time.monotonic()
        counts = state.books.decision_counts()
        log.info(
            "demo_progress",
            phase=state.phase,
            elapsed=round(state.elapsed(), 1),
            published=len(state.books.published),
            routed=state.books.routed,
            delivered=state.delivered.total,
            full=counts["FULL"],
            tearline=counts["TEARLINE"],
            withheld=counts["WITHHELD"],
            p99_ms=state.latency_ms(99),
        )

    try:
        if tui:
            with Live(console=console, refresh_per_second=2, transient=False) as live:
                verdict = await runner.run(lambda s: live.update(render(s, agencies)))
        else:
            verdict = await runner.run(log_tick)
    except asyncio.CancelledError:
        if not interrupted:
            raise
        verdict = Verdict(ok=False, problems=("interrupted",))
    return verdict, runner.state


def _log_to_file(path: Path, level: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a", encoding="utf-8")  # open for the process's life
    configure_logging(level, "json", file=handle)
    # aiokafka logs reconnect errors through the standard library straight to the terminal.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def register(app: typer.Typer) -> None:
    """Add the demo command to ``app``."""
    app.command("demo")(demo)
