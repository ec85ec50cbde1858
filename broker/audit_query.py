"""Questions operators ask of the audit trail: which decisions, and why, in words (pure).

The audit topic holds one ``ROUTED`` record per routed bulletin (every partner's decision),
one record per duplicate, and version-1 records (one per pair). :func:`decisions_of` flattens
any of them into :class:`AuditedDecision` rows; :func:`select` filters them; :func:`in_words`
says what a decision means; :func:`render_json` / :func:`render_csv` write one row per
decision for machines. No I/O: ``broker.audit_read`` reads Kafka, ``broker.audit_cli`` prints.

A version-3 record carries the bulletin's facts the decision read (category, classifications,
TLP, releasable_to, caveats, valid_until): each row holds them as its ``subject``
(:func:`subject_of_record`), so explanations name the thresholds that decided from the audit
topic alone. Rows of older records have none (``subject`` None); for those a caller may read
the facts from the outbound record (``broker.audit_read.read_subjects``, router principal
only, 14-day retention) and pass them in, and :func:`without_facts` says which rows need it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from broker import lifecycle
from broker.policy import Policy
from broker.release import ReleaseSubject, Rule
from schemas.models import AuditRecord
from schemas.vocab import Category, Caveat, Classification, Tlp

DUPLICATE = "DUPLICATE"
RELEASE_WORDS = {"FULL": "released in full", "TEARLINE": "tearline only", "WITHHELD": "withheld"}


def is_lifecycle(row: AuditedDecision) -> bool:
    """A recall or a release when trust is earned: rows about what happened after routing."""
    return row.rule in lifecycle.AUDIT_RULES


FACTOR_WORDS = {
    "receipt_on_time": "receipts on time",
    "receipt_late": "late receipts",
    "receipt_missing": "missing receipts",
    "feedback_actioned": "actioned feedback",
    "feedback_useful": "useful feedback",
    "feedback_not_useful": "not-useful feedback",
    "incident_mishandling": "mishandling incidents",
    "incident_leak": "leaks",
    "incident_corruption": "corruption incidents",
    "positive_cap": "positive cap",
}
COLUMNS = (
    "bulletin_id", "origin", "partner", "decision", "rule", "score", "reached", "decided_at",
    "source_topic", "source_partition", "source_offset", "explanation", "factors",
    "category", "classification", "tearline_classification", "tlp", "releasable_to", "caveats",
    "valid_until",
)  # fmt: skip
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class AuditedFactor:
    name: str
    value: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class AuditedDecision:
    """One (bulletin, partner) decision as the audit trail recorded it."""

    bulletin_id: str
    origin: str
    partner: str
    decision: str
    rule: str
    score: float | None
    factors: tuple[AuditedFactor, ...]
    decided_at: datetime
    source_topic: str
    source_partition: int
    source_offset: int
    # The bulletin's facts as the record carries them (version 3); None on older records, or
    # when the record names a symbol this version does not know.
    subject: ReleaseSubject | None = None

    @property
    def pair(self) -> tuple[str, str]:
        return (self.origin, self.partner)


def subject_of_record(record: AuditRecord) -> ReleaseSubject | None:
    """What the release decision read of the bulletin, from a version-3 record's ``facts``
    (None without them, or with a symbol this version's vocabulary lacks: an unknown
    classification or category cannot be re-decided). ``origin_country`` is the origin id's
    country (the bulletin model requires it to be); ``sealed_for`` is not recorded and left
    None: a partner the originator sealed no key for was decided ``not_sealed_for``, which no
    policy changes, so every other decision's partner was sealed for."""
    facts = record.facts
    if facts is None:
        return None
    try:
        return ReleaseSubject(
            record.bulletin_id,
            record.origin,
            record.origin[:2].upper(),
            Category(facts.category),
            Classification(facts.classification),
            Classification(facts.tearline_classification),
            Tlp(facts.tlp),
            frozenset(facts.releasable_to),
            frozenset(Caveat(c) for c in facts.caveats),
            facts.valid_until,
        )
    except ValueError:
        return None


def decisions_of(records: Iterable[AuditRecord]) -> list[AuditedDecision]:
    """Every decision the records hold, one row per (bulletin, partner) (duplicates: one),
    each with its record's facts (version 3) as ``subject``."""
    rows: list[AuditedDecision] = []
    for record in records:
        subject = subject_of_record(record)
        rows.extend(
            AuditedDecision(
                d.bulletin_id,
                d.origin,
                d.partner,
                d.decision,
                d.rule,
                d.score,
                tuple(AuditedFactor(f.name, f.value, f.note) for f in d.factors),
                d.decided_at,
                d.source_topic,
                d.source_partition,
                d.source_offset,
                subject,
            )
            for d in record.per_partner()
        )
    return rows


