"""A private copy of the 11-agency exchange for one benchmark run.

The agencies, agreements and overrides are the seed ones (``deploy/agencies.yaml`` and
``deploy/policy.yaml``) with every agency id suffixed by a run token, so the run gets its own
outbound, feed and receipts topics on a shared broker and its own router group; keys are
fresh. The files the router subprocess loads are written into ``workdir``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from broker.policy import Policy
from enlace.core.registry import Agency, Registry
from enlace.core.settings import DEFAULT_AGENCIES, DEFAULT_POLICY
from schemas.agency_key import AgencyKey
from schemas.key_directory import KeyDirectory

# Origins used by the pipeline phases: each has at least one "full" agreement, so every
# bulletin yields a feed record (its arrival is the end-to-end latency sample).
BENCH_ORIGINS = ("us-jiatfs", "pa-senafront", "co-ponal", "cr-msp")


def new_token() -> str:
    return uuid.uuid4().hex[:8]


def rename(agency_id: str, token: str) -> str:
    """``pa-senafront`` → ``pa-senafrontb1a2b3c4`` (still a valid ``cc-name`` id)."""
    return f"{agency_id}b{token}"


def rename_in_text(text: str, ids: tuple[str, ...], token: str) -> str:
    """Rename every whole agency id in a YAML text (countries like ``BZ`` are left alone)."""
    pattern = re.compile(
        r"(?<![a-z0-9-])(" + "|".join(re.escape(i) for i in ids) + r")(?![a-z0-9-])"
    )
    return pattern.sub(lambda m: rename(m.group(1), token), text)


@dataclass(frozen=True)
class Exchange:
    token: str
    registry: Registry
    policy: Policy
    keys: dict[str, AgencyKey]
    directory: KeyDirectory
    agencies_file: Path
    policy_file: Path
    keys_file: Path

    def agency(self, seed_id: str) -> str:
        """This run's id of a seed agency."""
        return rename(seed_id, self.token)

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(self.agency(a) for a in BENCH_ORIGINS)

    @property
    def router_prefix(self) -> str:
        return f"bench{self.token}.router."


def build_exchange(
    workdir: Path,
    token: str,
    *,
    agencies_file: Path = DEFAULT_AGENCIES,
    policy_file: Path = DEFAULT_POLICY,
    key_age: timedelta = timedelta(days=1),
) -> Exchange:
    """Write the renamed registry, policy and key directory into ``workdir`` (no network).
    Keys are valid from ``key_age`` ago: a back-dated history must verify at its times."""
    seed = Registry.load(agencies_file)
    registry = Registry(
        agencies=tuple(Agency(id=rename(a.id, token), name=a.name, country=a.country) for a in seed)
    )
    workdir.mkdir(parents=True, exist_ok=True)
    agencies_out = workdir / "agencies.yaml"
    agencies_out.write_text(
        yaml.safe_dump({"agencies": [a.model_dump() for a in registry]}, allow_unicode=True),
        encoding="utf-8",
    )
    policy_out = workdir / "policy.yaml"
    policy_out.write_text(
        rename_in_text(policy_file.read_text(encoding="utf-8"), seed.ids, token), encoding="utf-8"
    )
    policy = Policy.load(policy_out)
    valid_from = datetime.now(UTC) - key_age
    keys = {a: AgencyKey.generate(a, valid_from=valid_from) for a in registry.ids}
    directory = KeyDirectory.from_keys(keys.values())
    keys_out = workdir / "keys.yaml"
    directory.dump(keys_out)
    return Exchange(token, registry, policy, keys, directory, agencies_out, policy_out, keys_out)
