"""A pair's trust history read from Kafka, as the records of a history file
(:mod:`broker.trust_source`), for ``enlace trust plot --live``.

The history is what the router folds: every receipts topic and the audit topic, read **from the
beginning** (no snapshot, no audit horizon: the series needs every event) by the router's own
:class:`~broker.trust_view.TrustFeed` into its own :class:`~broker.trust_state.TrustState`, so
records are verified, merged in time order and judged exactly as the router judges them. What
the state *counts* is recorded, dated as the router dates it:

* a release the state remembers: ``ObservedRelease`` at its decision time (never after the
  read's clock);
* a receipt or feedback the state counts for a release (at once, or as an orphan once its
  release is read): ``ObservedEvent`` at its **observation** (the record's broker-set time),
  with ``released_at`` of that release, so the series judges it on time or late as the router did;
* an incident the state counts: ``ObservedEvent`` at its observation.

Refused events (bad signature, forged origin, clock skew, unknown agency, ...), duplicates,
repeats and orphans that never found their release are not recorded: they never counted.
Missing receipts are not recorded either: the series builder derives them from the releases
and the receipts' times, as the router's sweep does. So the series' score at any time is the
router's score for the pair (the records of other pairs are folded too, since the state's
bounds are per partner and per reporter, but only the pair's are kept).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiokafka.errors import KafkaConnectionError

from broker.ledger import ObservedEvent, ObservedRelease
from broker.policy import Policy
from broker.trust_state import KIND_BITS, Folded, Outcome, Release, ReleaseKey, TrustState
from broker.trust_view import RejectedEvent, TrustFeed
from enlace.core.errors import BrokerError, ConfigError, KafkaUnavailable
from enlace.core.registry import Registry
from enlace.core.settings import KafkaSettings
from enlace.core.topics import AUDIT, receipts
from schemas.key_directory import KeyDirectory
from schemas.models import TrustEvent
from schemas.vocab import TrustEventKind

DEFAULT_TIMEOUT_S = 60.0
Record = ObservedEvent | ObservedRelease
Progress = Callable[[int, int], None]


class _Recorder(TrustState):
    """A :class:`TrustState` that also keeps, as records, what it counted for one pair."""

    def __init__(
        self, policy: Policy, agencies: Iterable[str], pair: tuple[str, str] | None
    ) -> None:
        super().__init__(policy, agencies)
        self._pair = frozenset(pair) if pair is not None else None
        self.records: list[Record] = []

    def _wanted(self, a: str, b: str) -> bool:
        return self._pair is None or {a, b} == self._pair

    def release(
        self,
        originator: str,
        partner: str,
        bulletin_id: str,
        at: datetime,
        now: datetime | None = None,
    ) -> list[TrustEventKind]:
        key = (originator, partner, bulletin_id)
        new = key not in self.releases
        counted = super().release(originator, partner, bulletin_id, at, now)
        remembered = self.releases.get(key)
        if new and remembered is not None and self._wanted(originator, partner):
            self.records.append(ObservedRelease(originator, partner, remembered.at, bulletin_id))
        return counted

    def event(self, event: TrustEvent, observed: datetime, now: datetime) -> Folded:
        folded = super().event(event, observed, now)
        # Receipts and feedback are recorded where they count (_fold_released), also when a
        # held one counts later; what is left are the events that need no release.
        if (
            folded.outcome is Outcome.COUNTED
            and event.kind not in KIND_BITS
            and self._wanted(event.reporter, event.subject)
        ):
            self.records.append(
                ObservedEvent(
                    event.kind, event.reporter, event.subject, min(observed, now), event.bulletin_id
                )
            )
        return folded

    def _fold_released(
        self, kind: TrustEventKind, key: ReleaseKey, release: Release, observed: datetime
    ) -> bool:
        counted = super()._fold_released(kind, key, release, observed)
        originator, reporter, bulletin_id = key
        if counted and self._wanted(originator, reporter):
            self.records.append(
                ObservedEvent(kind, reporter, originator, observed, bulletin_id, release.at)
            )
        return counted


@dataclass
class History:
    records: list[Record] = field(default_factory=list)
    read: int = 0  # records read from Kafka (every pair's)
    rejected: int = 0  # refused trust events (the router dead-lettered them)


def _unreachable(settings: KafkaSettings, timeout: float) -> KafkaUnavailable:
    return KafkaUnavailable(
        f"cannot read the trust history: Kafka at {settings.kafka_bootstrap} did not answer "
        f"(waited up to {timeout:g} s; is it up, and are ENLACE_KAFKA_* set for it?)"
    )


async def read_history(
    settings: KafkaSettings,
    registry: Registry,
    policy: Policy,
    keys: KeyDirectory,
    *,
    pair: tuple[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,  # noqa: ASYNC109 - one bound for the whole read
    on_progress: Progress = lambda _read, _total: None,
    audit_topic: str = AUDIT,
) -> History:
    """Every release and counted trust event of ``pair`` (both directions; None: every pair)
    from the beginning of the audit and receipts topics to their end now."""
    state = _Recorder(policy, registry.ids, pair)
    out = History(records=state.records)

    def rejected(_event: RejectedEvent) -> None:
        out.rejected += 1

    def progress(read: int, total: int) -> None:
        out.read = read
        on_progress(read, total)

    feed = TrustFeed(
        settings,
        state,
        keys,
        receipt_topics=[receipts(a) for a in registry.ids],
        audit_topic=audit_topic,
        on_reject=rejected,
        audit_horizon=None,
    )
    try:
        async with asyncio.timeout(timeout):
            await feed.start()
            try:
                await feed.catch_up(progress)
            finally:
                await feed.stop()
    except TimeoutError as exc:
        if out.read == 0:
            raise _unreachable(settings, timeout) from exc
        raise BrokerError(
            f"reading the trust history took longer than {timeout:g} s ({out.read} records "
            "read); give a larger --timeout"
        ) from exc
    except KafkaUnavailable:
        raise
    except BrokerError as exc:
        if isinstance(exc.__cause__, KafkaConnectionError):
            raise _unreachable(settings, timeout) from exc
        raise
    return out


def record_line(record: Record) -> dict[str, str | None]:
    """One record as a line of a history file (:func:`broker.trust_source.parse_record`)."""
    if isinstance(record, ObservedRelease):
        return {
            "record": "release",
            "originator": record.originator,
            "partner": record.partner,
            "released_at": record.released_at.isoformat(),
            "bulletin_id": record.bulletin_id,
        }
    line: dict[str, str | None] = {
        "kind": record.kind.value,
        "reporter": record.reporter,
        "subject": record.subject,
        "bulletin_id": record.bulletin_id,
        "occurred_at": record.occurred_at.isoformat(),
    }
    if record.released_at is not None:
        line["released_at"] = record.released_at.isoformat()
    return line


def write_records(path: Path, records: Iterable[Record]) -> None:
    """``records`` as a history file that ``--events`` reads back to the same records."""
    try:
        with path.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record_line(record), separators=(",", ":")) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write trust events {path}: {exc}") from exc
