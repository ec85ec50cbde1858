"""The terms a policy is made of: agreement levels and priors, agreements, overrides and the
evidence parameters. Plain validated values: the cross-field rules that tie them together are
in :mod:`broker.policy_rules`, and :class:`broker.policy.Policy` assembles both."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from broker.evidence import CLASSES, DAY, Decay, EvidenceClass
from enlace.core.registry import check_agency_id
from schemas.vocab import Category, Classification

AgencyId = Annotated[str, AfterValidator(check_agency_id)]


def _check_partner_ref(value: str) -> str:
    if len(value) == 2 and value.isascii() and value.isupper() and value.isalpha():
        return value
    return check_agency_id(value)


# Who an override names: an agency id ("cr-msp") or a whole country ("CR").
PartnerRef = Annotated[str, AfterValidator(_check_partner_ref)]


def _all_categories(value: Any) -> Any:
    return tuple(Category) if value == "all" else value


Categories = Annotated[frozenset[Category], BeforeValidator(_all_categories)]


class AgreementLevel(StrEnum):
    NONE = "none"
    LIMITED = "limited"
    STANDARD = "standard"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class Prior:
    """Beta prior of an agreement: alpha0 = mean * strength, beta0 = (1 - mean) * strength."""

    level: AgreementLevel
    mean: float
    strength: float

    @property
    def alpha(self) -> float:
        return self.mean * self.strength

    @property
    def beta(self) -> float:
        return (1.0 - self.mean) * self.strength


@dataclass(frozen=True, slots=True)
class Agreement:
    """The resolved agreement for one directed pair; ``source`` says which policy key set it."""

    level: AgreementLevel
    prior: Prior
    categories: frozenset[Category]
    source: str


@dataclass(frozen=True, slots=True)
class Override:
    """An originator's override for one partner: ``never`` share, or ``always`` up to a level."""

    kind: Literal["never", "always"]
    up_to: Classification | None
    source: str


@dataclass(frozen=True, slots=True)
class PolicyIndex:
    pairs: dict[tuple[str, str], Agreement]
    default: Agreement
    overrides: dict[tuple[str, str], Override]
    descending: tuple[tuple[Classification, float], ...]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LevelTerms(_Strict):
    prior_mean: float = Field(gt=0.0, lt=1.0)
    prior_strength: float = Field(gt=0.0, le=1000.0)
    categories: Categories = frozenset()


_LIMITED = frozenset(
    {
        Category.NATURAL_DISASTER,
        Category.MIGRANT_SMUGGLING,
        Category.DRUG_TRAFFICKING,
        Category.HUMAN_TRAFFICKING,
    }
)
_STANDARD = _LIMITED | {
    Category.ARMS_TRAFFICKING,
    Category.GANGS,
    Category.ARMED_GROUPS,
    Category.MONEY_LAUNDERING,
    Category.CYBER,
    Category.OTHER,
}
DEFAULT_LEVELS: dict[AgreementLevel, LevelTerms] = {
    AgreementLevel.NONE: LevelTerms(prior_mean=0.05, prior_strength=10.0),
    AgreementLevel.LIMITED: LevelTerms(prior_mean=0.25, prior_strength=20.0, categories=_LIMITED),
    AgreementLevel.STANDARD: LevelTerms(prior_mean=0.5, prior_strength=12.0, categories=_STANDARD),
    AgreementLevel.FULL: LevelTerms(
        prior_mean=0.7, prior_strength=10.0, categories=frozenset(Category)
    ),
}
DEFAULT_THRESHOLDS: dict[Classification, float] = {
    Classification.UNCLASSIFIED: 0.0,
    Classification.RESTRICTED: 0.35,
    Classification.CONFIDENTIAL: 0.6,
    Classification.SECRET: 0.8,
}


class AgreementEntry(_Strict):
    """``between: [a, b]`` (both directions) or ``originator: a`` + ``partner: b`` (one way)."""

    between: tuple[AgencyId, AgencyId] | None = None
    originator: AgencyId | None = None
    partner: AgencyId | None = None
    level: AgreementLevel
    categories: Categories | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        directed = self.originator is not None or self.partner is not None
        if self.between is not None and directed:
            raise ValueError("use either 'between' or 'originator'+'partner', not both")
        if self.between is None and (self.originator is None or self.partner is None):
            raise ValueError("needs 'between: [a, b]' or both 'originator' and 'partner'")
        a, b = self.between or (self.originator, self.partner)
        if a == b:
            raise ValueError(f"an agency has no agreement with itself ({a})")
        return self

    def directed_pairs(self) -> tuple[tuple[str, str], ...]:
        if self.between is not None:
            a, b = self.between
            return ((a, b), (b, a))
        # _one_form guarantees both are set when 'between' is not.
        assert self.originator is not None
        assert self.partner is not None
        return ((self.originator, self.partner),)


