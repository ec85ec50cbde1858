"""The router's Prometheus metrics, on a private registry with bounded labels.

Label values come from closed sets: agency ids of the registry, release kinds, dead-letter
reason codes, transaction outcomes. Never bulletin ids or free text.
"""

from __future__ import annotations

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from broker.admission import DEAD_LETTER_REASONS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "enlace_router_records_consumed_total", "Outbound records read.", ["origin"], registry=r
        )
        self.routed = Counter(
            "enlace_router_bulletins_routed_total",
            "Bulletins accepted and decided for every partner.",
            ["origin"],
            registry=r,
        )
        self.releases = Counter(
            "enlace_router_releases_total",
            "Release decisions by originator, recipient and decision.",
            ["origin", "recipient", "decision"],
            registry=r,
        )
        self.recalls = Counter(
            "enlace_router_recalls_total",
            "Recalls by originator and outcome (forwarded, duplicate, dead_lettered).",
            ["origin", "outcome"],
            registry=r,
        )
        self.recalls_forwarded = Counter(
            "enlace_router_recalls_forwarded_total",
            "Recalls forwarded, by originator and recipient.",
            ["origin", "recipient"],
            registry=r,
        )
        self.rereleases = Counter(
            "enlace_router_rereleases_total",
            "Releases when trust is earned, by originator, recipient and level.",
            ["origin", "recipient", "decision"],
            registry=r,
        )
        self.duplicates = Counter(
            "enlace_router_duplicates_total",
            "Bulletins dropped as publisher retries (same id, same bytes).",
            ["origin"],
            registry=r,
        )
        self.rejected = Counter(
            "enlace_router_rejected_total",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.trust_events_rejected = Counter(
            "enlace_router_trust_events_rejected_total",
            "Trust events dead-lettered (bad signature, forged reporter...), by reason.",
            ["reason"],
            registry=r,
        )
        for reason in DEAD_LETTER_REASONS:
            self.rejected.labels(reason)
            self.trust_events_rejected.labels(reason)
        self.trust_events_ignored = Counter(
            "enlace_router_trust_events_ignored_total",
            "Valid trust events that added nothing (duplicate id, repeat, after a missing "
            "receipt), by reason.",
            ["reason"],
            registry=r,
        )
        self.trust_bounds_hit = Counter(
            "enlace_router_trust_bounds_hit_total",
            "Times a bound on trust state was reached (orphans, orphan_age, event_ids, claims, "
            "releases, deadletter_queue), by bound.",
            ["bound"],
            registry=r,
        )
        self.trust_records_skipped = Counter(
            "enlace_router_trust_records_skipped_total",
            "Audit or router-state records the router could not read and skipped, by reason.",
            ["reason"],
            registry=r,
        )
        self.transactions = Counter(
            "enlace_router_transactions_total",
            "Kafka transactions by outcome.",
            ["outcome"],
            registry=r,
        )
        self.batch_size = Histogram(
            "enlace_router_batch_records",
            "Input records per transaction.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "enlace_router_transaction_seconds",
            "Time from handling a batch to its commit.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.route_latency = Histogram(
            "enlace_publish_to_route_seconds",
            "From when the publisher sent a bulletin (its outbound record's timestamp) to its "
            "routing decision.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.issue_latency = Histogram(
            "enlace_issue_to_route_seconds",
            "From a bulletin's issued_at (the author's time, up to minutes or hours before "
            "publication) to its routing decision.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.trust_score = Gauge(
            "enlace_trust_score",
            "Current directed trust score, originator towards partner.",
            ["originator", "partner"],
            registry=r,
        )
        self.trust_events = Counter(
            "enlace_router_trust_events_total",
            "Trust events applied, by kind.",
            ["kind"],
            registry=r,
        )
        self.trust_remembered = Gauge(
            "enlace_router_trust_remembered",
            "What the trust state holds (releases, orphans, event_ids), by kind: each is "
            "bounded (settings ENLACE_TRUST_*).",
            ["kind"],
            registry=r,
        )
        self.trust_start = Counter(
            "enlace_router_trust_starts_total",
            "How the trust state was built at start: from a snapshot ('snapshot'), or from "
            "history because none was usable (none, format, fold_changed, key_revoked, "
            "offsets, unreadable) or snapshots are off (disabled).",
            ["source"],
            registry=r,
        )
        self.trust_start_seconds = Gauge(
            "enlace_router_trust_start_seconds",
            "Seconds the last start spent building the trust state (snapshot load + tail).",
            registry=r,
        )
        self.trust_snapshots = Counter(
            "enlace_router_trust_snapshots_total",
            "Trust snapshots this instance wrote, by outcome (written, failed).",
            ["outcome"],
            registry=r,
        )
        self.trust_snapshot_bytes = Gauge(
            "enlace_router_trust_snapshot_bytes",
            "Size of the last trust snapshot this instance wrote or loaded (compressed).",
            registry=r,
        )
        self.trust_snapshot_seconds = Histogram(
            "enlace_router_trust_snapshot_seconds",
            "Time to capture, encode and write one trust snapshot.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.assigned = Gauge(
            "enlace_router_assigned_partitions",
            "Input partitions this instance owns.",
            registry=r,
        )

    # EngineObserver
    def committed(self, tp: TopicPartition, records: int, outputs: int, seconds: float) -> None:
        del tp, outputs
        self.transactions.labels("committed").inc()
        self.batch_size.observe(records)
        self.commit_seconds.observe(seconds)

    def aborted(self, tp: TopicPartition, reason: str) -> None:
        del tp, reason
        self.transactions.labels("aborted").inc()
