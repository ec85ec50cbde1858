"""The replay index while batches commit: a batch handled behind one still committing sees
its ids (a retry split across two batches is a duplicate, not a second release), and an
abandoned batch's ids are withdrawn (its records come again and are new again)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from broker.replay import Replay, SeenEntry, SeenIndex

DIGEST = b"d" * 32


def entry(ms: int = 1) -> SeenEntry:
    return SeenEntry(DIGEST, ms)


def test_a_held_batch_is_seen_by_the_next_and_withdrawn_if_abandoned() -> None:
    index = SeenIndex(timedelta(days=1))
    first = {b"a": entry()}
    commit, withdraw = index.hold(first)
    assert index.classify(b"a", DIGEST, {}) is Replay.DUPLICATE
    assert index.classify(b"a", b"x" * 32, {}) is Replay.CONFLICT
    withdraw()
    assert index.classify(b"a", DIGEST, {}) is Replay.NEW
    assert index.pending == 0
    commit_again, _ = index.hold(first)
    commit_again()
    assert index.classify(b"a", DIGEST, {}) is Replay.DUPLICATE
    assert (index.pending, len(index)) == (0, 1)
    commit()  # a stale pair applied late changes nothing it should not
    assert (index.pending, len(index)) == (0, 1)


@given(st.lists(st.tuples(st.sets(st.binary(min_size=1, max_size=2), max_size=5), st.booleans())))
def test_a_chain_of_batches_leaves_exactly_the_committed_ids(
    batches: list[tuple[set[bytes], bool]],
) -> None:
    """As the router does: each batch stages the ids not already known (held or
    committed), all are handled before any settles, then they settle in order."""
    index = SeenIndex(timedelta(days=1))
    pairs = []
    for keys, ok in batches:
        new = {k for k in keys if index.classify(k, DIGEST, {}) is Replay.NEW}
        pairs.append((new, ok, index.hold({k: entry() for k in new})))
    committed: set[bytes] = set()
    for keys, ok, (commit, withdraw) in pairs:
        if ok:
            commit()
            committed |= keys
        else:
            withdraw()
    assert index.pending == 0
    for keys, _ok, _pair in pairs:
        for key in keys:
            expected = Replay.DUPLICATE if key in committed else Replay.NEW
            assert index.classify(key, DIGEST, {}) is expected
