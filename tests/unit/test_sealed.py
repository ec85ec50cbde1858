"""Wire format 2 end to end without Kafka: only the partner a body is released to opens it,
at the level released, and every tampering is caught."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticValidationError

from enlace.core.errors import (
    BadSignature,
    CorruptRecord,
    SignatureError,
    UnsealError,
    ValidationError,
)
from schemas import headers as hdr
from schemas.bulletin import ThreatBulletin
from schemas.codec import decode, encode
from schemas.envelope import Sealed
from schemas.key_directory import KeyDirectory
from schemas.projection import tearline
from schemas.sealed import (
    SEALED_RELEASE,
    open_release,
    recipients_of,
    release_for,
    seal_sealed,
    view_sealed,
)
from schemas.sealing import FULL, TEARLINE, BoxCache
from schemas.signing import AgencyKey
from tests.samples import sample_bulletin

ORIGIN = "pa-senafront"
PARTNERS = (
    "bz-bdf", "ca-rcmp", "co-ponal", "cr-msp", "do-dncd", "sv-pnc", "us-jiatfs", "gt-pnc",
    "hn-fusina", "mx-sedena",
)  # fmt: skip
SINCE = datetime.now(UTC) - timedelta(days=30)
KEYS = {a: AgencyKey.generate(a, valid_from=SINCE) for a in (ORIGIN, *PARTNERS)}
DIRECTORY = KeyDirectory.from_keys(KEYS.values())
NOW = datetime.now(UTC)


def sealed_for(partners: tuple[str, ...] = PARTNERS) -> tuple[ThreatBulletin, Sealed]:
    bulletin = sample_bulletin(ORIGIN)
    recipients = recipients_of(DIRECTORY, partners, NOW)
    return bulletin, seal_sealed(bulletin, KEYS[ORIGIN], recipients, boxes=BoxCache())


def opened(
    value: bytes, headers: list[tuple[str, bytes]], partner: str
) -> tuple[ThreatBulletin, str]:
    result = open_release(value, headers, directory=DIRECTORY, own=KEYS[partner], boxes=BoxCache())
    return result.bulletin, result.level


def test_each_partner_opens_exactly_its_level_and_the_hub_reads_only_the_envelope() -> None:
    bulletin, sealed = sealed_for()
    view = view_sealed(sealed.value)
    DIRECTORY.verify(
        ORIGIN,
        KEYS[ORIGIN].key_id,
        view.routing_digest,
        hdr.header(sealed.headers, hdr.SIG) or b"",
        at=NOW,
    )
    assert set(view.wraps) == set(PARTNERS)
    assert view.envelope.category == bulletin.category
    for text in (bulletin.title, bulletin.summary):
        assert text.encode() not in sealed.value
    full = release_for(view, "cr-msp", FULL)
    tear = release_for(view, "us-jiatfs", TEARLINE)
    assert full is not None
    assert tear is not None
    assert opened(full, sealed.headers, "cr-msp") == (bulletin, FULL)
    assert opened(tear, sealed.headers, "us-jiatfs") == (tearline(bulletin), TEARLINE)
    assert bulletin.title.encode() not in full  # sealed on the feed too


def test_record_size_for_ten_partners_is_at_most_3_kb() -> None:
    _, sealed = sealed_for()
    assert len(sealed.value) <= 3072, len(sealed.value)


def test_a_tearline_partner_cannot_open_the_full_body_with_what_it_holds() -> None:
    _, sealed = sealed_for()
    view = view_sealed(sealed.value)
    tear = release_for(view, "us-jiatfs", TEARLINE)
    assert tear is not None
    datum = decode(tear, SEALED_RELEASE)
    # Claim the tearline wrap opens the full body: the full ciphertext is not in the record,
    # and the tearline key does not open anything presented as full.
    datum["level"] = FULL
    datum["body"] = {"nonce": view.full.nonce, "ciphertext": view.full.ciphertext}
    datum["other_digest"] = view.tearline.digest
    forged = encode(datum, SEALED_RELEASE)
    with pytest.raises(UnsealError):
        opened(forged, sealed.headers, "us-jiatfs")


def test_a_release_meant_for_another_agency_or_without_a_wrap_is_refused() -> None:
    _, sealed = sealed_for(("cr-msp",))
    view = view_sealed(sealed.value)
    assert release_for(view, "us-jiatfs", FULL) is None  # not sealed for it: nothing to release
    for_cr = release_for(view, "cr-msp", FULL)
    assert for_cr is not None
    with pytest.raises(UnsealError):
        opened(for_cr, sealed.headers, "us-jiatfs")
    # Even relabelled with the reader's own key id, the wrap opens only for cr-msp.
    datum = decode(for_cr, SEALED_RELEASE)
    datum["wrap_key_id"] = KEYS["us-jiatfs"].key_id
    with pytest.raises(UnsealError):
        opened(encode(datum, SEALED_RELEASE), sealed.headers, "us-jiatfs")


@pytest.mark.parametrize(
    "tamper",
    ["envelope", "ciphertext", "nonce", "wrap", "other_digest", "level", "headers"],
)
def test_every_tampering_is_caught(tamper: str) -> None:
    _, sealed = sealed_for()
    release = release_for(view_sealed(sealed.value), "cr-msp", FULL)
    assert release is not None
    datum = decode(release, SEALED_RELEASE)
    headers = list(sealed.headers)
    if tamper == "envelope":
        datum["envelope"]["classification"] = "UNCLASSIFIED"
        datum["envelope"]["tearline_classification"] = "UNCLASSIFIED"
    elif tamper == "ciphertext":
        ct = bytearray(datum["body"]["ciphertext"])
        ct[10] ^= 1
        datum["body"]["ciphertext"] = bytes(ct)
    elif tamper == "nonce":
        datum["body"]["nonce"] = bytes(24)
    elif tamper == "wrap":
        wrap = bytearray(datum["wrap"])
        wrap[0] ^= 1
        datum["wrap"] = bytes(wrap)
    elif tamper == "other_digest":
        datum["other_digest"] = bytes(32)
    elif tamper == "level":
        datum["level"] = TEARLINE
    else:
        other = AgencyKey.generate(ORIGIN, valid_from=SINCE)
        headers = hdr.build(origin=ORIGIN, key_id=KEYS[ORIGIN].key_id, sig=other.sign(b"x"))
    with pytest.raises((SignatureError, ValidationError)):
        opened(encode(datum, SEALED_RELEASE), headers, "cr-msp")


def test_a_body_whose_own_signature_fails_is_refused() -> None:
    bulletin = sample_bulletin(ORIGIN)
    key = KEYS[ORIGIN]

    # An originator key object whose body signatures are garbage but whose routing signature
    # is genuine: the router cannot tell; the partner can.
    class BadBodySigner(AgencyKey):
        def sign(self, data: bytes) -> bytes:
            return key.sign(data) if len(data) == 32 else bytes(64)

    liar = BadBodySigner(key.agency, key.key_id, key.signing_key, key.valid_from)
    sealed = seal_sealed(
        bulletin, liar, recipients_of(DIRECTORY, ("cr-msp",), NOW), boxes=BoxCache()
    )
    release = release_for(view_sealed(sealed.value), "cr-msp", FULL)
    assert release is not None
    with pytest.raises(BadSignature):
        opened(release, sealed.headers, "cr-msp")


def test_the_envelope_is_validated_like_the_bulletin() -> None:
    _, sealed = sealed_for(("cr-msp",))
    view = view_sealed(sealed.value)
    assert dataclasses.asdict(view)["wraps"]["cr-msp"]["key_id"] == KEYS["cr-msp"].key_id
    bad = dict(view.envelope_datum, tearline_classification="SECRET", classification="RESTRICTED")
    with pytest.raises(PydanticValidationError, match="must not be above classification"):
        type(view.envelope).from_avro(bad)


@given(st.sampled_from(PARTNERS), st.sampled_from((FULL, TEARLINE)))
@settings(max_examples=20)
def test_the_assembled_release_is_the_avro_encoding_of_its_datum(partner: str, level: str) -> None:
    _, sealed = sealed_for()
    view = view_sealed(sealed.value)
    assembled = release_for(view, partner, level)
    assert assembled is not None
    datum = decode(assembled, SEALED_RELEASE)
    assert encode(datum, SEALED_RELEASE) == assembled
    assert datum["level"] == level
    assert datum["wrap_key_id"] == KEYS[partner].key_id


@given(st.lists(st.sampled_from(PARTNERS), unique=True, max_size=len(PARTNERS)))
@settings(max_examples=20)
def test_the_assembled_sealed_bulletin_is_the_avro_encoding_of_its_datum(
    partners: list[str],
) -> None:
    _, sealed = sealed_for(tuple(partners))
    datum = decode(sealed.value, "SealedBulletin")
    assert encode(datum, "SealedBulletin") == sealed.value
    assert [w["partner"] for w in datum["wraps"]] == sorted(partners)


def test_an_envelope_that_decodes_alike_but_is_not_the_signed_bytes_is_refused() -> None:
    _, sealed = sealed_for(("cr-msp",))
    value = bytearray(sealed.value)
    uuid_start = 11  # header (10), then the bulletin id's length byte
    letter = next(i for i in range(uuid_start, uuid_start + 36) if chr(value[i]).isalpha())
    value[letter] ^= 0x20  # upper case: the same UUID once decoded
    with pytest.raises(CorruptRecord, match="canonically"):
        view_sealed(bytes(value))
    release = release_for(view_sealed(sealed.value), "cr-msp", FULL)
    assert release is not None
    altered = bytearray(release)
    altered[letter] ^= 0x20
    with pytest.raises(CorruptRecord, match="canonically"):
        opened(bytes(altered), sealed.headers, "cr-msp")
