"""What a new policy would have decided on recorded bulletins (pure): ``enlace policy whatif``.

Inputs: the recorded decisions (:class:`broker.audit_query.AuditedDecision`), what the release
decision needs to know about each bulletin (:class:`broker.release.ReleaseSubject`), the
partners' countries, the policy in force and the new one. Each decision is re-decided with
:func:`broker.release.decide` under the new policy, at its own ``decided_at``, **with the score
it was decided with** (the audit record carries it), and compared with what was recorded.

The bulletin's facts (category, classifications, TLP, releasable_to, caveats, valid_until)
come from the audit record itself when it is version 3 (the row's ``subject``): such a history
is re-decided from the audit topic alone, with no outbound read and no retention limit.

What older records (versions 1 and 2) do not carry, and what is done about it:

* the bulletin's facts: they come from the outbound record at the audit's provenance (topic,
  partition, offset), passed in as ``subjects`` (:func:`needs_outbound` says which rows need
  it; only the router's principal may read outbound topics). A decision whose bulletin is
  gone (outbound retention: 14 days) or unreadable is *undecided* and listed, unless its rule
  does not depend on the policy (``originator``, ``not_sealed_for``, ``expired``,
  ``not_releasable_to``, ``tlp_red_not_named``: the same under any policy, so kept without
  reading the bulletin).

What no record carries:

* a decision made before any score was needed (``category_not_shared``, an override) has no
  score; when the new policy needs one, the pair's recorded score nearest in time (from another
  bulletin of the window) stands in, named in the reason; with none in the window: undecided;
* the score itself is the recorded one. Priors, weights, the cap and reciprocity of the new
  policy are **not** applied to it (the audit keeps the factors, not the evidence that was
  folded, and half-lives, the receipt deadline and the claim budget change what was folded at
  all): when they differ, the report says so (``caveats``) and only the rules and thresholds
  of the new policy are measured.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from broker.audit_query import DUPLICATE, AuditedDecision, is_lifecycle
from broker.policy import AgreementLevel, Policy, Prior
from broker.release import Partner, ReleaseSubject, Rule, decide
from broker.trust import TrustScore
from schemas.vocab import Classification

# Rules that decide before the policy is consulted: their decision cannot change.
POLICY_FREE = frozenset(
    {Rule.ORIGINATOR, Rule.NOT_SEALED_FOR, Rule.EXPIRED, Rule.NOT_RELEASABLE_TO,
     Rule.TLP_RED_NOT_NAMED}
)  # fmt: skip
RANK = {"WITHHELD": 0, "TEARLINE": 1, "FULL": 2}
EXAMPLES = 3


@dataclass(frozen=True, slots=True)
class Redecided:
    """One decision as recorded and as the new policy would make it."""

    decision: AuditedDecision
    classification: Classification | None
    kind: str
    rule: str
    reason: str
    score_from: str  # "recorded", "none needed", or where a stand-in score came from

    @property
    def transition(self) -> tuple[str, str]:
        return (self.decision.decision, self.kind)

    @property
    def changed(self) -> bool:
        return self.kind != self.decision.decision

    @property
    def gained(self) -> bool:
        return RANK.get(self.kind, 0) > RANK.get(self.decision.decision, 0)


@dataclass(frozen=True, slots=True)
class Undecided:
    decision: AuditedDecision
    why: str


@dataclass
class WhatIfReport:
    considered: int = 0
    unchanged: int = 0
    changes: list[Redecided] = field(default_factory=list)
    undecided: list[Undecided] = field(default_factory=list)
    # Decisions the old policy does not reproduce either (the policy changed in the window,
    # or the old policy given is not the one the router ran): compared against the record.
    not_reproduced: list[Redecided] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def gained(self) -> int:
        return sum(1 for c in self.changes if c.gained)

    def lost(self) -> int:
        return len(self.changes) - self.gained()

    def by_pair(self) -> dict[tuple[str, str], Counter[tuple[str, str]]]:
        found: dict[tuple[str, str], Counter[tuple[str, str]]] = defaultdict(Counter)
        for c in self.changes:
            found[c.decision.pair][c.transition] += 1
        return dict(sorted(found.items()))

    def by_classification(self) -> dict[str, Counter[tuple[str, str]]]:
        found: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
        for c in self.changes:
            name = c.classification.value if c.classification else "?"
            found[name][c.transition] += 1
        order = {c.value: c.rank for c in Classification}
        return dict(sorted(found.items(), key=lambda kv: order.get(kv[0], 99)))

    def examples(self, pair: tuple[str, str], transition: tuple[str, str]) -> list[str]:
        return [
            c.decision.bulletin_id
            for c in self.changes
            if c.decision.pair == pair and c.transition == transition
        ][:EXAMPLES]


class _PairScores:
    """Each pair's recorded scores in time order, for decisions recorded without one."""

    def __init__(self, rows: Iterable[AuditedDecision]) -> None:
        self._times: dict[tuple[str, str], list[datetime]] = defaultdict(list)
        self._rows: dict[tuple[str, str], list[AuditedDecision]] = defaultdict(list)
        for row in sorted((r for r in rows if r.score is not None), key=lambda r: r.decided_at):
            self._times[row.pair].append(row.decided_at)
            self._rows[row.pair].append(row)

    def nearest(self, row: AuditedDecision) -> AuditedDecision | None:
        times = self._times.get(row.pair)
        if not times:
            return None
        i = bisect.bisect_left(times, row.decided_at)
        around = [j for j in (i - 1, i) if 0 <= j < len(times)]
        best = min(around, key=lambda j: abs((times[j] - row.decided_at).total_seconds()))
        return self._rows[row.pair][best]


