"""Settings of the router service (``ENLACE_*`` environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from enlace.core.clock import MAX_DRILL_OFFSET_S, MAX_FUTURE, MAX_PAST
from enlace.core.settings import DEFAULT_KEYS, DEFAULT_POLICY, KafkaSettings
from enlace.core.topics import ROUTER_PREFIX, router_group
from schemas.codec import DEFAULT_MAX_RECORD_BYTES


class RouterSettings(KafkaSettings):
    policy_file: Path = DEFAULT_POLICY
    keys_file: Path = DEFAULT_KEYS
    router_prefix: str = Field(
        default=ROUTER_PREFIX,
        description="Prefix of the router's group id and transactional ids (for prefixed ACLs).",
    )
    router_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Router processes in the group on this host (0: one per core). Each "
        "worker serves /metrics on http_port + its index.",
    )
    router_max_batch: int = Field(default=500, ge=1, le=10_000)
    router_poll_ms: int = Field(default=100, ge=1, le=5_000)
    # How often each owned partition is checked for releases when trust is earned (only when
    # the policy switches them on): a crossing is acted on within about this long.
    rerelease_interval_seconds: float = Field(default=5.0, gt=0.0, le=3600.0)
    router_session_timeout_ms: int = Field(
        default=10_000,
        ge=6_000,
        le=300_000,
        description="How soon a crashed instance's partitions move to the others.",
    )
    router_metadata_max_age_ms: int = Field(
        default=30_000,
        ge=1_000,
        le=3_600_000,
        description="How soon partitions added to an outbound topic are noticed (a rebalance).",
    )
    fault_abort_ratio: float = Field(
        default=0.0,
        ge=0.0,
        le=0.9,
        description="Fault drills only: abort this fraction of transactions on purpose after "
        "writing their outputs (marked enlace-test-aborted), as Kafka's transactions_test does. "
        "Never set in production.",
    )
    fault_seed: int = Field(default=0, description="Seed of the drill's abort choices.")
    fault_clock_offset_s: float = Field(
        default=0.0,
        ge=-MAX_DRILL_OFFSET_S,
        le=MAX_DRILL_OFFSET_S,
        description="Fault drills only: run the router's clock this many seconds ahead "
        "(negative: behind) of the host's, for admission, trust and audit alike, to rehearse a "
        "skewed host without faking the OS clock. Never set in production.",
    )
    max_record_bytes: int = Field(default=DEFAULT_MAX_RECORD_BYTES, ge=1024, le=8_388_608)
    max_future_seconds: float = Field(default=MAX_FUTURE.total_seconds(), ge=0)
    max_past_seconds: float = Field(default=MAX_PAST.total_seconds(), ge=60)
    # How often the score matrix goes to enlace.trust.scores (not the state snapshots below).
    trust_snapshot_seconds: float = Field(default=5.0, gt=0)
    trust_event_max_past_seconds: float = Field(
        default=7 * 86_400.0,
        ge=60,
        description="How long before its arrival a trust event may claim to have occurred.",
    )
    trust_orphans_per_reporter: int = Field(
        default=1_000, ge=1, le=1_000_000, description="Receipts waiting for their release."
    )
    trust_event_ids_per_reporter: int = Field(
        default=20_000, ge=100, le=10_000_000, description="Event ids kept to drop duplicates."
    )
    trust_release_memory_days: float = Field(
        default=30.0,
        ge=1.0,
        le=365.0,
        description="How long a release is remembered for the feedback about it to count.",
    )
    trust_releases_per_partner: int = Field(
        default=100_000, ge=100, le=10_000_000, description="Releases remembered per partner."
    )
    trust_state_snapshots: bool = Field(
        default=True,
        description="Start from the newest trust snapshot and write new ones (when this "
        "instance owns the writer's partition); false: replay history at every start.",
    )
    trust_state_snapshot_seconds: float = Field(
        default=300.0,
        ge=1.0,
        le=86_400.0,
        description="Most time between two trust snapshots (while trust records arrive).",
    )
    trust_state_snapshot_records: int = Field(
        default=200_000,
        ge=100,
        le=100_000_000,
        description="Trust records folded since the last snapshot that trigger the next one "
        "early: a restart replays at most about this many.",
    )
    trust_deadletter_queue: int = Field(
        default=1_000, ge=1, le=1_000_000, description="Rejected trust events awaiting send."
    )
    trust_live_share: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="Most of the event loop live trust folding may take (routing keeps the rest).",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=9180, ge=0, le=65_535)
    startup_timeout_seconds: float = Field(default=120.0, gt=0)

    @property
    def group_id(self) -> str:
        return router_group(self.router_prefix)
