"""Wire format 2's primitives: bodies open only with their key, envelope and level; wraps
open only for their partner; digests change with any byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from enlace.core.errors import UnsealError
from schemas.sealing import (
    FULL,
    TEARLINE,
    WRAP_BYTES,
    BoxCache,
    SealedBody,
    body_aad,
    new_body_key,
    new_nonce,
    open_body,
    routing_digest,
    seal_body,
    unwrap_key,
    wrap_key,
    wrap_nonce,
)

ORIGINATOR, PARTNER, OTHER = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
SIG = bytes(range(64))


@given(st.binary(min_size=1, max_size=4096), st.binary(max_size=512))
def test_a_body_round_trips_and_opens_only_with_its_envelope_and_level(
    plaintext: bytes, envelope: bytes
) -> None:
    key = new_body_key()
    body = seal_body(plaintext, SIG, key, body_aad(envelope, FULL))
    assert plaintext not in body.ciphertext or len(plaintext) < 4
    assert open_body(body, key, body_aad(envelope, FULL)) == (SIG, plaintext)
    for wrong_key, aad in (
        (new_body_key(), body_aad(envelope, FULL)),
        (key, body_aad(envelope, TEARLINE)),  # a full body shown as the tearline
        (key, body_aad(envelope + b"x", FULL)),  # under another envelope
    ):
        with pytest.raises(UnsealError):
            open_body(body, wrong_key, aad)


@given(st.data())
def test_any_flipped_byte_of_a_sealed_body_is_caught(data: st.DataObject) -> None:
    key = new_body_key()
    aad = body_aad(b"env", TEARLINE)
    body = seal_body(b"summary of a seizure", SIG, key, aad)
    blob = bytearray(body.nonce + body.ciphertext)
    index = data.draw(st.integers(0, len(blob) - 1))
    blob[index] ^= data.draw(st.integers(1, 255))
    tampered = SealedBody(bytes(blob[:24]), bytes(blob[24:]))
    assert tampered.digest != body.digest
    with pytest.raises(UnsealError):
        open_body(tampered, key, aad)


def test_a_wrap_opens_for_its_partner_only_and_proves_the_originator() -> None:
    boxes = BoxCache()
    key, record_nonce = new_body_key(), new_nonce()
    nonce = wrap_nonce(record_nonce, "cr-msp", FULL)
    wrapped = wrap_key(boxes.box(ORIGINATOR, PARTNER.verify_key), key, nonce)
    assert len(wrapped) == WRAP_BYTES
    assert unwrap_key(boxes.box(PARTNER, ORIGINATOR.verify_key), wrapped, nonce) == key
    with pytest.raises(UnsealError):  # another agency's private key
        unwrap_key(boxes.box(OTHER, ORIGINATOR.verify_key), wrapped, nonce)
    with pytest.raises(UnsealError):  # made by someone else than the claimed originator
        unwrap_key(boxes.box(PARTNER, OTHER.verify_key), wrapped, nonce)
    with pytest.raises(UnsealError):  # the tearline slot's nonce
        unwrap_key(
            boxes.box(PARTNER, ORIGINATOR.verify_key),
            wrapped,
            wrap_nonce(record_nonce, "cr-msp", TEARLINE),
        )
    assert boxes.box(ORIGINATOR, PARTNER.verify_key) is boxes.box(ORIGINATOR, PARTNER.verify_key)


def test_wrap_nonces_differ_per_partner_level_and_record() -> None:
    record = new_nonce()
    nonces = {
        wrap_nonce(r, p, level)
        for r in (record, new_nonce())
        for p in ("cr-msp", "cr-msp2", "pa-senafront")
        for level in (FULL, TEARLINE)
    }
    assert len(nonces) == 12


def test_the_routing_digest_covers_envelope_and_both_bodies() -> None:
    full, tearline = b"f" * 32, b"t" * 32
    base = routing_digest(b"envelope", full, tearline)
    assert len({
        base,
        routing_digest(b"envelopf", full, tearline),
        routing_digest(b"envelope", tearline, full),
        routing_digest(b"envelope", full, b"u" * 32),
    }) == 4  # fmt: skip
    with pytest.raises(UnsealError):
        routing_digest(b"envelope", b"short", tearline)