def without_facts(rows: Iterable[AuditedDecision]) -> list[AuditedDecision]:
    """The rows whose record carries no usable facts (written before version 3): only these
    need the bulletin's outbound record."""
    return [r for r in rows if r.subject is None]


@dataclass(frozen=True, slots=True)
class Query:
    bulletin: str | None = None
    partner: str | None = None
    origin: str | None = None
    decision: str | None = None
    since: datetime | None = None
    limit: int | None = None


def select(rows: Iterable[AuditedDecision], query: Query) -> list[AuditedDecision]:
    """The rows matching every given filter, in decision-time order; with ``limit``, the
    newest ``limit`` of them (still oldest first)."""
    decision = query.decision.upper() if query.decision else None
    bulletin = query.bulletin.lower() if query.bulletin else None
    kept = [
        r
        for r in rows
        if (bulletin is None or r.bulletin_id == bulletin)
        and (query.partner is None or r.partner == query.partner)
        and (query.origin is None or r.origin == query.origin)
        and (decision is None or r.decision == decision)
        and (query.since is None or r.decided_at >= query.since)
    ]
    kept.sort(
        key=lambda r: (r.decided_at, r.source_topic, r.source_partition, r.source_offset, r.partner)
    )
    if query.limit is not None:
        kept = kept[-query.limit :] if query.limit > 0 else []
    return kept


