"""The router's own view of a phase, read from its /metrics: transactions, batch sizes, time,
and what its trust feed made of the trust events it read.

The router logs its metrics URL at start (``router_started``, ``metrics=...``); the bench
reads the counters before and after a phase and reports the difference.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

_URL = re.compile(r'"metrics": "(http://127\.0\.0\.1:\d+/metrics)"')


def metrics_url(log_text: str) -> str | None:
    """The router's metrics URL from its JSON log lines (None until it has started)."""
    found = _URL.search(log_text)
    return found.group(1) if found else None


def metrics_urls(log_text: str) -> list[str]:
    """Every router worker's metrics URL in the log, each once (a restarted worker on an
    ephemeral port logs a new one; the newest of them are the living)."""
    return list(dict.fromkeys(_URL.findall(log_text)))


@dataclass(frozen=True)
class TxnCounters:
    committed: float = 0.0
    aborted: float = 0.0
    records: float = 0.0  # input records in committed transactions
    seconds: float = 0.0  # summed handle-to-commit time

    def __sub__(self, other: TxnCounters) -> TxnCounters:
        return TxnCounters(
            self.committed - other.committed,
            self.aborted - other.aborted,
            self.records - other.records,
            self.seconds - other.seconds,
        )

    def __add__(self, other: TxnCounters) -> TxnCounters:
        return TxnCounters(
            self.committed + other.committed,
            self.aborted + other.aborted,
            self.records + other.records,
            self.seconds + other.seconds,
        )

    def describe(self) -> str:
        if self.committed <= 0:
            return "no transaction committed"
        text = (
            f"{self.committed:,.0f} transactions, {self.records / self.committed:.1f} "
            f"bulletins and {self.seconds / self.committed * 1e3:.0f} ms each"
        )
        if self.aborted:
            text += f", {self.aborted:.0f} aborted"
        return text


def parse_counters(text: str) -> TxnCounters:
    """The router's transaction counters from a Prometheus text exposition."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "enlace_router_transactions_total":
                values[sample.labels.get("outcome", "")] = sample.value
            elif sample.name in {
                "enlace_router_batch_records_sum",
                "enlace_router_transaction_seconds_sum",
            }:
                values[sample.name] = sample.value
    return TxnCounters(
        committed=values.get("committed", 0.0),
        aborted=values.get("aborted", 0.0),
        records=values.get("enlace_router_batch_records_sum", 0.0),
        seconds=values.get("enlace_router_transaction_seconds_sum", 0.0),
    )


def fetch(url: str) -> str:
    """The body of one of the router's endpoints (blocking: call it in a thread)."""
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL from the router's own log
        body: bytes = response.read()
    return body.decode("utf-8")


def _scrape(log_path: Path) -> TxnCounters | None:
    urls = metrics_urls(log_path.read_text(encoding="utf-8", errors="replace"))
    if not urls:
        return None
    total, answered = TxnCounters(), 0
    for url in urls:
        try:
            total = total + parse_counters(fetch(url))
        except (OSError, ValueError):
            continue  # a worker that has exited (its restart logs a new URL)
        answered += 1
    return total if answered else None


async def read_counters(log_path: Path) -> TxnCounters | None:
    """The router's counters now, or None if its URL or endpoint is not available."""
    try:
        return await asyncio.to_thread(_scrape, log_path)
    except (OSError, ValueError):
        return None


# Trust event outcomes by family: rejected and ignored by reason, counted by kind; bounds hit.
_TRUST = {
    "enlace_router_trust_events_rejected_total": ("rejected", "reason"),
    "enlace_router_trust_events_ignored_total": ("ignored", "reason"),
    "enlace_router_trust_events_total": ("counted", "kind"),
    "enlace_router_trust_bounds_hit_total": ("bounds", "bound"),
}


def _minus(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0.0) - b.get(k, 0.0) for k in sorted({*a, *b}) if a.get(k) != b.get(k)}


@dataclass(frozen=True)
class TrustCounters:
    """The trust feed's outcome counters, and the receipts held now waiting for a release."""

    rejected: dict[str, float] = field(default_factory=dict)
    ignored: dict[str, float] = field(default_factory=dict)
    counted: dict[str, float] = field(default_factory=dict)
    bounds: dict[str, float] = field(default_factory=dict)
    orphans: float = 0.0

    def __sub__(self, other: TrustCounters) -> TrustCounters:
        return TrustCounters(
            _minus(self.rejected, other.rejected),
            _minus(self.ignored, other.ignored),
            _minus(self.counted, other.counted),
            _minus(self.bounds, other.bounds),
            self.orphans - other.orphans,
        )

    @property
    def held(self) -> float:
        """Events that waited as orphans (of a difference: still held, or evicted by the bound;
        an orphan that finds its release later moves to ``counted``)."""
        return self.orphans + self.bounds.get("orphans", 0.0)

    @property
    def read(self) -> float:
        """Trust events the feed has folded (of a difference), whatever became of them."""
        outcomes = (self.rejected, self.ignored, self.counted)
        return sum(sum(by.values()) for by in outcomes) + self.held

    def outcomes(self) -> dict[str, int]:
        """``held``, ``rejected <reason>``, ``ignored <reason>``, ``counted``: events each."""
        found = {"held": round(self.held)}
        found.update({f"rejected {r}": round(n) for r, n in self.rejected.items()})
        found.update({f"ignored {r}": round(n) for r, n in self.ignored.items()})
        found["counted"] = round(sum(self.counted.values()))
        return found


def parse_trust(metrics_text: str, health: Mapping[str, object]) -> TrustCounters:
    """The trust counters from a Prometheus exposition and the router's /health body."""
    found: dict[str, dict[str, float]] = {name: {} for name, _ in _TRUST.values()}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in _TRUST:
                name, label = _TRUST[sample.name]
                found[name][sample.labels.get(label, "")] = sample.value
    orphans = health.get("trust_orphans", 0)
    return TrustCounters(
        found["rejected"], found["ignored"], found["counted"], found["bounds"],
        float(orphans) if isinstance(orphans, int | float) else 0.0,
    )  # fmt: skip


def _scrape_trust(url: str) -> TrustCounters:
    health = json.loads(fetch(url.removesuffix("/metrics") + "/health"))
    return parse_trust(fetch(url), health if isinstance(health, dict) else {})


async def read_trust(url: str) -> TrustCounters | None:
    """The router's trust counters now (``url``: its metrics URL), or None if unavailable."""
    try:
        return await asyncio.to_thread(_scrape_trust, url)
    except (OSError, ValueError):
        return None
