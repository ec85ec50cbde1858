"""Opening feed records: originator verification end to end, quarantine reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumers.records import Delivered, FeedRecord, Quarantined, Recalled, Release
from consumers.verify import open_feed_record
from schemas import headers as hdr
from schemas.codec import encode_bulletin
from schemas.envelope import seal
from schemas.key_directory import KeyDirectory
from schemas.signing import AgencyKey
from tests.feed_records import FeedMessage, feed_message
from tests.samples import sample_bulletin

NOW = datetime(2026, 6, 1, tzinfo=UTC)
VALID_FROM = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pa_key() -> AgencyKey:
    return AgencyKey.generate("pa-senafront", valid_from=VALID_FROM)


@pytest.fixture(scope="module")
def co_key() -> AgencyKey:
    return AgencyKey.generate("co-ponal", valid_from=VALID_FROM)


@pytest.fixture(scope="module")
def directory(pa_key: AgencyKey, co_key: AgencyKey) -> KeyDirectory:
    return KeyDirectory.from_keys([pa_key, co_key])


def _record(msg: FeedMessage, *, offset: int = 7) -> FeedRecord:
    return FeedRecord("enlace.feed.cr-msp", 0, offset, msg.key, msg.value, tuple(msg.headers))


def _open(record: FeedRecord, directory: KeyDirectory) -> Delivered | Quarantined | Recalled:
    return open_feed_record(record, directory, now=NOW, max_bytes=1_048_576)


def test_full_release_verifies_and_decodes(pa_key: AgencyKey, directory: KeyDirectory) -> None:
    bulletin = sample_bulletin("pa-senafront", issued_at=NOW - timedelta(minutes=5))
    result = _open(_record(feed_message(seal(bulletin, pa_key), "full")), directory)
    assert isinstance(result, Delivered)
    assert result.bulletin == bulletin
    assert result.release is Release.FULL
    assert result.key_id == pa_key.key_id
    assert result.received_at == NOW


def test_tearline_release_verifies_with_router_convention(
    pa_key: AgencyKey, directory: KeyDirectory
) -> None:
    bulletin = sample_bulletin("pa-senafront", issued_at=NOW - timedelta(minutes=5))
    result = _open(_record(feed_message(seal(bulletin, pa_key), "tearline")), directory)
    assert isinstance(result, Delivered)
    assert result.release is Release.TEARLINE
    assert result.bulletin.details is None
    assert result.bulletin.entities == ()
    assert result.bulletin.indicators == ()


def test_tearline_signature_header_is_also_accepted(
    pa_key: AgencyKey, directory: KeyDirectory
) -> None:
    # The envelope's outbound form: enlace-sig over the full value, enlace-sig-tearline over
    # the tearline. Released as tearline with both headers, the tearline one must verify.
    sealed = seal(sample_bulletin("pa-senafront", issued_at=NOW - timedelta(hours=1)), pa_key)
    headers = [*sealed.headers, (hdr.RELEASE, b"tearline")]
    record = FeedRecord("t", 0, 0, sealed.key, sealed.tearline_value, tuple(headers))
    assert isinstance(_open(record, directory), Delivered)


def test_bad_signature_is_quarantined(pa_key: AgencyKey, directory: KeyDirectory) -> None:
    msg = feed_message(seal(sample_bulletin("pa-senafront", issued_at=NOW), pa_key), "full")
    headers = [(n, bytes(64) if n == hdr.SIG else v) for n, v in msg.headers]
    result = _open(_record(FeedMessage(msg.key, msg.value, headers)), directory)
    assert isinstance(result, Quarantined)
    assert result.reason == "bad_signature"
    assert result.origin == "pa-senafront"
    assert result.bulletin_id == msg.key.decode()


def test_flipped_byte_is_quarantined(pa_key: AgencyKey, directory: KeyDirectory) -> None:
    msg = feed_message(seal(sample_bulletin("pa-senafront", issued_at=NOW), pa_key), "full")
    value = bytearray(msg.value)
    value[-3] ^= 0x01
    result = _open(_record(FeedMessage(msg.key, bytes(value), msg.headers)), directory)
    assert isinstance(result, Quarantined)
    assert result.reason in {"bad_signature", "corrupt", "invalid"}


def test_full_bytes_labelled_tearline_are_refused(
    pa_key: AgencyKey, directory: KeyDirectory
) -> None:
    sealed = seal(sample_bulletin("pa-senafront", issued_at=NOW), pa_key)
    signed = hdr.SignedHeaders.parse(sealed.headers)
    headers = hdr.build(
        origin="pa-senafront", key_id=pa_key.key_id, sig=signed.sig, release="tearline"
    )
    result = _open(_record(FeedMessage(sealed.key, sealed.value, headers)), directory)
    assert isinstance(result, Quarantined)
    assert result.reason == "tearline_not_sanitized"


def test_missing_release_header(pa_key: AgencyKey, directory: KeyDirectory) -> None:
    sealed = seal(sample_bulletin("pa-senafront", issued_at=NOW), pa_key)
    result = _open(
        FeedRecord("t", 0, 0, sealed.key, sealed.value, tuple(sealed.headers)), directory
    )
    assert isinstance(result, Quarantined)
    assert result.reason == "missing_release"


def test_forged_origin_header(pa_key: AgencyKey, directory: KeyDirectory) -> None:
    msg = feed_message(seal(sample_bulletin("pa-senafront", issued_at=NOW), pa_key), "full")
    headers = [(n, b"co-ponal" if n == hdr.ORIGIN else v) for n, v in msg.headers]
    result = _open(_record(FeedMessage(msg.key, msg.value, headers)), directory)
    assert isinstance(result, Quarantined)
    assert result.reason == "key_not_of_agency"


def test_signed_by_another_agency_claiming_origin(
    co_key: AgencyKey, directory: KeyDirectory
) -> None:
    # co-ponal signs (with its own key and headers) a bulletin that claims pa-senafront.
    bulletin = sample_bulletin("pa-senafront", issued_at=NOW)
    value = encode_bulletin(bulletin)
    headers = hdr.build(
        origin="co-ponal", key_id=co_key.key_id, sig=co_key.sign(value), release="full"
    )
    result = _open(_record(FeedMessage(bulletin.bulletin_id.encode(), value, headers)), directory)
    assert isinstance(result, Quarantined)
    assert result.reason == "origin_mismatch"


def test_unknown_and_revoked_keys(pa_key: AgencyKey, directory: KeyDirectory) -> None:
    msg = feed_message(seal(sample_bulletin("pa-senafront", issued_at=NOW), pa_key), "full")
    empty = KeyDirectory.from_keys([])
    unknown = _open(_record(msg), empty)
    assert isinstance(unknown, Quarantined)
    assert unknown.reason == "unknown_key"
    revoked = _open(_record(msg), directory.revoke(pa_key.key_id))
    assert isinstance(revoked, Quarantined)
    assert revoked.reason == "revoked_key"


def test_signature_checked_at_issued_at(pa_key: AgencyKey, directory: KeyDirectory) -> None:
    # Issued before the key's validity window: the key did not vouch for it then.
    early = sample_bulletin("pa-senafront", issued_at=VALID_FROM - timedelta(days=1))
    result = _open(_record(feed_message(seal(early, pa_key), "full")), directory)
    assert isinstance(result, Quarantined)
    assert result.reason == "revoked_key"


def test_record_key_must_be_the_bulletin_id(pa_key: AgencyKey, directory: KeyDirectory) -> None:
    msg = feed_message(seal(sample_bulletin("pa-senafront", issued_at=NOW), pa_key), "full")
    result = _open(_record(FeedMessage(b"another-id", msg.value, msg.headers)), directory)
    assert isinstance(result, Quarantined)
    assert result.reason == "key_mismatch"


@pytest.mark.parametrize(
    ("value", "reason"),
    [(b"", "bad_magic"), (b"garbage bytes", "bad_magic"), (b"\xc3\x01\x00", "truncated")],
)
def test_undecodable_values(
    pa_key: AgencyKey, directory: KeyDirectory, value: bytes, reason: str
) -> None:
    headers = hdr.build(
        origin="pa-senafront", key_id=pa_key.key_id, sig=pa_key.sign(value), release="full"
    )
    result = _open(FeedRecord("t", 0, 0, None, value, tuple(headers)), directory)
    assert isinstance(result, Quarantined)
    assert result.reason == reason


def test_missing_headers(directory: KeyDirectory) -> None:
    result = _open(FeedRecord("t", 0, 3, None, b"x", ()), directory)
    assert isinstance(result, Quarantined)
    assert result.reason == "bad_header"
    assert result.summary_json()["source"] == {"topic": "t", "partition": 0, "offset": 3}
