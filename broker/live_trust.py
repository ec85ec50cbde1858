"""The live trust ledger, rebuilt from Kafka exactly as a router instance builds it at start:
every receipts topic and the audit topic, read to their end (for ``enlace trust`` commands)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from broker.ledger import TrustLedger
from broker.policy import Policy
from broker.trust_state import TrustState
from broker.trust_view import TrustFeed
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
) -> TrustLedger:
    state = TrustState(policy, registry.ids)
    feed = TrustFeed(
        settings,
        state,
        keys,
        receipt_topics=[receipts(a) for a in registry.ids],
        audit_horizon=timedelta(days=6 * policy.evidence.reciprocity.half_life_days),
    )
    await feed.start()
    try:
        async with asyncio.timeout(timeout):
            await feed.catch_up()
    finally:
        await feed.stop()
    state.sweep(now)
    return state.ledger
