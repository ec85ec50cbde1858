"""The release policy (``deploy/policy.yaml``): agreements, thresholds, overrides, evidence weights.

``Policy.load(path)`` validates the file and raises :class:`enlace.core.errors.PolicyError` whose
message names, for every problem, the key path, its line in the file, and the rule broken.
Lookups the router makes per (bulletin, partner) are precomputed into dicts at load.
"""

from __future__ import annotations

# The terms are re-exported: callers import the policy and its parts from here.
__all__ = [
    "DEFAULT_LEVELS", "DEFAULT_THRESHOLDS", "Agreement", "AgreementEntry", "AgreementLevel",
    "ClaimParams", "EvidenceParams", "EvidenceWeights", "LevelTerms", "OriginatorOverride",
    "Override", "Policy", "PolicyIndex", "Prior", "ReciprocityParams", "RereleaseTerms",
]  # fmt: skip

from functools import cached_property
from pathlib import Path
from typing import Literal, Self

import yaml
from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from broker.policy_rules import policy_problems, report, rule_text
from broker.policy_source import SourceMap
from broker.policy_terms import (
    DEFAULT_LEVELS,
    DEFAULT_THRESHOLDS,
    AgencyId,
    Agreement,
    AgreementEntry,
    AgreementLevel,
    ClaimParams,
    EvidenceParams,
    EvidenceWeights,
    LevelTerms,
    OriginatorOverride,
    Override,
    PolicyIndex,
    Prior,
    ReciprocityParams,
    RereleaseTerms,
    _Strict,
)
from enlace.core.errors import PolicyError
from schemas.vocab import Classification


class Policy(_Strict):
    version: Literal[1] = 1
    default_agreement: AgreementLevel = AgreementLevel.LIMITED
    levels: dict[AgreementLevel, LevelTerms] = Field(default_factory=lambda: dict(DEFAULT_LEVELS))
    agreements: tuple[AgreementEntry, ...] = ()
    thresholds: dict[Classification, float] = Field(
        default_factory=lambda: dict(DEFAULT_THRESHOLDS)
    )
    overrides: dict[AgencyId, OriginatorOverride] = Field(default_factory=dict)
    evidence: EvidenceParams = EvidenceParams()
    rerelease: RereleaseTerms = RereleaseTerms()

    @field_validator("levels", mode="after")
    @classmethod
    def _fill_levels(
        cls, levels: dict[AgreementLevel, LevelTerms]
    ) -> dict[AgreementLevel, LevelTerms]:
        return {**DEFAULT_LEVELS, **levels}

    @field_validator("thresholds", mode="after")
    @classmethod
    def _fill_thresholds(cls, given: dict[Classification, float]) -> dict[Classification, float]:
        return {**DEFAULT_THRESHOLDS, **given}

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Self:
        problems = list(policy_problems(self))
        if problems:
            source = info.context.get("source") if isinstance(info.context, dict) else None
            raise PolicyError(report(problems, source))
        _ = self.index
        return self

    @cached_property
    def index(self) -> PolicyIndex:
        """Lookups by pair, built once (a plain attribute afterwards: the router's hot path)."""
        pairs: dict[tuple[str, str], Agreement] = {}
        directed: set[tuple[str, str]] = set()
        for i, entry in enumerate(self.agreements):
            terms = self.levels[entry.level]
            agreement = Agreement(
                entry.level,
                Prior(entry.level, terms.prior_mean, terms.prior_strength),
                terms.categories if entry.categories is None else entry.categories,
                f"agreements[{i}]",
            )
            for pair in entry.directed_pairs():
                # A one-way entry refines a 'between' entry for its direction, whatever the order.
                if entry.between is None or pair not in directed:
                    pairs[pair] = agreement
                if entry.between is None:
                    directed.add(pair)
        terms = self.levels[self.default_agreement]
        default = Agreement(
            self.default_agreement,
            Prior(self.default_agreement, terms.prior_mean, terms.prior_strength),
            terms.categories,
            "default_agreement",
        )
        overrides: dict[tuple[str, str], Override] = {}
        for originator, override in self.overrides.items():
            for j, ref in enumerate(override.never):
                overrides[originator, ref] = Override(
                    "never", None, f"overrides.{originator}.never[{j}]"
                )
            for j, rule in enumerate(override.always):
                overrides[originator, rule.partner] = Override(
                    "always", rule.up_to, f"overrides.{originator}.always[{j}]"
                )
        descending = tuple(sorted(self.thresholds.items(), key=lambda kv: -kv[0].rank))
        return PolicyIndex(pairs, default, overrides, descending)

    def agreement(self, originator: str, partner: str) -> Agreement:
        """The agreement under which ``originator`` shares with ``partner``."""
        index = self.index
        found = index.pairs.get((originator, partner))
        return found if found is not None else index.default

    def override(self, originator: str, partner: str, country: str) -> Override | None:
        """The originator's override naming the partner's agency id (first) or its country."""
        overrides = self.index.overrides
        if not overrides:
            return None
        found = overrides.get((originator, partner))
        return found if found is not None else overrides.get((originator, country))

    def rerelease_enabled(self, originator: str) -> bool:
        """Whether bulletins of ``originator`` are released again when trust is earned."""
        override = self.overrides.get(originator)
        if override is not None and override.rerelease is not None:
            return override.rerelease
        return self.rerelease.enabled

    def threshold(self, classification: Classification) -> float:
        return self.thresholds[classification]

    def reached(self, score: float) -> Classification | None:
        """The highest classification whose threshold ``score`` meets, if any."""
        for classification, threshold in self.index.descending:
            if score >= threshold:
                return classification
        return None

    def agencies(self) -> frozenset[str]:
        """Every agency id the policy names (for a registry cross-check)."""
        named = {a for pair in self.index.pairs for a in pair} | set(self.overrides)
        for override in self.overrides.values():
            named.update(r for r in override.never if len(r) > 2)
            named.update(r.partner for r in override.always if len(r.partner) > 2)
        return frozenset(named)

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read policy {path}: {exc}") from exc
        try:
            raw = yaml.safe_load(text)
            source = SourceMap.parse(text, str(path))
        except yaml.YAMLError as exc:
            raise PolicyError(f"policy {path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise PolicyError(f"policy {path}: the top level must be a mapping of keys")
        try:
            return cls.model_validate(raw, context={"source": source})
        except PydanticValidationError as exc:
            problems = [
                (tuple(err["loc"]), rule_text(err["msg"], err.get("input"))) for err in exc.errors()
            ]
            raise PolicyError(report(problems, source)) from exc
