"""The cross-field rules of a policy, checked after each key's own validation.

Each problem is a key path and the rule broken; :func:`report` adds the line in the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol

from broker.policy_source import SourceMap, format_path
from broker.policy_terms import (
    AgreementEntry,
    AgreementLevel,
    EvidenceParams,
    LevelTerms,
    OriginatorOverride,
)
from schemas.vocab import Classification


class Policy(Protocol):
    """What the rules read of a policy (so the rules need not import the policy itself)."""

    @property
    def agreements(self) -> tuple[AgreementEntry, ...]: ...
    @property
    def levels(self) -> dict[AgreementLevel, LevelTerms]: ...
    @property
    def thresholds(self) -> dict[Classification, float]: ...
    @property
    def overrides(self) -> dict[str, OriginatorOverride]: ...
    @property
    def evidence(self) -> EvidenceParams: ...


Problem = tuple[tuple[str | int, ...], str]


def rule_text(msg: str, value: Any) -> str:
    """A pydantic message as a rule, with the offending value when it is a scalar."""
    msg = msg.removeprefix("Value error, ")
    shown = repr(value) if isinstance(value, str | int | float | bool) else None
    return f"{msg} (got {shown})" if shown is not None and shown not in msg else msg


def report(problems: list[Problem], source: SourceMap | None) -> str:
    where = source.name if source is not None else "policy"
    lines = [f"policy {where} is invalid ({len(problems)} problem(s)):"]
    for loc, rule in problems:
        line = source.line_of(loc) if source is not None else None
        at = f" (line {line})" if line is not None else ""
        lines.append(f"  {format_path(loc)}{at}: {rule}")
    return "\n".join(lines)


def policy_problems(policy: Policy) -> Iterator[Problem]:
    yield from _agreement_problems(policy.agreements)
    yield from _threshold_problems(policy.thresholds)
    secret = policy.thresholds[Classification.SECRET]
    ev = policy.evidence
    if ev.negative_half_life_days < ev.positive_half_life_days:
        yield (
            ("evidence", "negative_half_life_days"),
            (
                f"must be >= positive_half_life_days ({ev.positive_half_life_days}): "
                "negative evidence fades more slowly than positive"
            ),
        )
    for level, terms in policy.levels.items():
        if terms.prior_mean >= secret:
            yield (
                ("levels", level.value, "prior_mean"),
                (
                    f"{terms.prior_mean} reaches the SECRET threshold {secret}: SECRET is earned "
                    "with evidence, never granted by an agreement alone (use an override)"
                ),
            )
    yield from _leak_problems(policy)
    yield from _claim_problems(policy)
    for originator, override in policy.overrides.items():
        allowed = {rule.partner for rule in override.always}
        for j, ref in enumerate(override.never):
            if ref in allowed:
                yield (
                    ("overrides", originator, "never", j),
                    f"{ref} is also under 'always': an override cannot both deny and allow",
                )
            if ref == originator:
                yield (("overrides", originator, "never", j), "an agency cannot name itself")


def max_after_leak(policy: Policy) -> tuple[str, float]:
    """The highest score any partner can keep right after one leak, and its agreement level.

    Alpha is at most the prior's plus the positive cap plus full reciprocity; beta is at least
    the prior's plus the leak's weight.
    """
    ev = policy.evidence
    worst = ("", 0.0)
    for level, terms in policy.levels.items():
        alpha = terms.prior_mean * terms.prior_strength + ev.positive_cap
        alpha += ev.reciprocity.max_weight
        beta = (1.0 - terms.prior_mean) * terms.prior_strength + ev.weights.incident_leak
        if alpha / (alpha + beta) > worst[1]:
            worst = (level.value, alpha / (alpha + beta))
    return worst


def _leak_problems(policy: Policy) -> Iterator[Problem]:
    secret = policy.thresholds[Classification.SECRET]
    level, kept = max_after_leak(policy)
    if kept >= secret:
        yield (
            ("evidence", "weights", "incident_leak"),
            (
                f"{policy.evidence.weights.incident_leak} is too light: one leak must drop any "
                f"partner below SECRET ({secret}), but a '{level}' partner with the most "
                f"positive evidence possible would keep {kept:.3f} (raise the weight, or lower "
                "positive_cap or reciprocity.max_weight)"
            ),
        )


def claim_burst_lift(policy: Policy) -> Iterator[tuple[str, float, float, Classification]]:
    """For each agreement level that shares something: the prior score, the score after a full
    bucket of claims on a fresh pair, and the next classification above the prior's."""
    ev = policy.evidence
    burst = ev.positive_cap * -math.expm1(-ev.claims.burst / ev.positive_cap)
    ranked = sorted(policy.thresholds.items(), key=lambda kv: kv[0].rank)
    for level, terms in policy.levels.items():
        if not terms.categories:
            continue
        alpha = terms.prior_mean * terms.prior_strength
        beta = (1.0 - terms.prior_mean) * terms.prior_strength
        prior = alpha / (alpha + beta)
        above = next(((c, t) for c, t in ranked if t > prior), None)
        if above is not None:
            yield level.value, prior, (alpha + burst) / (alpha + burst + beta), above[0]


def _claim_problems(policy: Policy) -> Iterator[Problem]:
    for level, prior, lifted, above in claim_burst_lift(policy):
        threshold = policy.thresholds[above]
        if lifted >= threshold:
            yield (
                ("evidence", "claims", "burst"),
                (
                    f"{policy.evidence.claims.burst} is too large: a burst of claims would lift a "
                    f"fresh '{level}' partner from {prior:.3f} to {lifted:.3f}, past the "
                    f"{above.value} threshold {threshold} (claims alone must never buy a "
                    "classification)"
                ),
            )


def _agreement_problems(entries: tuple[AgreementEntry, ...]) -> Iterator[Problem]:
    seen: dict[tuple[tuple[str, str], bool], int] = {}
    for i, entry in enumerate(entries):
        for pair in entry.directed_pairs():
            key = (pair, entry.between is None)
            if key in seen:
                yield (
                    ("agreements", i),
                    (
                        f"{pair[0]} -> {pair[1]} is already set by agreements[{seen[key]}]: "
                        "one entry per pair (a one-way entry may refine a 'between')"
                    ),
                )
            else:
                seen[key] = i


def _threshold_problems(thresholds: dict[Classification, float]) -> Iterator[Problem]:
    previous = -math.inf
    for classification in Classification:
        value = thresholds[classification]
        if not 0.0 <= value <= 1.0:
            yield (("thresholds", classification.value), f"{value} must be within [0, 1]")
        if value < previous:
            yield (
                ("thresholds", classification.value),
                (
                    f"{value} is below the threshold of a lower classification ({previous}): "
                    "thresholds must not decrease with classification"
                ),
            )
        previous = max(previous, value)