class AllowRule(_Strict):
    partner: PartnerRef
    up_to: Classification


class OriginatorOverride(_Strict):
    never: tuple[PartnerRef, ...] = ()
    always: tuple[AllowRule, ...] = ()
    # This originator's own switch for release when trust is earned (None: the policy's).
    rerelease: bool | None = None


# The replay index remembers a bulletin's recipients this long (the admission window): a
# bulletin older than that can be neither recalled nor released again.
MAX_RERELEASE_DAYS = 7.0


class RereleaseTerms(_Strict):
    """Release when trust is earned (``rerelease:`` in the policy): when a partner's score
    rises past a threshold, the bulletins from an originator that were withheld from it, or
    released as a tearline, because of its score (rules ``score_below``, ``score_tearline``)
    and that are still valid are released at the new level, once. Off unless switched on,
    for the whole policy or per originator (``overrides.<agency>.rerelease``): an originator
    decides whether a later score may release what it published before."""

    enabled: bool = False
    # Still valid: before ``valid_until`` when the bulletin gives one, and within this many
    # days of its routing either way.
    horizon_days: float = Field(MAX_RERELEASE_DAYS, gt=0.0, le=MAX_RERELEASE_DAYS)
    # Bulletins released again per input partition and transaction, so one threshold
    # crossing over a week of withheld bulletins is spread over several transactions.
    per_transaction: int = Field(200, ge=1, le=5000)


class EvidenceWeights(_Strict):
    """Pseudo-events added to alpha (positive classes) or beta (negative) per event."""

    receipt_on_time: float = Field(0.05, ge=0.0, le=100.0)
    receipt_late: float = Field(0.02, ge=0.0, le=100.0)
    receipt_missing: float = Field(0.05, ge=0.0, le=100.0)
    feedback_actioned: float = Field(1.0, ge=0.0, le=100.0)
    feedback_useful: float = Field(0.3, ge=0.0, le=100.0)
    # Honest "not useful" feedback about a bulletin must not cost the partner: lying would pay.
    feedback_not_useful: float = Field(0.0, ge=0.0, le=100.0)
    incident_mishandling: float = Field(5.0, ge=0.0, le=1000.0)
    incident_leak: float = Field(16.0, ge=0.0, le=1000.0)
    incident_corruption: float = Field(20.0, ge=0.0, le=1000.0)

    def of(self, cls: EvidenceClass) -> float:
        return float(getattr(self, cls.value))


class ReciprocityParams(_Strict):
    """Reciprocity pseudo-evidence: max_weight * (in - out) / (in + out + smoothing)."""

    max_weight: float = Field(2.0, ge=0.0, le=100.0)
    smoothing: float = Field(20.0, gt=0.0)
    half_life_days: float = Field(30.0, gt=0.0, le=3650.0)


class ClaimParams(_Strict):
    """How much a partner's claims about itself (positive feedback) may add: a token bucket per
    directed pair, in pseudo-events at the claims' weights. It fills at ``rate_per_day`` up to
    ``burst`` and starts empty; a claim counts for the fraction of its weight the bucket holds
    when it arrives (dated by the router, never by the claim)."""

    rate_per_day: float = Field(0.25, ge=0.0, le=100.0)
    burst: float = Field(2.0, ge=0.0, le=100.0)


class EvidenceParams(_Strict):
    weights: EvidenceWeights = EvidenceWeights()
    claims: ClaimParams = ClaimParams()
    positive_half_life_days: float = Field(30.0, gt=0.0, le=3650.0)
    negative_half_life_days: float = Field(180.0, gt=0.0, le=3650.0)
    positive_cap: float = Field(30.0, gt=0.0, le=10_000.0)
    reciprocity: ReciprocityParams = ReciprocityParams()
    receipt_deadline_minutes: float = Field(60.0, gt=0.0, le=7 * 24 * 60.0)

    @cached_property
    def weight_vector(self) -> tuple[float, ...]:
        """Weights in :data:`broker.evidence.CLASSES` order (scoring reads them per call)."""
        return tuple(self.weights.of(cls) for cls in CLASSES)

    @cached_property
    def decay(self) -> Decay:
        return Decay(
            positive=self.positive_half_life_days * DAY,
            negative=self.negative_half_life_days * DAY,
            reciprocity=self.reciprocity.half_life_days * DAY,
        )
