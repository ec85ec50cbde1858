"""The demo's books: every bulletin published in this run must be accounted for.

Pure bookkeeping fed by the publishers' acknowledgements, the audit and dead-letter topics and
the consumers' deliveries. A run passes when every published bulletin was routed (one audit
record per partner), dropped as a duplicate, or dead-lettered, and every release was delivered
exactly once to its partner.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from schemas.vocab import Classification

Pair = tuple[str, str]  # bulletin id, partner


@dataclass(frozen=True)
class Verdict:
    ok: bool
    problems: tuple[str, ...]


@dataclass
class Books:
    partners_per_bulletin: int
    published: dict[str, tuple[str, Classification]] = field(default_factory=dict)
    resent: Counter[str] = field(default_factory=Counter)
    injected_bad: set[bytes] = field(default_factory=set)
    decisions: dict[Pair, str] = field(default_factory=dict)
    repeated_decisions: int = 0
    duplicates_audited: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    dead_keys: set[bytes] = field(default_factory=set)
    deliveries: Counter[Pair] = field(default_factory=Counter)
    delivered_kind: dict[Pair, str] = field(default_factory=dict)

    # -- inputs ----------------------------------------------------------------------------
    def on_published(self, bulletin_id: str, origin: str, classification: Classification) -> None:
        self.published[bulletin_id] = (origin, classification)

    def on_resent(self, bulletin_id: str) -> None:
        self.resent[bulletin_id] += 1

    def on_injected_bad(self, key: bytes) -> None:
        self.injected_bad.add(key)

    def on_audit(self, bulletin_id: str, partner: str, decision: str) -> None:
        if bulletin_id not in self.published:
            return
        if decision == "DUPLICATE":
            self.duplicates_audited[bulletin_id] += 1
            return
        if (bulletin_id, partner) in self.decisions:
            self.repeated_decisions += 1
        self.decisions[bulletin_id, partner] = decision

    def on_dead_letter(self, key: bytes | None, reason: str) -> None:
        if key is not None and key in self.injected_bad:
            self.dead_keys.add(key)
            self.dead_letters[reason] += 1

    def on_delivery(self, bulletin_id: str, partner: str, release: str) -> None:
        if bulletin_id not in self.published:
            return
        self.deliveries[bulletin_id, partner] += 1
        self.delivered_kind[bulletin_id, partner] = release.upper()

    # -- views -----------------------------------------------------------------------------
    @property
    def routed(self) -> int:
        counts = Counter(bid for bid, _ in self.decisions)
        return sum(1 for n in counts.values() if n >= self.partners_per_bulletin)

    @property
    def released(self) -> dict[Pair, str]:
        return {pair: d for pair, d in self.decisions.items() if d in ("FULL", "TEARLINE")}

    def decision_counts(self) -> Counter[str]:
        return Counter(self.decisions.values())

    def settled(self) -> bool:
        """Everything published has come out the other side (used to end the drain)."""
        return not self.verdict().problems

    def verdict(self) -> Verdict:
        problems: list[str] = []
        per_bulletin = Counter(bid for bid, _ in self.decisions)
        unrouted = [b for b in self.published if per_bulletin[b] < self.partners_per_bulletin]
        if unrouted:
            problems.append(f"{len(unrouted)} published bulletin(s) not routed to every partner")
        if self.repeated_decisions:
            problems.append(f"{self.repeated_decisions} decision(s) audited more than once")
        missing_dups = [b for b, n in self.resent.items() if self.duplicates_audited[b] < n]
        if missing_dups:
            problems.append(f"{len(missing_dups)} re-sent bulletin(s) not audited as duplicate")
        missing_dead = self.injected_bad - self.dead_keys
        if missing_dead:
            problems.append(f"{len(missing_dead)} bad record(s) not dead-lettered")
        released = self.released
        undelivered = [p for p in released if self.deliveries[p] == 0]
        if undelivered:
            problems.append(f"{len(undelivered)} release(s) not delivered")
        twice = [p for p, n in self.deliveries.items() if n > 1]
        if twice:
            problems.append(f"{len(twice)} release(s) delivered more than once")
        unexpected = [p for p in self.deliveries if p not in released]
        if unexpected:
            problems.append(f"{len(unexpected)} delivery(ies) without a release decision")
        wrong_kind = [p for p, k in self.delivered_kind.items() if released.get(p, k) != k]
        if wrong_kind:
            problems.append(f"{len(wrong_kind)} delivery(ies) of the wrong release kind")
        return Verdict(not problems, tuple(problems))
