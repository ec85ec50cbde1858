"""The release decision: for one bulletin and one partner, FULL, TEARLINE or WITHHELD, and why.

Rules, first match wins (``Rule`` values are stable codes for audit records and metrics):

1. ``originator``          the partner is the bulletin's originator: nothing to release
2. ``expired``             ``valid_until`` has passed
3. ``not_releasable_to``   ``releasable_to`` is given and names neither P's id nor its country
4. ``tlp_red_not_named``   TLP:RED and P's agency id is not in ``releasable_to`` (a country
                           is not a named recipient)
5. ``category_not_shared`` the agreement O→P does not share the bulletin's category
6. ``override_never``      O's policy override never shares with P (id or country)
   ``override_allow``      O's override allows P up to a level covering the classification
7. ``score_full``          score ≥ threshold(classification)
8. ``score_tearline``      score ≥ threshold(tearline_classification), or O's override allows
                           P up to the tearline classification (then ``override_allow``)
9. ``score_below``         otherwise withheld

The TLP and caveats (e.g. ORCON) travel with every decision for the recipient to honour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from broker.policy import Policy
from broker.trust import TrustScore
from schemas.vocab import Category, Caveat, Classification, ReleaseKind, Tlp


class Rule(StrEnum):
    ORIGINATOR = "originator"
    EXPIRED = "expired"
    NOT_RELEASABLE_TO = "not_releasable_to"
    TLP_RED_NOT_NAMED = "tlp_red_not_named"
    CATEGORY_NOT_SHARED = "category_not_shared"
    OVERRIDE_NEVER = "override_never"
    OVERRIDE_ALLOW = "override_allow"
    SCORE_FULL = "score_full"
    SCORE_TEARLINE = "score_tearline"
    SCORE_BELOW = "score_below"
    # Wire format 2: the originator wrapped no key for this partner, so nothing the router
    # could forward would open for it.
    NOT_SEALED_FOR = "not_sealed_for"


class BulletinLike(Protocol):
    """The fields of ``schemas.models.ThreatBulletin`` the decision reads."""

    @property
    def bulletin_id(self) -> str: ...
    @property
    def origin(self) -> str: ...
    @property
    def origin_country(self) -> str: ...
    @property
    def category(self) -> Category: ...
    @property
    def classification(self) -> Classification: ...
    @property
    def tearline_classification(self) -> Classification: ...
    @property
    def tlp(self) -> Tlp: ...
    @property
    def releasable_to(self) -> tuple[str, ...]: ...
    @property
    def caveats(self) -> tuple[Caveat, ...]: ...
    @property
    def valid_until(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class ReleaseSubject:
    """What the decision needs to know about a bulletin (never its content)."""

    bulletin_id: str
    origin: str
    origin_country: str
    category: Category
    classification: Classification
    tearline_classification: Classification
    tlp: Tlp
    releasable_to: frozenset[str] = frozenset()
    caveats: frozenset[Caveat] = frozenset()
    valid_until: datetime | None = None
    # Wire format 2: the partners the originator wrapped the body keys for; None for a
    # plaintext (v1) bulletin, which the router can release to anyone.
    sealed_for: frozenset[str] | None = None

    @classmethod
    def of(
        cls, bulletin: BulletinLike, *, sealed_for: frozenset[str] | None = None
    ) -> ReleaseSubject:
        return cls(
            bulletin.bulletin_id,
            bulletin.origin,
            bulletin.origin_country,
            bulletin.category,
            bulletin.classification,
            bulletin.tearline_classification,
            bulletin.tlp,
            frozenset(bulletin.releasable_to),
            frozenset(bulletin.caveats),
            bulletin.valid_until,
            sealed_for,
        )


@dataclass(frozen=True, slots=True)
class Partner:
    agency_id: str
    country: str


class ScoreSource(Protocol):
    """Anything that scores a pair on demand, e.g. :class:`broker.ledger.TrustLedger`."""

    def score(self, originator: str, partner: str, policy: Policy, now: datetime) -> TrustScore:
        """P's score in O's eyes at ``now``."""
        ...


@dataclass(frozen=True, slots=True)
class ReleaseDecision:
    bulletin_id: str
    partner: str
    kind: ReleaseKind
    rule: Rule
    reason: str
    score: TrustScore | None
    tlp: Tlp
    caveats: frozenset[Caveat]

    @property
    def released(self) -> bool:
        return self.kind is not ReleaseKind.WITHHELD

    @property
    def orcon(self) -> bool:
        """Originator controlled: the recipient may not pass it on."""
        return Caveat.ORCON in self.caveats


def decide(  # noqa: PLR0911 - one return per rule keeps the documented rule order readable
    subject: ReleaseSubject,
    partner: Partner,
    trust: TrustScore | ScoreSource,
    policy: Policy,
    now: datetime,
) -> ReleaseDecision:
    """Decide what ``partner`` receives of ``subject``. Pure; the score is only computed (from
    a :class:`ScoreSource`) when the rules before the score did not already decide."""

    def done(
        kind: ReleaseKind, rule: Rule, reason: str, score: TrustScore | None = None
    ) -> ReleaseDecision:
        return ReleaseDecision(
            subject.bulletin_id,
            partner.agency_id,
            kind,
            rule,
            reason,
            score,
            subject.tlp,
            subject.caveats,
        )

    withheld = ReleaseKind.WITHHELD
    p, o = partner.agency_id, subject.origin
    if p == o:
        return done(withheld, Rule.ORIGINATOR, f"{p} is the originator")
    if subject.sealed_for is not None and p not in subject.sealed_for:
        return done(withheld, Rule.NOT_SEALED_FOR, f"{o} sealed no key for {p}")
    if subject.valid_until is not None and now > subject.valid_until:
        return done(withheld, Rule.EXPIRED, f"expired at {subject.valid_until.isoformat()}")
    named = p in subject.releasable_to
    if subject.releasable_to and not named and partner.country not in subject.releasable_to:
        listed = ", ".join(sorted(subject.releasable_to))
        return done(
            withheld,
            Rule.NOT_RELEASABLE_TO,
            f"releasable to {listed} only; neither {p} nor {partner.country} is listed",
        )
    if subject.tlp is Tlp.RED and not named:
        return done(withheld, Rule.TLP_RED_NOT_NAMED, f"TLP:RED and {p} is not named by id")
    agreement = policy.agreement(o, p)
    if subject.category not in agreement.categories:
        return done(
            withheld,
            Rule.CATEGORY_NOT_SHARED,
            f"{subject.category.value} is not shared under the '{agreement.level.value}' "
            f"agreement {o}->{p} ({agreement.source})",
        )
    override = policy.override(o, p, partner.country)
    if override is not None and override.kind == "never":
        return done(withheld, Rule.OVERRIDE_NEVER, f"{o} never shares with {p} ({override.source})")
    allowed, allow_source = (override.up_to, override.source) if override else (None, "")
    if allowed is not None and subject.classification.rank <= allowed.rank:
        return done(
            ReleaseKind.FULL,
            Rule.OVERRIDE_ALLOW,
            f"{o} always allows {p} up to {allowed.value} ({allow_source})",
        )

    trust_score = trust if isinstance(trust, TrustScore) else trust.score(o, p, policy, now)
    value = trust_score.value
    full = policy.threshold(subject.classification)
    if value >= full:
        return done(
            ReleaseKind.FULL,
            Rule.SCORE_FULL,
            f"score {value:.3f} >= {subject.classification.value} threshold {full:.2f}",
            trust_score,
        )
    tearline = policy.threshold(subject.tearline_classification)
    if value >= tearline:
        return done(
            ReleaseKind.TEARLINE,
            Rule.SCORE_TEARLINE,
            f"score {value:.3f} < {subject.classification.value} threshold {full:.2f}, >= "
            f"tearline {subject.tearline_classification.value} threshold {tearline:.2f}",
            trust_score,
        )
    if allowed is not None and subject.tearline_classification.rank <= allowed.rank:
        return done(
            ReleaseKind.TEARLINE,
            Rule.OVERRIDE_ALLOW,
            f"score {value:.3f} below both thresholds, but {o} always allows {p} up to "
            f"{allowed.value}, covering the tearline ({allow_source})",
            trust_score,
        )
    return done(
        withheld,
        Rule.SCORE_BELOW,
        f"score {value:.3f} < tearline {subject.tearline_classification.value} threshold "
        f"{tearline:.2f}",
        trust_score,
    )
