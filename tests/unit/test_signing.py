"""Originator signatures: keys, the key directory, sealing and verification outcomes."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from enlace.core.errors import (
    BadSignature,
    ConfigError,
    HeaderError,
    KeyNotOfAgency,
    RevokedKey,
    UnknownKey,
)
from schemas import headers as hdr
from schemas.envelope import open_bulletin, open_event, seal, seal_event, tearline_value_of
from schemas.signing import AgencyKey, KeyDirectory
from tests.samples import fixed_bulletin, sample_event

T0 = datetime(2026, 1, 1, tzinfo=UTC)
AT = datetime(2026, 3, 14, 16, tzinfo=UTC)


@pytest.fixture(scope="module")
def pa_key() -> AgencyKey:
    return AgencyKey.generate("pa-senafront", valid_from=T0)


@pytest.fixture(scope="module")
def cr_key() -> AgencyKey:
    return AgencyKey.generate("cr-msp", valid_from=T0)


@pytest.fixture(scope="module")
def directory(pa_key: AgencyKey, cr_key: AgencyKey) -> KeyDirectory:
    return KeyDirectory.from_keys([pa_key, cr_key])


def test_full_and_tearline_signatures_verify(pa_key: AgencyKey, directory: KeyDirectory) -> None:
    sealed = seal(fixed_bulletin(), pa_key)
    assert sealed.key == fixed_bulletin().bulletin_id.encode()
    signed = hdr.SignedHeaders.parse(sealed.headers)
    assert (signed.origin, signed.key_id) == ("pa-senafront", pa_key.key_id)
    directory.verify("pa-senafront", pa_key.key_id, sealed.value, signed.sig, at=AT)
    assert signed.sig_tearline is not None
    directory.verify(
        "pa-senafront", pa_key.key_id, sealed.tearline_value, signed.sig_tearline, at=AT
    )
    assert tearline_value_of(sealed.value) == sealed.tearline_value
    bulletin, _ = open_bulletin(directory, sealed.value, sealed.headers, at=AT)
    assert bulletin == fixed_bulletin()
    feed_headers = [*sealed.headers, (hdr.RELEASE, b"tearline")]
    cut, _ = open_bulletin(directory, sealed.tearline_value, feed_headers, at=AT)
    assert cut.details is None
    # The router's feed convention: enlace-sig holds the signature matching the released bytes.
    router_headers = hdr.build(
        origin=signed.origin, key_id=signed.key_id, sig=signed.sig_tearline, release="tearline"
    )
    assert open_bulletin(directory, sealed.tearline_value, router_headers, at=AT)[0] == cut
    with pytest.raises(BadSignature):
        open_bulletin(directory, sealed.value, router_headers, at=AT)


def test_tampered_byte_is_detected(pa_key: AgencyKey, directory: KeyDirectory) -> None:
    sealed = seal(fixed_bulletin(), pa_key)
    sig = hdr.signature(sealed.headers)
    for index in (0, 11, len(sealed.value) // 2, len(sealed.value) - 1):
        tampered = bytearray(sealed.value)
        tampered[index] ^= 0x01
        with pytest.raises(BadSignature):
            directory.verify("pa-senafront", pa_key.key_id, bytes(tampered), sig, at=AT)


def test_wrong_key_unknown_key_and_wrong_agency(
    pa_key: AgencyKey, cr_key: AgencyKey, directory: KeyDirectory
) -> None:
    sealed = seal(fixed_bulletin(), pa_key)
    forged = cr_key.sign(sealed.value)
    with pytest.raises(BadSignature):
        directory.verify("pa-senafront", pa_key.key_id, sealed.value, forged, at=AT)
    with pytest.raises(KeyNotOfAgency):
        directory.verify("pa-senafront", cr_key.key_id, sealed.value, forged, at=AT)
    with pytest.raises(UnknownKey):
        directory.verify("pa-senafront", "nope", sealed.value, forged, at=AT)
    stranger = AgencyKey.generate("pa-senafront", valid_from=T0)
    with pytest.raises(UnknownKey):
        directory.verify("pa-senafront", stranger.key_id, sealed.value, forged, at=AT)


def test_revoked_and_out_of_window(pa_key: AgencyKey, directory: KeyDirectory) -> None:
    sealed = seal(fixed_bulletin(), pa_key)
    sig = hdr.signature(sealed.headers)
    with pytest.raises(RevokedKey, match="revoked"):
        directory.revoke(pa_key.key_id).verify(
            "pa-senafront", pa_key.key_id, sealed.value, sig, at=AT
        )
    with pytest.raises(RevokedKey, match="not valid at"):
        directory.verify("pa-senafront", pa_key.key_id, sealed.value, sig, at=T0 - timedelta(1))
    entry = {**pa_key.public_entry(), "valid_until": "2026-02-01T00:00:00Z"}
    expiring = KeyDirectory.from_keys([entry])
    expiring.verify("pa-senafront", pa_key.key_id, sealed.value, sig, at=T0 + timedelta(days=1))
    with pytest.raises(RevokedKey):
        expiring.verify("pa-senafront", pa_key.key_id, sealed.value, sig, at=AT)


def test_forged_origin_header(pa_key: AgencyKey, directory: KeyDirectory) -> None:
    sealed = seal(fixed_bulletin(), pa_key)
    forged = [(k, b"cr-msp" if k == hdr.ORIGIN else v) for k, v in sealed.headers]
    with pytest.raises(KeyNotOfAgency):
        open_bulletin(directory, sealed.value, forged, at=AT)
    doubled = [*sealed.headers, (hdr.ORIGIN, b"cr-msp")]
    with pytest.raises(HeaderError):
        open_bulletin(directory, sealed.value, doubled, at=AT)


def test_seal_refuses_another_agencys_key(cr_key: AgencyKey) -> None:
    with pytest.raises(KeyNotOfAgency):
        seal(fixed_bulletin(), cr_key)


def test_event_sealing(cr_key: AgencyKey, directory: KeyDirectory) -> None:
    event = sample_event(reporter="cr-msp", subject="pa-senafront")
    sealed = seal_event(event, cr_key)
    assert hdr.header(sealed.headers, hdr.SIG_TEARLINE) is None
    opened, signed = open_event(directory, sealed.value, sealed.headers, at=AT)
    assert opened == event
    assert signed.origin == "cr-msp"


def test_key_file_round_trip_and_permissions(tmp_path: Path, pa_key: AgencyKey) -> None:
    path = pa_key.save(tmp_path / "keys")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = AgencyKey.load(path)
    assert (loaded.agency, loaded.key_id, loaded.public_key) == (
        pa_key.agency,
        pa_key.key_id,
        pa_key.public_key,
    )
    assert loaded.sign(b"x") == pa_key.sign(b"x")  # Ed25519 is deterministic
    with pytest.raises(ConfigError, match="exists"):
        pa_key.save(tmp_path / "keys")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        AgencyKey.load(path)


def test_directory_yaml_round_trip(tmp_path: Path, directory: KeyDirectory) -> None:
    target = tmp_path / "keys.yaml"
    directory.dump(target)
    again = KeyDirectory.load(target)
    assert again.to_mapping() == directory.to_mapping()
    assert len(again) == 2


def test_directory_rejects_bad_entries(pa_key: AgencyKey) -> None:
    entry = pa_key.public_entry()
    with pytest.raises(ConfigError, match="public_key"):
        KeyDirectory.from_keys([{**entry, "public_key": "AAAA"}])
    with pytest.raises(ConfigError, match="twice"):
        KeyDirectory.from_keys([entry, entry])
    with pytest.raises(ConfigError):
        KeyDirectory.from_mapping({"pa-senafront": ["not", "a", "mapping"]})


def test_shipped_directory_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    assert len(KeyDirectory.load(root / "deploy" / "keys.yaml")) == 0


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda h: [(k, v) for k, v in h if k != hdr.KEY_ID], "enlace-key-id"),
        (lambda h: [(k, v) for k, v in h if k != hdr.ORIGIN], "enlace-origin"),
        (lambda h: [(k, v[:10] if k == hdr.SIG else v) for k, v in h], "64 bytes"),
        (lambda h: [*h, (hdr.RELEASE, b"partial")], "enlace-release"),
        (lambda h: [(k, b"\xff\xfe" if k == hdr.ORIGIN else v) for k, v in h], "ASCII"),
    ],
)
def test_header_errors(pa_key: AgencyKey, directory: KeyDirectory, mutate: Any, match: str) -> None:
    sealed = seal(fixed_bulletin(), pa_key)
    with pytest.raises(HeaderError, match=match):
        open_bulletin(directory, sealed.value, mutate(sealed.headers), at=AT)


def test_headers_round_trip(pa_key: AgencyKey) -> None:
    sealed = seal(fixed_bulletin(), pa_key)
    parsed = hdr.SignedHeaders.parse(sealed.headers)
    assert parsed.to_list() == sealed.headers
    assert [name for name, _ in sealed.headers] == [
        hdr.ORIGIN,
        hdr.KEY_ID,
        hdr.SIG,
        hdr.SIG_TEARLINE,
    ]
    assert hdr.header(sealed.headers, hdr.RELEASE) is None
    assert hdr.header(None, hdr.SIG) is None
