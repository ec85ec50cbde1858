"""The demo's books: every bulletin published in this run must be accounted for.

Pure bookkeeping fed by the publishers' acknowledgements, the audit and dead-letter topics and
the consumers' deliveries. A run passes when every published bulletin was routed (one audit
record per partner), dropped as a duplicate, or dead-lettered, and every release was delivered
exactly once to its partner.

The lifecycle (issue 18) adds no bulletin in: a release when trust is earned (audit
``RERELEASED``, per partner rules ``rerelease_full``/``rerelease_tearline``) is one more
release of a bulletin already routed, to be delivered once too, in its kind (a tearline held
and now the full text: two deliveries of one bulletin, one of each kind); a recall (audit
``RECALLED``) must be forwarded to exactly the partners holding the bulletin, and reach each
once; a recall the router must refuse (another agency's bulletin) must be dead-lettered with
the reason the story expects.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from schemas.vocab import Classification

Pair = tuple[str, str]  # bulletin id, partner
Release = tuple[str, str, str]  # bulletin id, partner, kind (FULL or TEARLINE)

RERELEASE_RULES = frozenset({"rerelease_full", "rerelease_tearline"})
RECALLED = "RECALLED"


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
    delivered: Counter[Release] = field(default_factory=Counter)
    rereleased: Counter[Release] = field(default_factory=Counter)
    recalls: dict[str, str] = field(default_factory=dict)  # bulletin id → its origin
    recall_audits: Counter[str] = field(default_factory=Counter)
    recalls_forwarded: dict[str, set[str]] = field(default_factory=dict)
    recalls_delivered: Counter[Pair] = field(default_factory=Counter)
    # (outbound topic, key) → the dead-letter reason expected, and the one seen.
    refused_recalls: dict[tuple[str, bytes], str] = field(default_factory=dict)
    dead_recalls: dict[tuple[str, bytes], str] = field(default_factory=dict)

    # -- inputs ----------------------------------------------------------------------------
    def on_published(self, bulletin_id: str, origin: str, classification: Classification) -> None:
        self.published[bulletin_id] = (origin, classification)

    def on_resent(self, bulletin_id: str) -> None:
        self.resent[bulletin_id] += 1

    def on_injected_bad(self, key: bytes) -> None:
        self.injected_bad.add(key)

    def on_recall(self, bulletin_id: str) -> None:
        """The story recalled one of its bulletins (its publisher's acknowledgement)."""
        self.recalls[bulletin_id] = self.published[bulletin_id][0]

    def on_refused_recall(self, topic: str, key: bytes, reason: str) -> None:
        """The story sent a recall on ``topic`` the router must dead-letter with ``reason``."""
        self.refused_recalls[topic, key] = reason

    def on_audit(self, bulletin_id: str, partner: str, decision: str, rule: str = "") -> None:
        """One per-partner audit record (``AuditRecord.per_partner``)."""
        if bulletin_id not in self.published:
            return
        if decision == RECALLED:
            self.recall_audits[bulletin_id] += 1
            forwarded = self.recalls_forwarded.setdefault(bulletin_id, set())
            if partner != self.published[bulletin_id][0]:  # the origin: forwarded to no one
                forwarded.add(partner)
            return
        if rule in RERELEASE_RULES:
            self.rereleased[bulletin_id, partner, decision] += 1
            return
        if decision == "DUPLICATE":
            self.duplicates_audited[bulletin_id] += 1
            return
        if (bulletin_id, partner) in self.decisions:
            self.repeated_decisions += 1
        self.decisions[bulletin_id, partner] = decision

    def on_dead_letter(self, key: bytes | None, reason: str, source: str = "") -> None:
        if key is not None and key in self.injected_bad:
            self.dead_keys.add(key)
            self.dead_letters[reason] += 1
        elif key is not None and (source, key) in self.refused_recalls:
            self.dead_recalls[source, key] = reason

    def on_delivery(self, bulletin_id: str, partner: str, release: str) -> None:
        if bulletin_id not in self.published:
            return
        self.deliveries[bulletin_id, partner] += 1
        self.delivered[bulletin_id, partner, release.upper()] += 1

    def on_recall_delivery(self, bulletin_id: str, partner: str) -> None:
        """A partner's consumer verified and applied (or recorded) a recall."""
        if bulletin_id in self.published:
            self.recalls_delivered[bulletin_id, partner] += 1

    # -- views -----------------------------------------------------------------------------
    @property
    def routed(self) -> int:
        counts = Counter(bid for bid, _ in self.decisions)
        return sum(1 for n in counts.values() if n >= self.partners_per_bulletin)

    @property
    def released(self) -> dict[Pair, str]:
        """What each partner holds of each bulletin at the end: its routing decision, or the
        more a release when trust was earned gave it (FULL over TEARLINE)."""
        held: dict[Pair, str] = {}
        for bid, partner, kind in sorted(self.releases, key=lambda r: r[2] == "FULL"):
            held[bid, partner] = kind
        return held

    @property
    def releases(self) -> set[Release]:
        """Every release that must reach its partner once: at routing, and when earned."""
        first = {(b, p, d) for (b, p), d in self.decisions.items() if d in ("FULL", "TEARLINE")}
        return first | set(self.rereleased)

    def decision_counts(self) -> Counter[str]:
        return Counter(self.decisions.values())

    def rerelease_counts(self) -> Counter[str]:
        """Releases when trust was earned, by the kind released (FULL, TEARLINE)."""
        return Counter(kind for _, _, kind in self.rereleased)

    @property
    def recalls_forwarded_total(self) -> int:
        return sum(len(partners) for partners in self.recalls_forwarded.values())

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
        problems.extend(self._delivery_problems())
        problems.extend(self._lifecycle_problems())
        return Verdict(not problems, tuple(problems))

    def _delivery_problems(self) -> list[str]:
        problems: list[str] = []
        releases = self.releases
        undelivered = [r for r in releases if self.delivered[r] == 0]
        if undelivered:
            problems.append(f"{len(undelivered)} release(s) not delivered")
        twice = [r for r, n in self.delivered.items() if n > 1]
        if twice:
            problems.append(f"{len(twice)} release(s) delivered more than once")
        pairs = {(b, p) for b, p, _ in releases}
        unexpected = [(b, p) for b, p, _ in self.delivered if (b, p) not in pairs]
        if unexpected:
            problems.append(f"{len(unexpected)} delivery(ies) without a release decision")
        wrong_kind = [r for r in self.delivered if r not in releases and (r[0], r[1]) in pairs]
        if wrong_kind:
            problems.append(f"{len(wrong_kind)} delivery(ies) of the wrong release kind")
        repeated = [r for r, n in self.rereleased.items() if n > 1]
        if repeated:
            problems.append(f"{len(repeated)} re-release(s) audited more than once")
        held_already = [(b, p) for b, p, d in self.rereleased if self.decisions.get((b, p)) == d]
        if held_already:
            problems.append(f"{len(held_already)} re-release(s) of what the partner held")
        return problems

    def _lifecycle_problems(self) -> list[str]:
        problems: list[str] = []
        released = self.released
        for bid in self.recalls:
            holders = {p for (b, p) in released if b == bid}
            if self.recall_audits[bid] == 0:
                problems.append(f"recall of {bid} not audited")
                continue
            forwarded = self.recalls_forwarded.get(bid, set())
            if forwarded != holders:
                problems.append(
                    f"recall of {bid} forwarded to {len(forwarded)} partner(s), "
                    f"but {len(holders)} hold the bulletin"
                )
            missing = [p for p in forwarded if self.recalls_delivered[bid, p] == 0]
            if missing:
                problems.append(f"recall of {bid} not received by {len(missing)} partner(s)")
        unrecalled = [pair for pair in self.recalls_delivered if pair[0] not in self.recalls]
        if unrecalled:
            problems.append(f"{len(unrecalled)} recall(s) received that the story never sent")
        for where, reason in self.refused_recalls.items():
            seen = self.dead_recalls.get(where)
            if seen != reason:
                problems.append(
                    f"a recall of another agency's bulletin was {seen or 'not dead-lettered'}, "
                    f"not dead-lettered {reason}"
                )
        return problems
