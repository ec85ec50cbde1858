"""Bulletin lifecycle decisions (issue 18): recalls, and releases when trust is earned.

Pure: records, the replay index's entries, scores and ``now`` in; decisions out. The router's
handler (:mod:`broker.routing`) turns them into feed records, audit records and rewritten
index entries in one transaction.

A **recall** is admitted like a bulletin (size, headers, origin header, the originator's
signature, decode, body origin, key validity, clock), then judged against the bulletin's
entry in the replay index:

* ``recall_unknown``         no bulletin of that id was routed for this originator (or it left
                             the replay window, or was routed before recipients were kept);
* ``recall_not_originator``  the id was routed for another agency;
* a second recall of one bulletin is audited as a duplicate and forwarded to no one.

Otherwise the originator's exact bytes go to every partner holding the bulletin (full or
tearline) and to no one else, and the entry is marked recalled: nothing of it is released
again.

A **release when trust is earned** considers each partner an entry marks upgradable (it was
withheld or given the tearline because of its score). :func:`due` picks the entries whose
pair now scores at or above the threshold of the next level, still valid and within the
policy's horizon; the handler re-reads each bulletin from its outbound record, re-admits it
and decides again with :func:`broker.release.decide`; only a score rule may release more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from broker.admission import (
    CLOCK_SKEW,
    INVALID,
    ORIGIN_MISMATCH,
    RECALL_NOT_ORIGINATOR,
    RECALL_UNKNOWN,
    Limits,
    Refused,
    provenance,
)
from broker.policy import Policy
from broker.release import ReleaseDecision, ReleaseSubject, Rule, ScoreSource
from broker.replay import Held, PartnerHold, Route, SeenEntry
from enlace.core.clock import outside_window
from enlace.core.errors import CodecError, SignatureError, ValidationError
from schemas import headers as hdr
from schemas.key_directory import KeyDirectory
from schemas.recall import BulletinRecall, decode_recall
from schemas.vocab import Classification, ReleaseKind

# Audit vocabulary (AuditRecord.decision is a plain string; older readers skip RECALLED and
# RERELEASED, schemas.events).
RECALL_RULE = "recall"
RECALL_FORWARDED_RULE = "recall_forwarded"
RECALL_DUPLICATE_RULE = "recall_duplicate"
RERELEASE_RULE = "rerelease"
RERELEASE_RULES = {
    ReleaseKind.FULL: "rerelease_full",
    ReleaseKind.TEARLINE: "rerelease_tearline",
}
# Every rule of a lifecycle audit row: what happened after the routing decision
# (``enlace policy whatif`` re-decides only routing decisions).
AUDIT_RULES = frozenset(
    {RECALL_RULE, RECALL_FORWARDED_RULE, RECALL_DUPLICATE_RULE, *RERELEASE_RULES.values()}
)

# The rules a higher score can overturn; anything else decided for good.
UPGRADABLE_RULES = frozenset({Rule.SCORE_BELOW, Rule.SCORE_TEARLINE})
# The rules a release when trust is earned may rest on.
EARNED_RULES = frozenset({Rule.SCORE_FULL, Rule.SCORE_TEARLINE})

_HELD_OF = {
    ReleaseKind.FULL: Held.FULL,
    ReleaseKind.TEARLINE: Held.TEARLINE,
    ReleaseKind.WITHHELD: Held.NOTHING,
}


def held_of(kind: ReleaseKind) -> Held:
    return _HELD_OF[kind]


# -- recalls ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AdmittedRecall:
    recall: BulletinRecall
    value: bytes
    signed: hdr.SignedHeaders

    @property
    def key(self) -> bytes:
        return self.recall.bulletin_id.encode("ascii")


def admit_recall(  # noqa: PLR0911 - one exit per check, in the documented order
    topic_agency: str,
    value: bytes | None,
    headers: hdr.Headers | None,
    *,
    keys: KeyDirectory,
    limits: Limits,
    received_at: datetime,
    now: datetime,
) -> AdmittedRecall | Refused:
    """The bulletin checks, in the same order, on a recall record."""
    checked = provenance(topic_agency, value, headers, limits)
    if isinstance(checked, Refused):
        return checked
    value, signed = checked
    try:
        keys.verify(topic_agency, signed.key_id, value, signed.sig, at=received_at)
    except SignatureError as exc:
        return Refused(exc.reason, str(exc))
    try:
        recall = decode_recall(value, max_bytes=limits.max_record_bytes)
    except CodecError as exc:
        return Refused(exc.reason, str(exc))
    except ValidationError as exc:
        return Refused(INVALID, str(exc)[:500])
    if recall.origin != topic_agency:
        return Refused(
            ORIGIN_MISMATCH, f"recall origin {recall.origin!r} on {topic_agency!r}'s topic"
        )
    if not keys.get(signed.key_id).valid_at(recall.recalled_at):
        return Refused(
            "revoked_key",
            f"key {signed.key_id!r} was not valid at recalled_at {recall.recalled_at}",
        )
    skew = outside_window(recall.recalled_at, now, limits.max_future, limits.max_past)
    if skew is not None:
        where = "in the future" if skew == "ahead" else "older than the window"
        return Refused(CLOCK_SKEW, f"recalled_at {recall.recalled_at} is {where}")
    return AdmittedRecall(recall, value, signed)


@dataclass(frozen=True, slots=True)
class RecallJudgement:
    """What to do with an admitted recall: forward to ``recipients`` (and mark the entry),
    audit it as a duplicate, or dead-letter it with ``refused``."""

    recipients: tuple[PartnerHold, ...] = ()
    entry: SeenEntry | None = None
    duplicate: bool = False
    refused: Refused | None = None


def judge_recall(
    admitted: AdmittedRecall, entry: SeenEntry | None, routed_for: str | None
) -> RecallJudgement:
    """``entry``: the index's entry of (origin, bulletin id); ``routed_for``: the origin the
    id was routed for, whoever that was."""
    recall = admitted.recall
    if entry is None:
        if routed_for is not None and routed_for != recall.origin:
            message = (
                f"bulletin {recall.bulletin_id} was published by {routed_for}, not {recall.origin}"
            )
            return RecallJudgement(refused=Refused(RECALL_NOT_ORIGINATOR, message))
        message = (
            f"no bulletin {recall.bulletin_id} of {recall.origin} was routed in the replay window"
        )
        return RecallJudgement(refused=Refused(RECALL_UNKNOWN, message))
    route = entry.route
    if route is None:
        message = (
            f"bulletin {recall.bulletin_id} was routed before the router kept its recipients: "
            "it cannot be recalled through the exchange"
        )
        return RecallJudgement(refused=Refused(RECALL_UNKNOWN, message))
    if route.recalled:
        return RecallJudgement(duplicate=True)
    marked = SeenEntry(entry.digest, entry.first_seen_ms, _recalled(route))
    return RecallJudgement(recipients=route.recipients, entry=marked)


def _recalled(route: Route) -> Route:
    holds = tuple(h._replace(upgradable=False) for h in route.holds)
    return replace(route, holds=holds, recalled=True)


# -- releases when trust is earned -------------------------------------------------------------
def route_of(
    partition: int, offset: int, subject: ReleaseSubject, decisions: Iterable[ReleaseDecision]
) -> Route:
    """A freshly routed bulletin's route: what each partner holds and whether a higher score
    could release it more."""
    holds = tuple(
        PartnerHold(d.partner, held_of(d.kind), d.rule in UPGRADABLE_RULES)
        for d in decisions
        if d.rule is not Rule.ORIGINATOR
    )
    valid_until = subject.valid_until
    return Route(
        partition,
        offset,
        _ms(valid_until) if valid_until is not None else None,
        subject.classification.value,
        subject.tearline_classification.value,
        holds,
    )


@dataclass(frozen=True, slots=True)
class Due:
    """An entry with partners whose score now reaches the next level."""

    key: bytes
    entry: SeenEntry
    partners: tuple[str, ...]


def still_valid(entry: SeenEntry, horizon: timedelta, now: datetime) -> bool:
    route = entry.route
    if route is None:
        return False
    now_ms = _ms(now)
    if route.valid_until_ms is not None and now_ms > route.valid_until_ms:
        return False
    return now_ms <= entry.first_seen_ms + int(horizon.total_seconds() * 1000)


def due(
    origin: str,
    candidates: Iterable[tuple[bytes, SeenEntry]],
    scores: ScoreSource,
    policy: Policy,
    now: datetime,
    *,
    limit: int,
) -> tuple[list[Due], list[bytes]]:
    """``origin``'s entries (among ``candidates``) due for a release when trust is earned,
    at most ``limit``, and the keys to stop considering (expired). A cheap filter: the
    handler decides each again in full."""
    horizon = timedelta(days=policy.rerelease.horizon_days)
    found: list[Due] = []
    expired: list[bytes] = []
    pair_scores: dict[str, float] = {}
    for key, entry in candidates:
        route = entry.route
        if route is None:
            continue
        if not still_valid(entry, horizon, now):
            expired.append(key)
            continue
        partners = []
        for hold in route.upgradable:
            score = pair_scores.get(hold.partner)
            if score is None:
                score = pair_scores[hold.partner] = scores.score(
                    origin, hold.partner, policy, now
                ).value
            if score >= _next_threshold(route, hold, policy):
                partners.append(hold.partner)
        if partners:
            found.append(Due(key, entry, tuple(partners)))
            if len(found) >= limit:
                break
    return found, expired


def _next_threshold(route: Route, hold: PartnerHold, policy: Policy) -> float:
    try:
        if hold.held is Held.NOTHING:
            return policy.threshold(Classification(route.tearline_classification))
        return policy.threshold(Classification(route.classification))
    except ValueError:
        return float("inf")  # a symbol this router does not know: never due


def upgraded(route: Route, decision: ReleaseDecision) -> PartnerHold | None:
    """The partner's new hold if ``decision`` (decided again now) releases more than it holds
    and rests on its score; None otherwise."""
    hold = route.holding(decision.partner)
    if hold is None or not hold.upgradable or decision.rule not in EARNED_RULES:
        return None
    new = held_of(decision.kind)
    if new.rank <= hold.held.rank:
        return None
    return PartnerHold(decision.partner, new, upgradable=new is not Held.FULL)


def _ms(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)