def needs_outbound(rows: Iterable[AuditedDecision]) -> list[AuditedDecision]:
    """The rows :func:`what_if` can only re-decide with the bulletin's outbound record: not a
    duplicate, a rule the policy decides, and a record without facts (before version 3)."""
    return [
        r
        for r in rows
        if r.subject is None
        and r.decision != DUPLICATE
        and r.rule not in POLICY_FREE
        and not is_lifecycle(r)
    ]


def _score(row: AuditedDecision, value: float) -> TrustScore:
    # A stand-in TrustScore: decide() reads only its value; alpha/beta/prior are unused.
    return TrustScore(
        row.origin, row.partner, value, value, 1.0 - value, Prior(AgreementLevel.NONE, 0, 0),
        row.decided_at,
    )  # fmt: skip


class _Given:
    """A score source holding one value (None: none recorded), noting whether it was read:
    decide() asks for the score only once the rules before it passed."""

    def __init__(self, row: AuditedDecision, value: float | None) -> None:
        self.row, self.value, self.read = row, value, False

    def score(self, _o: str, _p: str, _policy: Policy, _now: datetime) -> TrustScore:
        self.read = True
        return _score(self.row, 0.0 if self.value is None else self.value)


def _redecide(
    row: AuditedDecision,
    subject: ReleaseSubject,
    policy: Policy,
    country: str,
    scores: _PairScores,
) -> Redecided | str:
    """The decision under ``policy``, or why it cannot be made."""
    source = "recorded"
    value = row.score
    if value is None:
        stand_in = scores.nearest(row)
        if stand_in is not None:
            value = stand_in.score
            source = (
                f"score of {stand_in.bulletin_id} decided {stand_in.decided_at:%Y-%m-%d %H:%M:%S}Z"
            )
    given = _Given(row, value)
    decision = decide(subject, Partner(row.partner, country), given, policy, row.decided_at)
    if given.read and value is None:
        return f"no recorded score for {row.origin} -> {row.partner} in the window"
    return Redecided(
        row,
        subject.classification,
        decision.kind.value,
        decision.rule.value,
        decision.reason,
        source if given.read else "none needed",
    )


def what_if(
    rows: Iterable[AuditedDecision],
    subjects: Mapping[str, ReleaseSubject],
    countries: Mapping[str, str],
    old: Policy,
    new: Policy,
    *,
    missing_subject: Mapping[str, str] | None = None,
) -> WhatIfReport:
    """Re-decide every recorded release decision under ``new`` (``old``: the policy in force,
    to check it reproduces the record). A row's own facts (version 3) come first; ``subjects``
    (from outbound records) serve the older rows, ``missing_subject`` says why a bulletin
    could not be read."""
    # Lifecycle rows happened after the routing decision: only that decision is re-decided.
    decisions = [r for r in rows if r.decision != DUPLICATE and not is_lifecycle(r)]
    scores = _PairScores(decisions)
    report = WhatIfReport(caveats=caveats(old, new, {r.pair for r in decisions}))
    why_missing = missing_subject or {}
    for row in decisions:
        report.considered += 1
        if row.rule in POLICY_FREE:
            report.unchanged += 1
            continue
        subject = row.subject or subjects.get(row.bulletin_id)
        country = countries.get(row.partner)
        if subject is None or country is None:
            why = (
                why_missing.get(row.bulletin_id, "bulletin not read")
                if subject is None
                else "the partner is not in the registry"
            )
            report.undecided.append(Undecided(row, why))
            continue
        before = _redecide(row, subject, old, country, scores)
        after = _redecide(row, subject, new, country, scores)
        if isinstance(after, str):
            report.undecided.append(Undecided(row, after))
            continue
        if isinstance(before, Redecided) and before.kind != row.decision:
            report.not_reproduced.append(before)
        if after.changed:
            report.changes.append(after)
        else:
            report.unchanged += 1
    return report


def caveats(old: Policy, new: Policy, pairs: Iterable[tuple[str, str]]) -> list[str]:
    """What the new policy changes that recorded scores cannot show (see the module doc)."""
    found = []
    if old.evidence != new.evidence:
        found.append(
            "evidence parameters differ (weights, cap, reciprocity, half-lives, receipt "
            "deadline or claims): recorded scores are kept, so their effect is not shown"
        )
    moved = sorted(
        f"{o}->{p}" for o, p in pairs if old.agreement(o, p).prior != new.agreement(o, p).prior
    )
    if moved:
        shown = ", ".join(moved[:5]) + (f" and {len(moved) - 5} more" if len(moved) > 5 else "")
        found.append(
            f"the prior of {len(moved)} pair(s) differs ({shown}): recorded scores are kept, "
            "so the new prior's effect on the score is not shown (categories are applied)"
        )
    return found
