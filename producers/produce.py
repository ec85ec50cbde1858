"""``enlace produce``: publish one input (file or stdin) and report what happened.

All input is validated and sealed before anything is sent, so ``--on-error abort`` publishes
nothing when any bulletin is invalid. Problems go to stderr as ``line N: field: rule``; the
summary goes to stdout. A progress bar appears on a terminal for large inputs.

``--format`` (:func:`read_input`): ``json``/``jsonl`` as ``producers.inputs`` reads them;
``stix`` a STIX 2.1 bundle (``producers.stix_intake``); ``misp`` MISP events
(``producers.misp_intake``); ``auto`` (default) reads JSON as before but takes a document that
is one object with ``"type": "bundle"`` as STIX: a bundle is never a bulletin, so nothing that
published before changes. MISP is not guessed: ``{"Event": ...}`` needs ``--format misp``.
What a reader left out of a bulletin that still publishes is printed as ``warning: ...`` and
never counted as a rejection.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from enlace.core.errors import BulletinRefused, ClockSkewRefused, KafkaUnavailable
from producers.inputs import InputFormat, ParsedInput, Problem, iter_chunks, parse_input
from producers.prepare import prepare_items
from producers.publisher import DeliveryResult, Publisher, PublishFailure
from producers.settings import PublisherSettings
from producers.stix_intake import parse_stix
from schemas.envelope import Sealed
from schemas.models import ThreatBulletin

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_UNACKNOWLEDGED = 3
PROGRESS_MIN_ITEMS = 500


def _is_stix_bundle(parsed: ParsedInput) -> bool:
    return (
        not parsed.problems
        and len(parsed.items) == 1
        and isinstance(parsed.items[0].obj, dict)
        and parsed.items[0].obj.get("type") == "bundle"
    )


def read_input(data: bytes, *, fmt: InputFormat = "auto", name: str = "") -> ParsedInput:
    """The items of ``data`` read as ``fmt`` (see the module docstring for ``auto``)."""
    if fmt == "stix":
        return parse_stix(data, name=name)
    if fmt == "misp":
        # Imported here: the MISP reader is only needed for MISP input.
        from producers.misp_intake import parse_misp  # noqa: PLC0415

        return parse_misp(data, name=name)
    parsed = parse_input(data, fmt=fmt, name=name)
    if fmt == "auto" and _is_stix_bundle(parsed):
        return parse_stix(data, name=name)
    return parsed


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
    publisher: Publisher,
    parsed: ParsedInput,
    *,
    stable_ids: bool,
    progress: Progress,
    refusals: list[PublishFailure],
) -> tuple[list[tuple[ThreatBulletin, Sealed]], list[Problem]]:
    now = publisher.clock()
    ready, problems = prepare_items(
        parsed.items, publisher.agency, now, digest=parsed.digest if stable_ids else None
    )
    problems = [*parsed.problems, *problems]
    records: list[tuple[ThreatBulletin, Sealed]] = []
    task = progress.add_task("sealing", total=len(ready))
    for item, bulletin in ready:
        try:
            records.append(publisher.seal(bulletin, now))
        except BulletinRefused as exc:
            # Counted (reason clock_skew) and logged by the publisher, reported per line here.
            failure = publisher.refused(bulletin.bulletin_id, exc)
            problems.append(Problem(item.line, "issued_at", str(exc), bulletin.bulletin_id))
            refusals.append(failure)
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


def clock_skew_line(failures: list[PublishFailure]) -> str | None:
    """One line that says what the clock-skew refusals among ``failures`` mean, or None."""
    reasons = Counter(f.error.reason for f in failures if isinstance(f.error, ClockSkewRefused))
    if not reasons:
        return None
    counts = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
    if "clock_off" in reasons:
        hint = "the broker refused their timestamps: this host's clock is off, fix it (NTP)"
    else:
        hint = "their issued_at is outside the exchange's admission window"
    return f"clock skew: {reasons.total()} bulletin(s) refused ({counts}); {hint}"


async def produce_bytes(
    settings: PublisherSettings,
    data: bytes,
    *,
    name: str = "",
    fmt: InputFormat = "auto",
    stable_ids: bool = True,
    console: Console | None = None,
    err: Console | None = None,
) -> int:
    """Publish the bulletins in ``data``; print problems and a summary; return the exit code."""
    out = console or Console()
    err = err or Console(stderr=True)
    publisher = Publisher(settings)
    publisher.load()
    parsed = read_input(data, fmt=fmt, name=name)
    for warning in parsed.warnings:
        # One line each, never wrapped at the console's width: read by people and by grep.
        err.print(f"warning: {warning.describe()}", markup=False, highlight=False, soft_wrap=True)
    with _progress(err, len(parsed.items)) as progress:
        refusals: list[PublishFailure] = []
        records, problems = _seal_all(
            publisher, parsed, stable_ids=stable_ids, progress=progress, refusals=refusals
        )
    for problem in problems:
        err.print(problem.describe(), markup=False, highlight=False, soft_wrap=True)
    rejected = len({(p.line, p.bulletin_id) for p in problems})
    if rejected > len(refusals):
        publisher.metrics.reject("invalid", rejected - len(refusals))
    skew = clock_skew_line(refusals)
    if skew:
        err.print(skew, markup=False, highlight=False)
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
    skew = clock_skew_line(failures)
    if skew:
        err.print(skew, markup=False, highlight=False)
    out.print(
        f"published {published}, rejected {rejected}, not acknowledged {len(failures)} "
        f"(topic {publisher.topic})",
        markup=False,
    )
    if failures:
        return EXIT_UNACKNOWLEDGED
    return EXIT_REJECTED if problems else EXIT_OK
