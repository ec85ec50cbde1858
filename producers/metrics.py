"""Prometheus metrics of the producer service, on a private registry (bounded labels only)."""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Stable reject reasons: the label set of enlace_publisher_rejected_total.
RejectReason = Literal[
    "invalid", "wrong_origin", "oversize", "timeout", "refused", "unavailable", "clock_skew"
]
REJECT_REASONS: tuple[RejectReason, ...] = (
    "invalid",
    "wrong_origin",
    "oversize",
    "timeout",
    "refused",
    "unavailable",
    "clock_skew",
)
# Which clock check refused (producers/skew.py): the label set of
# enlace_publisher_clock_skew_refused_total. clock_off: the broker refused the timestamp.
SkewReason = Literal["issued_in_future", "issued_too_old", "clock_off"]
SKEW_REASONS: tuple[SkewReason, ...] = ("issued_in_future", "issued_too_old", "clock_off")
FileOutcome = Literal["done", "failed", "retry"]
FILE_OUTCOMES: tuple[FileOutcome, ...] = ("done", "failed", "retry")

# Send → ack on a healthy LAN broker is milliseconds; the tail shows outages and retries.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PublisherMetrics:
    def __init__(self, agency: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.agency = agency
        self._published = Counter(
            "enlace_bulletins_published",
            "Bulletins the broker acknowledged (acks=all).",
            ["agency"],
            registry=self.registry,
        )
        self._rejected = Counter(
            "enlace_publisher_rejected",
            "Bulletins not published, by reason.",
            ["agency", "reason"],
            registry=self.registry,
        )
        self._skew = Counter(
            "enlace_publisher_clock_skew_refused",
            "Bulletins refused for their time (also counted in rejected, reason clock_skew): "
            "issued_at outside the admission window, or the broker refused the record's "
            "timestamp (clock_off: this host's clock is off).",
            ["agency", "reason"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "enlace_publish_latency_seconds",
            "Time from handing a bulletin to the Kafka client to the broker's acknowledgement.",
            ["agency"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "enlace_publisher_in_flight",
            "Bulletins sent and not yet acknowledged or failed.",
            ["agency"],
            registry=self.registry,
        )
        self._files = Counter(
            "enlace_publisher_files",
            "Drop-folder files by outcome (retry: not acknowledged, will be re-sent).",
            ["agency", "outcome"],
            registry=self.registry,
        )
        self._http = Counter(
            "enlace_publisher_http_requests",
            "HTTP intake requests by status code.",
            ["agency", "status"],
            registry=self.registry,
        )
        # Pre-create children so dashboards see zeros rather than absent series.
        self.published = self._published.labels(agency)
        self.latency = self._latency.labels(agency)
        self.in_flight = self._in_flight.labels(agency)
        self.rejected = {reason: self._rejected.labels(agency, reason) for reason in REJECT_REASONS}
        self.skew: dict[str, Counter] = {
            reason: self._skew.labels(agency, reason) for reason in SKEW_REASONS
        }
        self.files = {outcome: self._files.labels(agency, outcome) for outcome in FILE_OUTCOMES}

    def reject(self, reason: RejectReason, count: int = 1) -> None:
        self.rejected[reason].inc(count)

    def clock_skew(self, reason: str) -> None:
        """One clock-skew refusal; an unknown reason (a bug) is counted as clock_off, so the
        label set stays the fixed one."""
        self.skew.get(reason, self.skew["clock_off"]).inc()

    def http_status(self, status: int) -> None:
        # Status codes the intake returns are a small fixed set, so the label stays bounded.
        self._http.labels(self.agency, str(status)).inc()
