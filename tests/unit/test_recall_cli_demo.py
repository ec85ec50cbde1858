"""The demo's side of recalls and releases when trust is earned, without Kafka: the books
count the lifecycle's audit records without a new bulletin in, hold the recall to exactly the
bulletin's holders, and the lifecycle panel's lines say so; the run's policy switches
rerelease on for one originator only."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.policy import Policy
from enlace.core.errors import PolicyError
from enlace.core.settings import DEFAULT_POLICY
from enlace.demo.accounting import Books
from enlace.demo.lifecycle import LifecycleWatch
from enlace.demo.setup import write_demo_policy
from enlace.demo.story import plan
from schemas.vocab import Classification

PARTNERS = ("p1", "p2", "p3")
ORIGIN = "o"
BID = "b-1"


def routed(books: Books, bid: str, *decisions: str) -> None:
    books.on_published(bid, ORIGIN, Classification.CONFIDENTIAL)
    for partner, decision in zip(PARTNERS, decisions, strict=True):
        rule = {"FULL": "score_full", "TEARLINE": "score_tearline"}.get(decision, "score_below")
        books.on_audit(bid, partner, decision, rule)


def delivered(books: Books, bid: str, *pairs: tuple[str, str]) -> None:
    for partner, kind in pairs:
        books.on_delivery(bid, partner, kind.lower())


def test_rereleases_are_releases_not_bulletins_in() -> None:
    books = Books(len(PARTNERS))
    routed(books, BID, "FULL", "TEARLINE", "WITHHELD")
    delivered(books, BID, ("p1", "FULL"), ("p2", "TEARLINE"))
    assert books.verdict().ok
    # p2 earns the full text, p3 the tearline: two more releases of the same bulletin.
    books.on_audit(BID, "p2", "FULL", "rerelease_full")
    books.on_audit(BID, "p3", "TEARLINE", "rerelease_tearline")
    assert books.verdict().problems == ("2 release(s) not delivered",)
    delivered(books, BID, ("p2", "FULL"), ("p3", "TEARLINE"))
    verdict = books.verdict()
    assert verdict.ok, verdict.problems
    # in = released + withheld + dead-lettered: the decisions are the routing's, unchanged.
    assert books.routed == len(books.published) == 1
    assert books.decision_counts() == {"FULL": 1, "TEARLINE": 1, "WITHHELD": 1}
    assert books.rerelease_counts() == {"FULL": 1, "TEARLINE": 1}
    assert books.released == {(BID, "p1"): "FULL", (BID, "p2"): "FULL", (BID, "p3"): "TEARLINE"}
    assert len(books.releases) == sum(books.delivered.values()) == 4


def test_rerelease_problems_are_reported() -> None:
    books = Books(len(PARTNERS))
    routed(books, BID, "FULL", "TEARLINE", "WITHHELD")
    delivered(books, BID, ("p1", "FULL"), ("p2", "TEARLINE"), ("p3", "FULL"))
    assert "1 delivery(ies) without a release decision" in books.verdict().problems
    books.on_audit(BID, "p1", "FULL", "rerelease_full")  # what p1 already held
    books.on_audit(BID, "p2", "FULL", "rerelease_full")
    books.on_audit(BID, "p2", "FULL", "rerelease_full")  # audited twice
    problems = books.verdict().problems
    assert "1 re-release(s) of what the partner held" in problems
    assert "1 re-release(s) audited more than once" in problems
    # Neither counts as a routing decision audited twice.
    assert not any("decision(s) audited more than once" in p for p in problems)


def test_recall_must_reach_exactly_the_holders() -> None:
    books = Books(len(PARTNERS))
    routed(books, BID, "FULL", "TEARLINE", "WITHHELD")
    delivered(books, BID, ("p1", "FULL"), ("p2", "TEARLINE"))
    books.on_recall(BID)
    assert books.verdict().problems == (f"recall of {BID} not audited",)
    books.on_audit(BID, "p1", "RECALLED", "recall_forwarded")
    assert books.verdict().problems == (
        f"recall of {BID} forwarded to 1 partner(s), but 2 hold the bulletin",
        f"recall of {BID} not received by 1 partner(s)",
    )
    books.on_audit(BID, "p2", "RECALLED", "recall_forwarded")
    books.on_recall_delivery(BID, "p1")
    books.on_recall_delivery(BID, "p2")
    verdict = books.verdict()
    assert verdict.ok, verdict.problems
    assert books.recalls_forwarded_total == 2
    # A recall is no decision: the bulletin stays routed once, released as it was.
    assert books.decision_counts() == {"FULL": 1, "TEARLINE": 1, "WITHHELD": 1}


def test_recall_of_a_bulletin_no_one_holds_is_audited_for_the_origin() -> None:
    books = Books(len(PARTNERS))
    routed(books, BID, "WITHHELD", "WITHHELD", "WITHHELD")
    books.on_recall(BID)
    books.on_audit(BID, ORIGIN, "RECALLED", "recall")  # no per-partner decisions
    assert books.verdict().ok
    assert books.recalls_forwarded_total == 0


def test_refused_recall_must_be_dead_lettered_with_its_reason() -> None:
    books = Books(len(PARTNERS))
    topic, key = "enlace.outbound.imp", BID.encode()
    books.on_refused_recall(topic, key, "recall_not_originator")
    assert books.verdict().problems == (
        (
            "a recall of another agency's bulletin was not dead-lettered, "
            "not dead-lettered recall_not_originator"
        ),
    )
    # The originator's own topic with the same key is not the impostor's record.
    books.on_dead_letter(key, "recall_unknown", "enlace.outbound.o")
    assert not books.verdict().ok
    books.on_dead_letter(key, "recall_not_originator", topic)
    assert books.verdict().ok


def test_lifecycle_lines_say_what_happened() -> None:
    books = Books(len(PARTNERS))
    watch = LifecycleWatch("o", "o", "imp")
    assert watch.lines(books) == [
        "recall: o recalls one of its bulletins (not yet)",
        "re-released when trust is earned (o's): none yet",
    ]
    routed(books, BID, "FULL", "TEARLINE", "WITHHELD")
    watch.showcase_id = BID
    watch.on_recall_sent(24.04, BID, "r-1")
    watch.impostor_sent = True
    books.on_audit(BID, "p2", "FULL", "rerelease_full")
    watch.on_rerelease(30.0, ("o", "p2"), BID, "FULL", 0.6123)
    watch.on_rerelease(31.0, ("o", "p2"), "b-2", "FULL", 0.62)  # same pair: no second line
    books.on_audit(BID, "p1", "RECALLED", "recall_forwarded")
    books.on_recall_delivery(BID, "p1")
    books.on_refused_recall("t", BID.encode(), "recall_not_originator")
    books.on_dead_letter(BID.encode(), "recall_not_originator", "t")
    assert watch.lines(books) == [
        (
            "o's CONFIDENTIAL bulletin b-1 (tearline RESTRICTED): FULL 1, TEARLINE 1, WITHHELD 1; "
            "later: p2 FULL"
        ),
        "recall: o withdrew b-1 at 24.0s: forwarded to 1/2 holders, received by 1",
        "imp tried to recall it too: dead-lettered recall_not_originator",
        (
            "re-released when trust is earned: 1 (FULL 1, TEARLINE 0) of 1 bulletin-partner "
            "pair(s), to p2"
        ),
    ]
    assert watch.events == [
        " 24.0s  o recalls its bulletin b-1",
        " 30.0s  o → p2: trust earned, score 0.61, re-released b-1 FULL",
    ]
    assert watch.rereleases[("o", "p2")] == 2


def test_story_plans_the_lifecycle_with_three_different_agencies() -> None:
    agencies = ("co-ponal", "cr-msp", "pa-senafront", "us-jiatfs")
    story = plan(agencies, seconds=60, rate=5, seed=3)
    assert (story.rerelease_originator, story.recall_originator, story.recall_impostor) == (
        "co-ponal",
        "pa-senafront",
        "cr-msp",
    )
    assert story.showcase_at == 1.0
    assert story.recall_at == 24.0
    other = plan(("aa-one", "bb-two", "cc-three"), seconds=10, rate=5, seed=3)
    names = {other.rerelease_originator, other.recall_originator, other.recall_impostor}
    assert len(names) == 3
    assert other.showcase_at == 1.0


def test_demo_policy_switches_rerelease_on_for_one_originator(tmp_path: Path) -> None:
    path = write_demo_policy(DEFAULT_POLICY, tmp_path / "policy.yaml", "co-ponal")
    policy = Policy.load(path)
    assert policy.rerelease_enabled("co-ponal")
    assert not policy.rerelease_enabled("us-jiatfs")
    original = Policy.load(DEFAULT_POLICY)
    assert policy.overrides["cr-msp"] == original.overrides["cr-msp"]
    assert policy.thresholds == original.thresholds


def test_demo_policy_keeps_an_originators_own_choice(tmp_path: Path) -> None:
    source = tmp_path / "given.yaml"
    source.write_text("version: 1\noverrides:\n  co-ponal: {rerelease: false}\n")
    policy = Policy.load(write_demo_policy(source, tmp_path / "out.yaml", "co-ponal"))
    assert not policy.rerelease_enabled("co-ponal")
    source.write_text("- a list\n")
    with pytest.raises(PolicyError, match="top level must be a mapping"):
        write_demo_policy(source, tmp_path / "bad.yaml", "co-ponal")
