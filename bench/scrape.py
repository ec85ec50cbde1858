"""The router's own view of a phase, read from its /metrics: transactions, batch sizes, time.

The router logs its metrics URL at start (``router_started``, ``metrics=...``); the bench
reads the counters before and after a phase and reports the difference.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

_URL = re.compile(r'"metrics": "(http://127\.0\.0\.1:\d+/metrics)"')


def metrics_url(log_text: str) -> str | None:
    """The router's metrics URL from its JSON log lines (None until it has started)."""
    found = _URL.search(log_text)
    return found.group(1) if found else None


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


def _scrape(log_path: Path) -> TxnCounters | None:
    url = metrics_url(log_path.read_text(encoding="utf-8", errors="replace"))
    if url is None:
        return None
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL from the router's own log
        body: bytes = response.read()
    return parse_counters(body.decode("utf-8"))


async def read_counters(log_path: Path) -> TxnCounters | None:
    """The router's counters now, or None if its URL or endpoint is not available."""
    try:
        return await asyncio.to_thread(_scrape, log_path)
    except (OSError, ValueError):
        return None
