"""The router supervisor's restart rule (pure): back off on quick exits, give up on a loop."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.workers import (
    GIVE_UP_AFTER,
    MAX_BACKOFF_S,
    QUICK_EXIT_S,
    GiveUp,
    Restart,
    WorkerHistory,
    after_exit,
)


def test_a_worker_that_ran_a_while_restarts_at_once() -> None:
    action = after_exit(WorkerHistory(), lived_s=QUICK_EXIT_S * 10, code=-9)
    assert action == Restart(1.0)


def test_quick_exits_back_off_then_give_up() -> None:
    history = WorkerHistory()
    actions = [after_exit(history, lived_s=0.5, code=2) for _ in range(GIVE_UP_AFTER)]
    assert actions[:-1] == [Restart(1.0), Restart(2.0)][: GIVE_UP_AFTER - 1]
    assert isinstance(actions[-1], GiveUp)
    assert "exit code 2" in actions[-1].reason


@given(st.lists(st.tuples(st.floats(0, 3600), st.integers(-15, 255)), max_size=50))
def test_only_a_run_of_quick_exits_gives_up_and_backoff_is_bounded(
    exits: list[tuple[float, int]],
) -> None:
    history = WorkerHistory()
    run = 0
    for lived, code in exits:
        run = run + 1 if lived < QUICK_EXIT_S else 0
        action = after_exit(history, lived, code)
        if run >= GIVE_UP_AFTER:
            assert isinstance(action, GiveUp)
            return
        assert isinstance(action, Restart)
        assert 1.0 <= action.delay_s <= MAX_BACKOFF_S
