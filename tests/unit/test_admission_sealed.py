"""Wire format 2 through the router's pure path: admitted on the envelope alone, released
only to partners the originator sealed for, each feed record opening for its partner only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from broker.admission import Admitted, Limits, Refused, admit
from broker.outputs import release_record
from broker.policy import Policy
from broker.release import Partner, ReleaseSubject, Rule, decide
from broker.trust import TrustScore
from schemas import headers as hdr
from schemas.agency_key import AgencyKey
from schemas.envelope import Sealed
from schemas.key_directory import KeyDirectory
from schemas.projection import tearline
from schemas.sealed import open_release, recipients_of, seal_sealed
from schemas.sealing import FULL, BoxCache
from schemas.vocab import ReleaseKind
from tests.samples import sample_bulletin

NOW = datetime.now(UTC).replace(microsecond=0)
PA, CR, US = "pa-senafront", "cr-msp", "us-jiatfs"
KEYS = {a: AgencyKey.generate(a, valid_from=NOW - timedelta(days=30)) for a in (PA, CR, US)}
DIRECTORY = KeyDirectory.from_keys(KEYS.values())
LIMITS = Limits(max_record_bytes=50_000)
POLICY = Policy()


def pinned(partner: str, value: float) -> TrustScore:
    prior = POLICY.agreement(PA, partner).prior
    return TrustScore(PA, partner, value, value * 10, (1 - value) * 10, prior, NOW)


def sealed_v2(*partners: str, **overrides: object) -> Sealed:
    bulletin = sample_bulletin(PA, **{"issued_at": NOW, **overrides})
    return seal_sealed(
        bulletin, KEYS[PA], recipients_of(DIRECTORY, partners, NOW), boxes=BoxCache()
    )


def run(value: bytes, headers: list[tuple[str, bytes]], agency: str = PA) -> Admitted | Refused:
    return admit(agency, value, headers, keys=DIRECTORY, limits=LIMITS, received_at=NOW, now=NOW)


def test_a_sealed_bulletin_is_admitted_on_its_envelope_and_released_sealed() -> None:
    record = sealed_v2(CR, US)
    result = run(record.value, record.headers)
    assert isinstance(result, Admitted)
    assert result.sealed is not None
    assert set(result.sealed.wraps) == {CR, US}
    subject = ReleaseSubject.of(result.bulletin, sealed_for=frozenset(result.sealed.wraps))
    decision = decide(subject, Partner(CR, "CR"), pinned(CR, 0.99), POLICY, NOW)
    assert decision.kind is ReleaseKind.FULL, decision
    out = release_record(result, decision)
    opened = open_release(
        out.value, list(out.headers), directory=DIRECTORY, own=KEYS[CR], boxes=BoxCache()
    )
    bulletin, level = opened.bulletin, opened.level
    assert level == FULL
    assert bulletin.bulletin_id == result.bulletin.bulletin_id
    assert hdr.text(out.headers, hdr.RELEASE) == hdr.RELEASE_FULL
    assert bulletin.title.encode() not in out.value


def test_a_partner_not_sealed_for_is_withheld_with_its_own_rule() -> None:
    record = sealed_v2(US)
    result = run(record.value, record.headers)
    assert isinstance(result, Admitted)
    assert result.sealed is not None
    subject = ReleaseSubject.of(result.bulletin, sealed_for=frozenset(result.sealed.wraps))
    decision = decide(subject, Partner(CR, "CR"), pinned(CR, 0.99), POLICY, NOW)
    assert decision.kind is ReleaseKind.WITHHELD
    assert decision.rule is Rule.NOT_SEALED_FOR


def test_sealed_records_are_refused_like_plain_ones() -> None:
    record = sealed_v2(CR)
    flipped = bytearray(record.value)
    flipped[-5] ^= 1  # inside the last wrap, which enlace-sig does not cover: but see below
    tampered_envelope = bytearray(record.value)
    tampered_envelope[40] ^= 1
    future = sealed_v2(CR, issued_at=NOW + timedelta(hours=1))
    results = {
        "wrong topic": run(record.value, record.headers, agency=CR),
        "envelope byte": run(bytes(tampered_envelope), record.headers),
        "other signer": run(
            record.value,
            hdr.build(origin=PA, key_id=KEYS[PA].key_id, sig=KEYS[US].sign(b"x")),
        ),
        "future": run(future.value, future.headers),
    }
    reasons = {k: v.reason if isinstance(v, Refused) else "admitted" for k, v in results.items()}
    assert reasons["wrong topic"] == "forged_origin"
    assert reasons["envelope byte"] in {"bad_signature", "corrupt", "invalid", "truncated"}
    assert reasons["other signer"] == "bad_signature"
    assert reasons["future"] == "clock_skew"
    # A tampered wrap passes the router (it cannot tell) and fails at the partner.
    result = run(bytes(flipped), record.headers)
    assert isinstance(result, Admitted)


TEARLINE_SCORE = 0.5


def test_a_tearline_release_opens_as_the_tearline() -> None:
    record = sealed_v2(CR)
    result = run(record.value, record.headers)
    assert isinstance(result, Admitted)
    subject = ReleaseSubject.of(result.bulletin, sealed_for=frozenset({CR}))
    decision = decide(subject, Partner(CR, "CR"), pinned(CR, TEARLINE_SCORE), POLICY, NOW)
    assert decision.kind is ReleaseKind.TEARLINE, decision
    out = release_record(result, decision)
    opened = open_release(
        out.value, list(out.headers), directory=DIRECTORY, own=KEYS[CR], boxes=BoxCache()
    )
    bulletin, level = opened.bulletin, opened.level
    assert bulletin == tearline(bulletin)
    assert level == "TEARLINE"
