"""The trust score of a directed pair: a Beta reputation with forgetting, and its factors.

For originator O and partner P, with the agreement's prior (mean m, strength s)::

    alpha = m*s + C * (1 - exp(-E+ / C)) + max(r, 0)
    beta  = (1-m)*s + E-                 + max(-r, 0)
    score = alpha / (alpha + beta)

where ``E+`` / ``E-`` are the weighted sums of the decayed positive / negative event counts
(``sum_class weight * sum_i 2 ** (-(now - t_i) / half_life)``, one half-life for each
polarity), ``C`` caps positive evidence (so a single incident always outweighs any history),
and ``r = R * (in - out) / (in + out + k)`` is reciprocity pseudo-evidence from decayed release
counts P→O (in) and O→P (out), bounded by ``R``.
Every term is reported as a :class:`Factor`, so a score can be printed and audited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from broker.evidence import CLASSES, DAY, POSITIVE_MASK, PairEvidence
from broker.policy import EvidenceParams, Prior


@dataclass(frozen=True, slots=True)
class Factor:
    """One term of a score. ``value``: pseudo-events (+ to alpha, - to beta) unless noted."""

    name: str
    value: float
    note: str


@dataclass(frozen=True, slots=True)
class TrustScore:
    """P's score in O's eyes at ``at``; :attr:`factors` explains it term by term."""

    originator: str
    partner: str
    value: float
    alpha: float
    beta: float
    prior: Prior
    at: datetime
    # What the factors are rebuilt from, on demand: formatting them costs more than scoring.
    seen: PairEvidence | None = field(default=None, repr=False)
    elapsed: float = field(default=0.0, repr=False)
    params: EvidenceParams | None = field(default=None, repr=False, compare=False)

    @property
    def factors(self) -> tuple[Factor, ...]:
        return _factors(self)

    def factor(self, name: str) -> Factor | None:
        return next((f for f in self.factors if f.name == name), None)


def score(
    evidence: PairEvidence | None,
    prior: Prior,
    params: EvidenceParams,
    now: datetime,
    *,
    originator: str,
    partner: str,
) -> TrustScore:
    """Score P in O's eyes at ``now`` (pure: evidence after ``now`` is not foreseen)."""
    alpha, beta = prior.alpha, prior.beta
    if evidence is None:
        return TrustScore(originator, partner, alpha / (alpha + beta), alpha, beta, prior, now)
    ts = now.timestamp()
    seen = evidence.advanced(ts, params.decay)
    positive = negative = 0.0
    for positive_class, weight, count in zip(
        POSITIVE_MASK, params.weight_vector, seen.counts, strict=True
    ):
        if positive_class:
            positive += weight * count
        else:
            negative += weight * count
    alpha += params.positive_cap * -math.expm1(-positive / params.positive_cap)
    beta += negative
    r = _reciprocity(seen, params)
    if r >= 0.0:
        alpha += r
    else:
        beta -= r
    return TrustScore(
        originator,
        partner,
        alpha / (alpha + beta),
        alpha,
        beta,
        prior,
        now,
        seen,
        ts - evidence.as_of,
        params,
    )


def _reciprocity(seen: PairEvidence, params: EvidenceParams) -> float:
    rec = params.reciprocity
    shared_in, shared_out = seen.shared_in, seen.shared_out
    return rec.max_weight * (shared_in - shared_out) / (shared_in + shared_out + rec.smoothing)


def _factors(s: TrustScore) -> tuple[Factor, ...]:
    prior = s.prior
    factors = [
        Factor(
            "prior",
            prior.mean,
            f"agreement '{prior.level.value}': mean {prior.mean:.2f} x strength "
            f"{prior.strength:g} -> alpha0 {prior.alpha:.2f}, beta0 {prior.beta:.2f} "
            "(value is the prior mean)",
        )
    ]
    seen, params = s.seen, s.params
    if seen is None or params is None:
        return tuple(factors)
    positive = 0.0
    for cls, weight, count in zip(CLASSES, params.weight_vector, seen.counts, strict=True):
        if count <= 0.0:
            continue
        amount = weight * count
        side = "alpha" if cls.positive else "beta"
        factors.append(
            Factor(
                cls.value,
                amount if cls.positive else -amount,
                f"{count:.2f} decayed events x weight {weight:g} -> {side} +{amount:.2f}",
            )
        )
        if cls.positive:
            positive += amount
    cap = params.positive_cap
    capped = cap * -math.expm1(-positive / cap)
    if positive > 0.0:
        factors.append(
            Factor(
                "positive_cap",
                capped - positive,
                f"positive evidence {positive:.2f} saturates to {capped:.2f} "
                f"(cap {cap:g}: C * (1 - exp(-E/C)))",
            )
        )
    if seen.shared_in > 0.0 or seen.shared_out > 0.0:
        r = _reciprocity(seen, params)
        side = f"alpha +{r:.2f}" if r >= 0 else f"beta +{-r:.2f}"
        factors.append(
            Factor(
                "reciprocity",
                r,
                f"releases {s.partner}->{s.originator} {seen.shared_in:.1f} vs "
                f"{s.originator}->{s.partner} {seen.shared_out:.1f} (decayed, half-life "
                f"{params.reciprocity.half_life_days:g} d; R (in-out)/(in+out+k), R "
                f"{params.reciprocity.max_weight:g}, k {params.reciprocity.smoothing:g}) "
                f"-> {side}",
            )
        )
    elapsed = max(s.elapsed, 0.0)
    pos, neg, recf = params.decay.factors(elapsed)
    factors.append(
        Factor(
            "decay",
            elapsed / DAY,
            f"last evidence {elapsed / DAY:.1f} d before {s.at.astimezone(UTC):%Y-%m-%d %H:%M}Z "
            f"(value: days); since then positive x{pos:.3f} (half-life "
            f"{params.positive_half_life_days:g} d), negative x{neg:.3f} "
            f"({params.negative_half_life_days:g} d), reciprocity x{recf:.3f}",
        )
    )
    return tuple(factors)
