"""The fault suite's one checker (Jepsen's model): a log of every publish, a read_committed
read of everything the exchange wrote, and each anomaly named and counted.

Pass = every count zero. Counted:

- ``lost``: an acknowledged bulletin with no decision at all;
- ``undecided``: an acknowledged bulletin decided for fewer partners than it has;
- ``duplicate_decision``: a (bulletin, partner) decided more than once (DUPLICATE audits of
  re-sends aside);
- ``duplicate_release``: a feed holding a bulletin twice;
- ``release_without_decision``: a feed record with no FULL/TEARLINE audit for it;
- ``missing_release``: a FULL/TEARLINE audit with no feed record;
- ``aborted_read``: a record of an aborted transaction (the engine's drill marks them) seen by
  a read_committed reader;
- ``order_violation``: within one audit partition, a record from an input partition at a lower
  offset than one already seen from it (transactions commit in input order);
- ``unexplained_dead_letter``: a dead letter of this exchange no injected fault explains;
- ``unexpected_duplicates``: more DUPLICATE audits than the re-sends the publisher made (a
  re-send whose first attempt never landed makes none, so fewer is no anomaly).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from broker.engine import INJECTED_ABORT_HEADER
from broker.outputs import DLQ_TOPIC
from enlace.core.topics import AUDIT, DEADLETTER, ROUTER_SEEN, feed
from schemas import headers as hdr
from tests.support import MiniExchange, Record, audit_of, decisions_of

ANOMALIES = (
    "lost",
    "undecided",
    "duplicate_decision",
    "duplicate_release",
    "release_without_decision",
    "missing_release",
    "aborted_read",
    "order_violation",
    "unexplained_dead_letter",
    "unexpected_duplicates",
)


@dataclass
class PublishLog:
    """What the publishers were told: acknowledged (with its place), failed, or unknown."""

    acked: dict[str, tuple[int, int]] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    resent: int = 0

    def ack(self, bulletin_id: str, partition: int, offset: int) -> None:
        self.acked[bulletin_id] = (partition, offset)


@dataclass
class Report:
    counts: Counter[str]
    decisions: Counter[str]
    examples: dict[str, list[str]]

    @property
    def ok(self) -> bool:
        return not any(self.counts[name] for name in ANOMALIES)

    def table(self) -> str:
        cells = ", ".join(f"{name} {self.counts[name]}" for name in ANOMALIES)
        return f"{cells}; decisions {dict(self.decisions)}"


class _Tally:
    def __init__(self, ex: MiniExchange, log: PublishLog) -> None:
        self.ex, self.log = ex, log
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)
        self.partners = len(ex.registry) - 1
        self.ours = {f"enlace.outbound.{agency}" for agency in ex.registry.ids}
        self.released: set[tuple[str, str]] = set()
        self.decisions: Counter[str] = Counter()
        self._decided: set[tuple[str, str]] = set()
        self._looked_at = 0

    def note(self, name: str, what: str, n: int = 1) -> None:
        self.counts[name] += n
        if len(self.examples[name]) < 5:
            self.examples[name].append(what)

    def marked(self, record: Record, where: str) -> None:
        if any(key == INJECTED_ABORT_HEADER for key, _ in record.headers or ()):
            self.note("aborted_read", f"{where} {record.partition}@{record.offset}")

    def all_decided(self, found: list[Record]) -> bool:
        """Called after every fetch with all records so far: only the new ones are decoded
        (re-decoding everything made the read quadratic, minutes at 60,000 audits)."""
        acked = self.log.acked
        for record in found[self._looked_at :]:
            for a in decisions_of(record):
                if a.decision != "DUPLICATE" and a.bulletin_id in acked:
                    self._decided.add((a.bulletin_id, a.partner))
        self._looked_at = len(found)
        return len(self._decided) >= len(acked) * self.partners

    def audits(self, records: list[Record]) -> None:
        per_pair: Counter[tuple[str, str]] = Counter()
        last_offset: dict[tuple[int, str, int], int] = {}
        duplicates = 0
        for record in records:
            audit = audit_of(record)
            if audit is None or audit.source_topic not in self.ours:
                continue
            self.marked(record, "audit")
            place = (record.partition, audit.source_topic, audit.source_partition)
            if audit.source_offset < last_offset.get(place, -1):
                self.note("order_violation", f"audit p{record.partition}: {place} went back")
            last_offset[place] = max(last_offset.get(place, -1), audit.source_offset)
            for decision in audit.per_partner():
                self.decisions[decision.decision] += 1
                if decision.decision == "DUPLICATE":
                    duplicates += 1
                    continue
                per_pair[(decision.bulletin_id, decision.partner)] += 1
                if decision.decision in ("FULL", "TEARLINE"):
                    self.released.add((decision.bulletin_id, decision.partner))
        for pair, n in per_pair.items():
            if n > 1:
                self.note("duplicate_decision", str(pair), n - 1)
        decided = Counter(bulletin for bulletin, _ in per_pair)
        for bulletin_id in self.log.acked:
            if decided[bulletin_id] == 0:
                self.note("lost", bulletin_id)
            elif decided[bulletin_id] < self.partners:
                self.note("undecided", f"{bulletin_id}: {decided[bulletin_id]}/{self.partners}")
        if duplicates > self.log.resent:
            self.note("unexpected_duplicates", f"{duplicates} DUPLICATE, {self.log.resent} re-sent")

    def feed(self, agency: str, records: list[Record], delivered: Counter[tuple[str, str]]) -> None:
        for record in records:
            self.marked(record, f"feed {agency}")
            delivered[(record.key.decode() if record.key else "", agency)] += 1

    def releases(self, delivered: Counter[tuple[str, str]]) -> None:
        for pair, n in delivered.items():
            if n > 1:
                self.note("duplicate_release", str(pair), n - 1)
            if pair not in self.released:
                self.note("release_without_decision", str(pair))
        for pair in self.released - set(delivered):
            self.note("missing_release", str(pair))

    def dead_letters(self, records: list[Record], explained: int) -> None:
        ours = 0
        for record in records:
            self.marked(record, "deadletter")
            ours += hdr.text(record.headers, DLQ_TOPIC) in self.ours
        self.counts["dead_letters"] = ours
        if ours > explained:
            self.note("unexplained_dead_letter", f"{ours} dead letters, {explained} injected",
                      ours - explained)  # fmt: skip


async def check(
    ex: MiniExchange,
    log: PublishLog,
    *,
    explained_dead_letters: int = 0,
    within: float = 120.0,
) -> Report:
    """Read everything (read_committed) until every acknowledged bulletin is decided for every
    partner or ``within`` passes, then count."""
    tally = _Tally(ex, log)
    tally.audits(await ex.read(AUDIT, until=tally.all_decided, within=within, settle=1.0))
    delivered: Counter[tuple[str, str]] = Counter()
    for agency in ex.registry.ids:
        want = sum(1 for _, p in tally.released if p == agency)

        def enough(found: list[Record], want: int = want) -> bool:
            return len(found) >= want

        records = await ex.read(feed(agency), until=enough, within=30, settle=1.0)
        tally.feed(agency, records, delivered)
    tally.releases(delivered)
    for record in await ex.read(ROUTER_SEEN, until=lambda _f: False, within=2.0):
        tally.marked(record, "seen")
    tally.dead_letters(
        await ex.read(DEADLETTER, until=lambda _f: False, within=2.0), explained_dead_letters
    )
    return Report(tally.counts, tally.decisions, dict(tally.examples))
