"""A short demo against the test broker: the books balance and the leak cuts access."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from enlace.core.settings import DEFAULT_AGENCIES, DEFAULT_POLICY, KafkaSettings
from enlace.demo.runner import Demo, DemoOptions

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(240)
async def test_short_demo_accounts_for_everything_and_the_leak_cuts_access(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    demo = Demo(
        kafka_settings,
        DemoOptions(
            seconds=15,
            rate=15,
            seed=11,
            state_dir=tmp_path / "demo",
            agencies_file=DEFAULT_AGENCIES,
            policy_file=DEFAULT_POLICY,
            metrics_port_base=0,
            drain_seconds=90,
            router_prefix=f"t{uuid.uuid4().hex[:8]}.router.",
        ),
    )
    verdict = await demo.run()
    state = demo.state
    assert verdict.ok, verdict.problems
    books = state.books
    assert len(books.published) > 100
    assert books.routed == len(books.published)
    assert books.injected_bad, "the story injects tampered records"
    assert books.dead_keys == books.injected_bad
    assert sum(books.duplicates_audited.values()) == sum(books.resent.values()) > 0
    counts = books.decision_counts()
    assert counts["FULL"]
    assert counts["TEARLINE"]
    assert counts["WITHHELD"]
    # Releases when trust is earned count as releases too (not on this short run's broker,
    # whose earlier runs' evidence already saturated most pairs, necessarily).
    assert sum(books.delivered.values()) == len(books.releases)
    # The lifecycle: one recall forwarded to exactly the bulletin's holders and received by
    # each (the verdict checks both), the impostor's dead-lettered recall_not_originator.
    assert len(books.recalls) == 1
    (recalled,) = books.recalls
    assert books.recalls_forwarded[recalled] == {p for b, p in books.released if b == recalled}
    assert books.recalls_forwarded_total >= 1
    assert set(books.dead_recalls.values()) == {"recall_not_originator"}

    leak = state.leak
    assert leak is not None
    assert leak.leaked_at is not None
    assert leak.scores_before, "decisions for the leak pair before the leak"
    assert leak.scores_after, "decisions for the leak pair after the leak"
    last_before, first_after = leak.scores_before[-1], leak.scores_after[0]
    assert last_before >= 0.6, "a full-agreement partner reaches CONFIDENTIAL before the leak"
    # At once: CONFIDENTIAL bulletins fall from full to tearline or nothing (on a broker that
    # already holds earlier runs' evidence the exact level differs; the fall does not).
    assert first_after < 0.6
    assert last_before - first_after >= 0.25
    assert (tmp_path / "demo" / "stores" / "do-dncd.sqlite").exists()
