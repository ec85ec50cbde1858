"""The consumer's kill drill: off by default, kills once at the chosen arrival of its point."""

from __future__ import annotations

import pytest

from consumers.drills import KillDrill, KillPoint, kill_target
from consumers.settings import ConsumerSettings


def test_off_by_default() -> None:
    settings = ConsumerSettings(agency="cr-msp")
    assert settings.fault_kill_at is None
    kills: list[int] = []
    drill = KillDrill(settings.fault_kill_at, kill=lambda: kills.append(1))
    for point in KillPoint:
        drill.reached(point)
    assert kills == []
    assert drill.arrivals == 0


def test_kills_at_the_nth_arrival_of_its_own_point_only() -> None:
    kills: list[int] = []
    drill = KillDrill(KillPoint.AFTER_RECEIPT, after=3, kill=lambda: kills.append(drill.arrivals))
    for _ in range(5):
        drill.reached(KillPoint.AFTER_SINK_WRITE)
        drill.reached(KillPoint.MID_BATCH)
        drill.reached(KillPoint.AFTER_RECEIPT, receipts=4)
    assert kills == [3]  # once, at the third arrival; other points are not counted


def test_seeded_target_is_reproducible_and_in_range() -> None:
    targets = {kill_target(5, seed) for seed in range(1, 200)}
    assert targets == {1, 2, 3, 4, 5}
    assert kill_target(5, 42) == kill_target(5, 42)
    assert kill_target(5, 0) == 5  # no seed: exactly the arrival asked for
    with pytest.raises(ValueError, match="from 1"):
        kill_target(0, 0)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENLACE_FAULT_KILL_AT", "mid_batch")
    monkeypatch.setenv("ENLACE_FAULT_KILL_AFTER", "4")
    monkeypatch.setenv("ENLACE_FAULT_SEED", "7")
    settings = ConsumerSettings(agency="cr-msp")
    assert settings.fault_kill_at is KillPoint.MID_BATCH
    assert (settings.fault_kill_after, settings.fault_seed) == (4, 7)
    monkeypatch.setenv("ENLACE_FAULT_KILL_AT", "before_breakfast")
    with pytest.raises(ValueError, match="fault_kill_at"):
        ConsumerSettings(agency="cr-msp")
