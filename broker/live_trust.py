"""The live trust ledger, rebuilt from Kafka exactly as a router instance builds it at start:
the newest trust snapshot and every receipts topic and the audit topic from the offsets it
covers, or (no usable snapshot) from the beginning, read to their end (for ``enlace trust``)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from broker.ledger import TrustLedger
from broker.policy import Policy
from broker.trust_snapshots import DEFAULT_TOPIC, load_newest
from broker.trust_state import TrustState
from broker.trust_view import TrustFeed
from enlace.core.errors import BrokerError
from enlace.core.registry import Registry
from enlace.core.settings import KafkaSettings
from enlace.core.topics import receipts
from schemas.key_directory import KeyDirectory


async def live_ledger(
    settings: KafkaSettings,
    registry: Registry,
    policy: Policy,
    keys: KeyDirectory,
    now: datetime,
    *,
    timeout: float = 60.0,  # noqa: ASYNC109 - one bound for the whole read
    snapshots_topic: str = DEFAULT_TOPIC,
) -> TrustLedger:
    state = TrustState(policy, registry.ids)
    try:
        resume, _source = await load_newest(settings, state, keys, registry, snapshots_topic)
    except BrokerError:
        resume = None  # no snapshot topic (an older exchange): history alone
    feed = TrustFeed(
        settings,
        state,
        keys,
        receipt_topics=[receipts(a) for a in registry.ids],
        audit_horizon=timedelta(days=6 * policy.evidence.reciprocity.half_life_days),
    )
    await feed.start(resume)
    try:
        async with asyncio.timeout(timeout):
            await feed.catch_up()
    finally:
        await feed.stop()
    state.sweep(now)
    return state.ledger
