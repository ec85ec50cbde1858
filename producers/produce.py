"""``enlace produce``: publish one input (file or stdin) and report what happened.

All input is validated and sealed before anything is sent, so ``--on-error abort`` publishes
nothing when any bulletin is invalid. Problems go to stderr as ``line N: field: rule``; the
summary goes to stdout. A progress bar appears on a terminal for large inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from enlace.core.errors import KafkaUnavailable
from producers.inputs import ParsedInput, Problem, iter_chunks, parse_input
from producers.prepare import prepare_items
from producers.publisher import DeliveryResult, Publisher, PublishFailure, utc_now
from producers.settings import PublisherSettings
from schemas.envelope import Sealed
from schemas.models import ThreatBulletin

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_UNACKNOWLEDGED = 3
PROGRESS_MIN_ITEMS = 500


@contextmanager
def _progress(console: Console, total: int) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=total < PROGRESS_MIN_ITEMS,
    )
    with progress:
        yield progress


def _seal_all(
    publisher: Publisher, parsed: ParsedInput, *, stable_ids: bool, progress: Progress
) -> tuple[list[tuple[ThreatBulletin, Sealed]], list[Problem]]:
    now = utc_now()
    ready, problems = prepare_items(
        parsed.items, publisher.agency, now, digest=parsed.digest if stable_ids else None
    )
    problems = [*parsed.problems, *problems]
    records: list[tuple[ThreatBulletin, Sealed]] = []
    task = progress.add_task("sealing", total=len(ready))
    for item, bulletin in ready:
        try:
            records.append(publisher.seal(bulletin, now))
        except Exception as exc:  # noqa: BLE001 - every seal failure is a per-line problem
            problems.append(Problem(item.line, "(record)", str(exc), bulletin.bulletin_id))
        progress.advance(task)
    return records, problems


async def _publish(
    publisher: Publisher, records: list[tuple[ThreatBulletin, Sealed]], err: Console
) -> tuple[int, list[PublishFailure]]:
    failures: list[PublishFailure] = []
    published = 0
    try:
        async with publisher:
            with _progress(err, len(records)) as progress:
                task = progress.add_task("publishing", total=len(records))
                for chunk in iter_chunks(records, publisher.settings.max_batch):
                    for outcome in await publisher.send_sealed(chunk):
                        if isinstance(outcome, DeliveryResult):
                            published += 1
                        else:
                            failures.append(outcome)
                    progress.advance(task, len(chunk))
    except KafkaUnavailable as exc:
        # Raised only by start(): nothing was sent; every bulletin is not acknowledged and
        # re-running the same input is safe.
        err.print(f"error: {exc}", markup=False, highlight=False)
        failures = [PublishFailure(b.bulletin_id, "unavailable", exc) for b, _ in records]
    return published, failures


async def produce_bytes(
    settings: PublisherSettings,
    data: bytes,
    *,
    name: str = "",
    stable_ids: bool = True,
    console: Console | None = None,
    err: Console | None = None,
) -> int:
    """Publish the bulletins in ``data``; print problems and a summary; return the exit code."""
    out = console or Console()
    err = err or Console(stderr=True)
    publisher = Publisher(settings)
    publisher.load()
    parsed = parse_input(data, name=name)
    with _progress(err, len(parsed.items)) as progress:
        records, problems = _seal_all(publisher, parsed, stable_ids=stable_ids, progress=progress)
    for problem in problems:
        err.print(problem.describe(), markup=False, highlight=False)
    rejected = len({(p.line, p.bulletin_id) for p in problems})
    if problems:
        publisher.metrics.reject("invalid", rejected)
    if problems and settings.on_error == "abort":
        out.print(
            f"aborted: {rejected} bulletin(s) rejected, nothing published "
            "(--on-error skip publishes the valid ones)",
            markup=False,
        )
        return EXIT_REJECTED
    published, failures = await _publish(publisher, records, err) if records else (0, [])
    for failure in failures:
        err.print(str(failure), markup=False, highlight=False)
    out.print(
        f"published {published}, rejected {rejected}, not acknowledged {len(failures)} "
        f"(topic {publisher.topic})",
        markup=False,
    )
    if failures:
        return EXIT_UNACKNOWLEDGED
    return EXIT_REJECTED if problems else EXIT_OK
