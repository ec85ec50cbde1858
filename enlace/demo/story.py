"""The demo's script: who publishes how often, who answers back, and the leak.

Pure and seeded: the arrival schedule and the partners' habits are decided up front, so a run
with the same ``--seed`` tells the same story.

* Arrivals are a Poisson stream per agency (busy agencies publish more: JIATF-South, Colombia
  and Panama carry most of the Caribbean traffic), plus **bursts**: a hurricane warning or a
  joint operation makes several agencies report within seconds.
* Partners acknowledge everything they store (the consumer sends receipts); some also action
  what they get (``actioned`` feedback → trust rises), some only find it useful, one never
  answers (its trust only moves with receipts and reciprocity).
* Halfway through, the **leak**: the originator reports an ``INCIDENT_LEAK`` against one of
  its closest partners, whose access falls at once; under investigation, that partner stops
  sending feedback to that originator (receipts still flow), so its access stays down.
* The **lifecycle** (issue 18): one originator may have its bulletins released again when a
  partner earns the trust for more (the demo's policy switches ``rerelease`` on for it), and
  publishes a CONFIDENTIAL bulletin with a RESTRICTED tearline in the first second, which its
  standard-agreement partners (score 0.5 on a fresh broker) get as tearline; their receipts
  then lift them past CONFIDENTIAL's 0.6 and the router releases it to them in full. At 40 %
  of the run another originator recalls the first of its bulletins that reached a partner, and
  a third agency tries to recall that same bulletin (``recall_not_originator``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from schemas.vocab import Category

# Relative publishing weights; an agency not listed publishes at weight 1.
PUBLISH_WEIGHTS: dict[str, float] = {
    "us-jiatfs": 3.0,
    "co-ponal": 2.0,
    "pa-senafront": 2.0,
    "mx-sedena": 1.5,
    "do-dncd": 1.0,
    "cr-msp": 1.0,
    "hn-fusina": 1.0,
    "gt-pnc": 0.8,
    "sv-pnc": 0.8,
    "ca-rcmp": 0.6,
    "bz-bdf": 0.4,
}

# Per partner: (chance to send 'actioned', chance to send 'useful') for a stored bulletin.
FEEDBACK_HABITS: dict[str, tuple[float, float]] = {
    "co-ponal": (0.25, 0.3),
    "cr-msp": (0.2, 0.3),
    "do-dncd": (0.2, 0.2),
    "us-jiatfs": (0.15, 0.3),
    "pa-senafront": (0.1, 0.2),
    "ca-rcmp": (0.05, 0.3),
    "gt-pnc": (0.05, 0.1),
    "hn-fusina": (0.05, 0.1),
    "sv-pnc": (0.05, 0.1),
    "bz-bdf": (0.02, 0.05),
    "mx-sedena": (0.0, 0.0),  # stores and acknowledges, never says more
}

LEAK_ORIGINATOR = "us-jiatfs"
LEAK_PARTNER = "do-dncd"
# Colombia: full agreements with JIATF-South and Panama, standard ones with Canada, Costa Rica,
# the Dominican Republic and Mexico, so several partners start between RESTRICTED and
# CONFIDENTIAL and cross 0.6 within a minute on receipts alone (feedback is rate-bounded).
RERELEASE_ORIGINATOR = "co-ponal"
RECALL_ORIGINATOR = "pa-senafront"
RECALL_IMPOSTOR = "cr-msp"
RECALL_REASON = "demo: the vessel named was misidentified; withdrawn pending a corrected report"
IMPOSTOR_REASON = "demo: an agency tries to withdraw another agency's bulletin"
SHOWCASE_AT = 1.0
RECALL_AT_FRACTION = 0.4


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # seconds from the start of the run
    origin: str
    category: Category | None = None  # forced by a burst, else the generator's choice


@dataclass(frozen=True, slots=True)
class Story:
    arrivals: tuple[Arrival, ...]
    leak_at: float
    leak_originator: str
    leak_partner: str
    bad_every: int  # one tampered record per this many arrivals
    resend_every: int  # one publisher retry (same bytes again) per this many arrivals
    rerelease_originator: str = RERELEASE_ORIGINATOR
    showcase_at: float = SHOWCASE_AT
    recall_originator: str = RECALL_ORIGINATOR
    recall_impostor: str = RECALL_IMPOSTOR
    recall_at: float = 0.0


def plan(
    agencies: tuple[str, ...],
    *,
    seconds: float,
    rate: float,
    seed: int,
    leak_originator: str = LEAK_ORIGINATOR,
    leak_partner: str = LEAK_PARTNER,
) -> Story:
    """Arrivals over ``seconds`` at about ``rate`` bulletins per second in total."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible story, not a secret
    weights = {a: PUBLISH_WEIGHTS.get(a, 1.0) for a in agencies}
    total = sum(weights.values())
    arrivals: list[Arrival] = []
    for agency, weight in weights.items():
        agency_rate = rate * 0.85 * weight / total  # 15 % of the traffic comes in bursts
        t = rng.expovariate(agency_rate)
        while t < seconds:
            arrivals.append(Arrival(t, agency))
            t += rng.expovariate(agency_rate)
    burst_budget = rate * seconds * 0.15
    while burst_budget > 0:
        start = rng.uniform(0, seconds * 0.95)
        category = rng.choice([Category.NATURAL_DISASTER, Category.DRUG_TRAFFICKING,
                               Category.MIGRANT_SMUGGLING, Category.GANGS])  # fmt: skip
        size = max(3, int(rng.uniform(0.5, 1.5) * rate))
        reporters = rng.sample(list(agencies), k=min(len(agencies), rng.randint(3, 6)))
        arrivals.extend(
            Arrival(start + rng.uniform(0, 2.0), rng.choice(reporters), category)
            for _ in range(size)
        )
        burst_budget -= size
    arrivals.sort(key=lambda a: a.at)
    if leak_originator not in agencies or leak_partner not in agencies:
        leak_originator, leak_partner = agencies[0], agencies[-1]
    lifecycle = (RERELEASE_ORIGINATOR, RECALL_ORIGINATOR, RECALL_IMPOSTOR)
    if not set(lifecycle) <= set(agencies) and len(agencies) >= 3:
        lifecycle = (agencies[1], agencies[0], agencies[2])
    return Story(
        arrivals=tuple(a for a in arrivals if a.at < seconds),
        leak_at=seconds / 2,
        leak_originator=leak_originator,
        leak_partner=leak_partner,
        bad_every=97,
        resend_every=61,
        rerelease_originator=lifecycle[0],
        showcase_at=min(SHOWCASE_AT, seconds / 10),
        recall_originator=lifecycle[1],
        recall_impostor=lifecycle[2],
        recall_at=seconds * RECALL_AT_FRACTION,
    )


def feedback_for(partner: str, roll: float) -> str | None:
    """What ``partner`` says about a stored bulletin, given a uniform ``roll`` in [0, 1)."""
    actioned, useful = FEEDBACK_HABITS.get(partner, (0.05, 0.1))
    if roll < actioned:
        return "actioned"
    if roll < actioned + useful:
        return "useful"
    return None
