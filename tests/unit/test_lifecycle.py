"""The lifecycle's pure decisions: replay-index entries v2, recall judgement and admission,
and which entries are due a release when trust is earned."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import lifecycle
from broker.admission import Limits, Refused
from broker.policy import AgreementLevel, Policy, Prior
from broker.release import ReleaseDecision, Rule
from broker.replay import (
    Held,
    PartnerHold,
    Route,
    SeenEntry,
    SeenIndex,
    decode_entry,
    encode_entry,
    seen_key,
)
from broker.trust import TrustScore
from schemas import headers as hdr
from schemas.agency_key import AgencyKey
from schemas.key_directory import KeyDirectory
from schemas.recall import BulletinRecall, seal_recall
from schemas.vocab import Classification, ReleaseKind, Tlp

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PA, US, CR = "pa-senafront", "us-jiatfs", "cr-msp"

agency_ids = st.from_regex(r"[a-z]{2}-[a-z]{2,8}", fullmatch=True)
holds = st.builds(PartnerHold, agency_ids, st.sampled_from(list(Held)), st.booleans())
routes = st.builds(
    Route,
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**63 - 1),
    st.one_of(st.none(), st.integers(1, 2**62)),
    st.sampled_from([c.value for c in Classification]),
    st.sampled_from([c.value for c in Classification]),
    st.lists(holds, max_size=12).map(tuple),
    st.booleans(),
)
entries = st.builds(
    SeenEntry,
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**62),
    st.one_of(st.none(), routes),
)


@given(entries)
def test_entries_of_both_versions_round_trip(entry: SeenEntry) -> None:
    raw = encode_entry(entry)
    assert decode_entry(raw) == entry
    if entry.route is None:
        assert len(raw) == 40, "version 1 stays byte-identical"


@given(st.binary(max_size=200))
def test_bytes_no_router_wrote_never_decode_silently_wrong(raw: bytes) -> None:
    try:
        entry = decode_entry(raw)
    except (ValueError, struct.error):
        return
    assert encode_entry(entry) == raw


def entry(*holds_: PartnerHold, recalled: bool = False, valid_until: datetime | None = None,
          first_seen: datetime = NOW) -> SeenEntry:  # fmt: skip
    until = int(valid_until.timestamp() * 1000) if valid_until else None
    route = Route(0, 7, until, "CONFIDENTIAL", "UNCLASSIFIED", holds_, recalled)
    return SeenEntry(b"\x01" * 32, int(first_seen.timestamp() * 1000), route)


class Scores:
    def __init__(self, **values: float) -> None:
        self.values = values

    def score(self, originator: str, partner: str, policy: Policy, now: datetime) -> TrustScore:
        del policy
        value = self.values.get(partner.split("-", maxsplit=1)[0], 0.5)
        prior = Prior(AgreementLevel.STANDARD, 0.5, 1.0)
        return TrustScore(originator, partner, value, value, 1 - value, prior, now)


def test_only_partners_whose_score_reaches_the_next_level_are_due() -> None:
    policy = Policy()
    candidates = [
        (b"a", entry(PartnerHold(CR, Held.TEARLINE, upgradable=True))),  # needs 0.6
        (b"b", entry(PartnerHold(US, Held.NOTHING, upgradable=True))),  # needs 0.0
        (b"c", entry(PartnerHold(CR, Held.NOTHING, upgradable=False))),  # rule-withheld
        (b"d", entry(PartnerHold(CR, Held.TEARLINE, upgradable=True), recalled=True)),
        (
            b"e",
            entry(
                PartnerHold(CR, Held.TEARLINE, upgradable=True),
                valid_until=NOW - timedelta(seconds=1),
            ),
        ),
        (
            b"f",
            entry(
                PartnerHold(CR, Held.TEARLINE, upgradable=True), first_seen=NOW - timedelta(days=8)
            ),
        ),
    ]
    low, _ = lifecycle.due(PA, candidates, Scores(cr=0.59, us=0.0), policy, NOW, limit=10)
    assert [(d.key, d.partners) for d in low] == [(b"b", (US,))]
    high, expired = lifecycle.due(PA, candidates, Scores(cr=0.6, us=0.0), policy, NOW, limit=10)
    assert [(d.key, d.partners) for d in high] == [(b"a", (CR,)), (b"b", (US,))]
    assert expired == [b"e", b"f"], "past valid_until, and past the 7-day horizon"
    capped, _ = lifecycle.due(PA, candidates, Scores(cr=0.6, us=0.0), policy, NOW, limit=1)
    assert [d.key for d in capped] == [b"a"]


def decision(partner: str, kind: ReleaseKind, rule: Rule) -> ReleaseDecision:
    return ReleaseDecision("b", partner, kind, rule, "", None, Tlp.GREEN, frozenset())


def test_only_a_score_rule_releasing_more_upgrades_a_hold() -> None:
    route = entry(PartnerHold(CR, Held.TEARLINE, upgradable=True),
                  PartnerHold(US, Held.NOTHING, upgradable=False)).route  # fmt: skip
    assert route is not None
    full = lifecycle.upgraded(route, decision(CR, ReleaseKind.FULL, Rule.SCORE_FULL))
    assert full == PartnerHold(CR, Held.FULL, upgradable=False)
    assert (
        lifecycle.upgraded(route, decision(CR, ReleaseKind.TEARLINE, Rule.SCORE_TEARLINE)) is None
    )
    assert lifecycle.upgraded(route, decision(CR, ReleaseKind.FULL, Rule.OVERRIDE_ALLOW)) is None
    assert lifecycle.upgraded(route, decision(US, ReleaseKind.FULL, Rule.SCORE_FULL)) is None


def admitted_recall(key: AgencyKey, bulletin_id: str) -> lifecycle.AdmittedRecall:
    recall = BulletinRecall.new(key.agency, bulletin_id, "burned", NOW)
    sealed = seal_recall(recall, key)
    return lifecycle.AdmittedRecall(recall, sealed.value, hdr.SignedHeaders.parse(sealed.headers))


def test_a_recall_is_judged_against_the_bulletins_entry() -> None:
    key = AgencyKey.generate(PA)
    bulletin_id = str(uuid.uuid4())
    recall = admitted_recall(key, bulletin_id)
    held = entry(PartnerHold(US, Held.FULL), PartnerHold(CR, Held.TEARLINE, upgradable=True),
                 PartnerHold("mx-sedena", Held.NOTHING))  # fmt: skip

    judged = lifecycle.judge_recall(recall, held, PA)
    assert [h.partner for h in judged.recipients] == [US, CR], "full and tearline, no one else"
    assert judged.entry is not None
    assert judged.entry.route is not None
    assert judged.entry.route.recalled
    assert judged.entry.route.upgradable == ()
    assert lifecycle.judge_recall(recall, judged.entry, PA).duplicate

    unknown = lifecycle.judge_recall(recall, None, None).refused
    foreign = lifecycle.judge_recall(recall, None, US).refused
    v1 = lifecycle.judge_recall(recall, SeenEntry(b"\x01" * 32, 0), PA).refused
    assert unknown is not None
    assert unknown.reason == "recall_unknown"
    assert foreign is not None
    assert foreign.reason == "recall_not_originator"
    assert v1 is not None
    assert v1.reason == "recall_unknown"


@pytest.mark.parametrize(
    ("topic_agency", "signer", "at", "reason"),
    [
        (US, PA, NOW, "forged_origin"),
        (PA, US, NOW, "key_not_of_agency"),
        (PA, PA, NOW + timedelta(minutes=10), "clock_skew"),
        (PA, PA, NOW - timedelta(days=8), "clock_skew"),
    ],
)
def test_recall_admission_refuses_like_a_bulletins(
    topic_agency: str, signer: str, at: datetime, reason: str
) -> None:
    pa = AgencyKey.generate(PA, valid_from=NOW - timedelta(days=30))
    us = AgencyKey.generate(US, valid_from=NOW - timedelta(days=30))
    keys = KeyDirectory.from_keys([pa, us])
    recall = BulletinRecall.new(PA, str(uuid.uuid4()), "burned", at)
    sealed = seal_recall(recall, pa)
    headers = sealed.headers
    if signer != PA:
        headers = hdr.build(origin=PA, key_id=us.key_id, sig=us.sign(sealed.value))
    result = lifecycle.admit_recall(
        topic_agency, sealed.value, headers, keys=keys, limits=Limits(), received_at=NOW, now=NOW
    )
    assert isinstance(result, Refused)
    assert result.reason == reason
    ok = lifecycle.admit_recall(
        PA, seal_recall(BulletinRecall.new(PA, str(uuid.uuid4()), "x", NOW), pa).value,
        seal_recall(BulletinRecall.new(PA, str(uuid.uuid4()), "x", NOW), pa).headers,
        keys=keys, limits=Limits(), received_at=NOW, now=NOW,
    )  # fmt: skip
    assert isinstance(ok, Refused)
    assert ok.reason == "bad_signature", "headers of another recall"


def test_the_index_keeps_upgradable_entries_per_partition_and_forgets_them() -> None:
    index = SeenIndex(timedelta(days=7))
    key = seen_key(PA, str(uuid.uuid4()))
    index.load(key, entry(PartnerHold(CR, Held.TEARLINE, upgradable=True)))
    assert [k for k, _ in index.upgradable(PA, 0)] == [key]
    assert index.upgradable(PA, 1) == []
    assert index.upgradable(US, 0) == []
    assert index.origin_of(key.decode().split("/")[1], {}) == PA
    index.forget_upgrades(key)
    assert index.upgradable(PA, 0) == []
    index.load(key, entry(PartnerHold(CR, Held.FULL)))
    assert index.upgradable(PA, 0) == []