def parse_since(value: str, now: datetime) -> datetime:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` before ``now``, or an ISO-8601 time (UTC if
    naive). ValueError says what is accepted."""
    match = _SPAN.fullmatch(value)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"not a duration (7d, 12h, 30m, 90s, 2w) nor an ISO-8601 time: {value!r}"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def reached(policy: Policy, row: AuditedDecision) -> Classification | None:
    """The highest classification the recorded score meets under ``policy`` (None: no score,
    or below every threshold)."""
    return None if row.score is None else policy.reached(row.score)


def factors_in_words(row: AuditedDecision) -> str:
    """``prior 0.70 (full), receipts on time +1.50, leaks -14.23, ..., decay 0.6 d``."""
    parts = []
    for f in row.factors:
        if f.name == "prior":
            level = re.search(r"agreement '([a-z]+)'", f.note)
            parts.append(f"prior {f.value:.2f}" + (f" ({level.group(1)})" if level else ""))
        elif f.name == "decay":
            parts.append(f"last evidence {f.value:.1f} d before")
        else:
            parts.append(f"{FACTOR_WORDS.get(f.name, f.name)} {f.value:+.2f}")
    return ", ".join(parts)


def in_words(  # noqa: PLR0911 - one sentence per rule, in the rule order of broker.release
    row: AuditedDecision, policy: Policy, subject: ReleaseSubject | None = None
) -> str:
    """What the decision means, in one sentence. The bulletin's facts (the row's own, from a
    version-3 record, else ``subject``, read from an older record's outbound record) name the
    category and the thresholds that decided; without them the sentence says what the score
    reached."""
    subject = row.subject or subject
    pair = f"{row.origin} -> {row.partner}"
    what = RELEASE_WORDS.get(row.decision, row.decision.lower())
    if row.decision == DUPLICATE:
        return f"dropped as a duplicate: {row.origin} re-sent bulletin {row.bulletin_id}"
    lifecycle_words = _lifecycle_in_words(row, policy, subject)
    if lifecycle_words is not None:
        return lifecycle_words
    rule = row.rule
    simple = {
        Rule.ORIGINATOR: f"{row.partner} is the originator",
        Rule.NOT_SEALED_FOR: f"{row.origin} sealed no key for {row.partner}",
        Rule.EXPIRED: "the bulletin had expired (valid_until passed)",
        Rule.NOT_RELEASABLE_TO: f"releasable_to names neither {row.partner} nor its country",
        Rule.TLP_RED_NOT_NAMED: f"TLP:RED and {row.partner} is not named by id",
        Rule.OVERRIDE_NEVER: f"{row.origin}'s policy override never shares with {row.partner}",
    }
    if rule in simple:
        return f"{what}: {simple[Rule(rule)]} ({pair})"
    if rule == Rule.CATEGORY_NOT_SHARED:
        category = f" ({subject.category.value})" if subject else ""
        return f"{what}: the agreement {pair} does not share the bulletin's category{category}"
    if row.score is None:
        if rule == Rule.OVERRIDE_ALLOW:
            return f"{what}: {row.origin}'s override always allows {row.partner} this level"
        return f"{what} by rule {rule} ({pair})"
    score = f"score {row.score:.2f}"
    got = reached(policy, row)
    reach = f"reaches {got.value} (>= {policy.threshold(got):.2f})" if got else "reaches no level"
    factors = factors_in_words(row)
    tail = f" for {pair} ({factors})" if factors else f" for {pair}"
    if subject is None:
        return f"{what} ({rule}): {score} {reach} under the policy{tail}"
    full, tear = subject.classification, subject.tearline_classification
    full_t, tear_t = policy.threshold(full), policy.threshold(tear)
    if rule == Rule.SCORE_FULL:
        return f"{what}: {score} meets the {full_t:.2f} {full.value} threshold{tail}"
    if rule == Rule.SCORE_TEARLINE:
        return (
            f"{what}: {score} below the {full_t:.2f} {full.value} threshold, meets the "
            f"{tear_t:.2f} {tear.value} tearline threshold{tail}"
        )
    if rule == Rule.SCORE_BELOW:
        return (
            f"{what}: {score} below the {full_t:.2f} {full.value} threshold and the "
            f"{tear_t:.2f} {tear.value} tearline threshold{tail}"
        )
    if rule == Rule.OVERRIDE_ALLOW:
        return f"{what}: {row.origin}'s override allows {row.partner} ({score}){tail}"
    return f"{what} by rule {rule}: {score} {reach}{tail}"


def _lifecycle_in_words(
    row: AuditedDecision, policy: Policy, subject: ReleaseSubject | None
) -> str | None:
    pair = f"{row.origin} -> {row.partner}"
    if row.rule == lifecycle.RECALL_FORWARDED_RULE:
        return f"recall forwarded: {row.origin} withdrew the bulletin, which {row.partner} held"
    if row.rule == lifecycle.RECALL_RULE:
        return f"recalled by {row.origin}: no partner held it, nothing forwarded"
    if row.rule == lifecycle.RECALL_DUPLICATE_RULE:
        return f"recall repeated by {row.origin}: already recalled, nothing forwarded"
    if row.rule not in lifecycle.RERELEASE_RULES.values():
        return None
    what = RELEASE_WORDS.get(row.decision, row.decision.lower())
    score = "" if row.score is None else f": score {row.score:.2f}"
    level = ""
    if subject is not None and row.score is not None:
        wanted = (
            subject.classification if row.decision == "FULL" else subject.tearline_classification
        )
        level = f" meets the {policy.threshold(wanted):.2f} {wanted.value} threshold"
    return (
        f"{what} when trust was earned{score}{level}; withheld or tearline at routing "
        f"because of the score ({pair})"
    )


def row_dict(
    row: AuditedDecision, policy: Policy, subject: ReleaseSubject | None = None
) -> dict[str, Any]:
    """One decision as plain values (the json and csv rows); the bulletin's facts (the row's
    own, else ``subject``) are None when neither has them."""
    got = reached(policy, row)
    facts = row.subject or subject
    return {
        "bulletin_id": row.bulletin_id,
        "origin": row.origin,
        "partner": row.partner,
        "decision": row.decision,
        "rule": row.rule,
        "score": row.score,
        "reached": got.value if got else None,
        "decided_at": row.decided_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "source_topic": row.source_topic,
        "source_partition": row.source_partition,
        "source_offset": row.source_offset,
        "explanation": in_words(row, policy, subject),
        "factors": [{"name": f.name, "value": f.value, "note": f.note} for f in row.factors],
        **_facts_dict(facts),
    }


def _facts_dict(subject: ReleaseSubject | None) -> dict[str, Any]:
    if subject is None:
        return dict.fromkeys(COLUMNS[COLUMNS.index("category") :])
    until = subject.valid_until
    return {
        "category": subject.category.value,
        "classification": subject.classification.value,
        "tearline_classification": subject.tearline_classification.value,
        "tlp": subject.tlp.value,
        "releasable_to": sorted(subject.releasable_to),
        "caveats": sorted(c.value for c in subject.caveats),
        "valid_until": None if until is None else until.isoformat(timespec="milliseconds"),
    }


def render_json(
    rows: Sequence[AuditedDecision],
    policy: Policy,
    subjects: Mapping[str, ReleaseSubject] | None = None,
) -> str:
    """A JSON array, one object per decision."""
    found = subjects or {}
    data = [row_dict(r, policy, found.get(r.bulletin_id)) for r in rows]
    return json.dumps(data, ensure_ascii=False, indent=2)


def render_csv(
    rows: Sequence[AuditedDecision],
    policy: Policy,
    subjects: Mapping[str, ReleaseSubject] | None = None,
) -> str:
    """CSV with a header, one line per decision; ``factors`` as ``name=value;...`` and an
    empty ``score``/``reached`` when there is none."""
    found = subjects or {}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        values = row_dict(r, policy, found.get(r.bulletin_id))
        values["factors"] = ";".join(f"{f['name']}={f['value']!r}" for f in values["factors"])
        values["score"] = "" if r.score is None else repr(r.score)
        values["reached"] = values["reached"] or ""
        for name in ("releasable_to", "caveats"):
            values[name] = ";".join(values[name] or ())
        writer.writerow(values)
    return out.getvalue()
