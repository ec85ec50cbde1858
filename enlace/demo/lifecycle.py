"""What the demo shows of the bulletin lifecycle (issue 18): the story's one recall (and the
impostor's refused one) and the releases when trust is earned. Pure: the runner reports what
it sent and what the audit said; :meth:`LifecycleWatch.lines` says it in a few lines for the
live view and the summary, from these notes and the books."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from enlace.demo.accounting import Books


def short(bulletin_id: str) -> str:
    return bulletin_id[:8]


@dataclass
class LifecycleWatch:
    rerelease_originator: str
    recall_originator: str
    impostor: str
    # The story's showcase: a CONFIDENTIAL bulletin early, tearline RESTRICTED, of the
    # originator whose bulletins may be released again.
    showcase_id: str | None = None
    recalled_id: str | None = None
    recall_id: str | None = None
    recalled_at: float | None = None  # seconds into the run
    recall_failed: str | None = None
    impostor_sent: bool = False
    # (originator, partner) → bulletins released again to it, and the first time and score.
    rereleases: Counter[tuple[str, str]] = field(default_factory=Counter)
    events: list[str] = field(default_factory=list)

    def on_rerelease(
        self, at: float, pair: tuple[str, str], bulletin_id: str, kind: str, score: float | None
    ) -> None:
        """One partner's release when trust was earned, ``pair`` (originator, partner); the
        first per pair makes an event line."""
        origin, partner = pair
        if not self.rereleases[pair]:
            shown = "" if score is None else f", score {score:.2f}"
            self.events.append(
                f"{at:5.1f}s  {origin} → {partner}: trust earned{shown}, "
                f"re-released {short(bulletin_id)} {kind}"
            )
        self.rereleases[pair] += 1

    def on_recall_sent(self, at: float, bulletin_id: str, recall_id: str) -> None:
        self.recalled_id, self.recall_id, self.recalled_at = bulletin_id, recall_id, at
        self.events.append(
            f"{at:5.1f}s  {self.recall_originator} recalls its bulletin {short(bulletin_id)}"
        )

    def lines(self, books: Books) -> list[str]:
        return [*self._showcase(books), *self._recall(books), *self._rereleased(books)]

    def _showcase(self, books: Books) -> list[str]:
        bid = self.showcase_id
        if bid is None:
            return []
        decided = Counter(d for (b, _), d in books.decisions.items() if b == bid)
        later = sorted(f"{p} {k}" for b, p, k in books.rereleased if b == bid)
        first = ", ".join(f"{k} {n}" for k, n in sorted(decided.items())) or "not routed yet"
        line = (
            f"{self.rerelease_originator}'s CONFIDENTIAL bulletin {short(bid)} (tearline "
            f"RESTRICTED): {first}; later: {', '.join(later) or '-'}"
        )
        return [line]

    def _recall(self, books: Books) -> list[str]:
        if self.recall_failed is not None:
            return [f"recall by {self.recall_originator} failed: {self.recall_failed}"]
        bid = self.recalled_id
        if bid is None:
            return [f"recall: {self.recall_originator} recalls one of its bulletins (not yet)"]
        holders = sum(1 for b, _ in books.released if b == bid)
        if not books.recall_audits[bid]:
            routed = "not yet routed"
        else:
            routed = f"forwarded to {len(books.recalls_forwarded.get(bid, ()))}/{holders} holders"
        received = sum(1 for b, _ in books.recalls_delivered if b == bid)
        lines = [
            (
                f"recall: {self.recall_originator} withdrew {short(bid)} "
                f"at {self.recalled_at or 0:.1f}s: {routed}, received by {received}"
            )
        ]
        if self.impostor_sent:
            seen = next(iter(books.dead_recalls.values()), None)
            lines.append(
                f"{self.impostor} tried to recall it too: "
                + (f"dead-lettered {seen}" if seen else "not dead-lettered yet")
            )
        return lines

    def _rereleased(self, books: Books) -> list[str]:
        counts = books.rerelease_counts()
        if not counts:
            return [f"re-released when trust is earned ({self.rerelease_originator}'s): none yet"]
        pairs = len({(b, p) for b, p, _ in books.rereleased})
        partners = sorted({p for _, p in self.rereleases})
        return [
            f"re-released when trust is earned: {counts.total()} (FULL {counts['FULL']}, "
            f"TEARLINE {counts['TEARLINE']}) of {pairs} bulletin-partner pair(s), to "
            + ", ".join(partners)
        ]
