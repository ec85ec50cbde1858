"""Prometheus metrics of the partner consumer, on a private registry.

One :class:`ConsumerMetrics` serves any number of :class:`~consumers.service.FeedConsumer`
in a process (the demo runs one per agency): every series carries the ``agency`` label.
Labels are bounded: agencies and origins come from the registry / key directory (an origin
is only used as a label once its signature verified), reasons and sink kinds are fixed codes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.delivered = Counter(
            "enlace_bulletins_delivered",
            "Bulletins newly stored by a partner (duplicates excluded), by origin and release.",
            ["agency", "origin", "release"],
            registry=r,
        )
        self.duplicates = Counter(
            "enlace_consumer_duplicates",
            "Feed records of bulletins already held (at-least-once redelivery).",
            ["agency"],
            registry=r,
        )
        self.quarantined = Counter(
            "enlace_bulletins_quarantined",
            "Feed records that failed verification or decoding, by reason.",
            ["agency", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            "enlace_publish_to_delivery_seconds",
            "From when the publisher sent a bulletin (the router's enlace-published-ms header) "
            "to its storage by the partner.",
            ["agency"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.issue_latency = Histogram(
            "enlace_issue_to_delivery_seconds",
            "From a bulletin's issued_at (the author's time) to its storage by the partner.",
            ["agency"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "enlace_consumer_lag_records",
            "Records of the feed not yet processed (last stable offset minus position).",
            ["agency"],
            registry=r,
        )
        self.receipts = Counter(
            "enlace_receipts_sent",
            "Signed receipts acknowledged by Kafka.",
            ["agency"],
            registry=r,
        )
        self.sink_errors = Counter(
            "enlace_sink_errors",
            "Failed sink writes (retried), by sink kind.",
            ["agency", "sink"],
            registry=r,
        )
        self.sink_buffered = Gauge(
            "enlace_sink_buffered_records",
            "Records accepted by a deferred sink (webhook) but not yet acknowledged.",
            ["agency", "sink"],
            registry=r,
        )
        # Recalls (consumers/lifecycle.py), by a fixed outcome: applied (a held bulletin is
        # now withdrawn), pending (not held yet), duplicate (redelivery), quarantined.
        self.recalls = Counter(
            "enlace_consumer_recalls",
            "Recall records of the feed, by outcome (applied, pending, duplicate, quarantined).",
            ["agency", "outcome"],
            registry=r,
        )
        self.supersede_links = Counter(
            "enlace_consumer_supersede_links",
            "Supersede links newly stored (a bulletin naming one it replaces).",
            ["agency"],
            registry=r,
        )
        # A feed gap: releases retention deleted before this partner read them. Offsets, not
        # releases (commit markers take offsets too): an upper bound on what was lost.
        self.feed_gaps = Counter(
            "enlace_consumer_feed_gaps",
            "Feed gaps detected: ranges of the feed that expired before being read.",
            ["agency"],
            registry=r,
        )
        self.feed_gap_offsets = Counter(
            "enlace_consumer_feed_gap_offsets",
            "Feed offsets that expired unread (an upper bound on releases missed).",
            ["agency"],
            registry=r,
        )
