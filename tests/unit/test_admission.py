"""The router's admission checks, their order and reasons, without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broker.admission import Admitted, Limits, Refused, admit
from broker.outputs import Source, dead_letter, duplicate_audit
from broker.replay import Replay, SeenEntry, SeenIndex, decode_entry, digest_of, encode_entry
from schemas import headers as hdr
from schemas.agency_key import AgencyKey
from schemas.codec import decode_audit
from schemas.envelope import Sealed, seal
from schemas.key_directory import KeyDirectory
from tests.samples import sample_bulletin

# One clock for the whole module: admission checks issued_at against `now`, so bulletins
# made later in a long test session must not carry their own creation time.
NOW = datetime.now(UTC).replace(microsecond=0)
PA, CR = "pa-senafront", "cr-msp"
KEYS = {a: AgencyKey.generate(a, valid_from=NOW - timedelta(days=30)) for a in (PA, CR)}
DIRECTORY = KeyDirectory.from_keys(KEYS.values())
LIMITS = Limits(max_record_bytes=50_000)


def run(
    value: bytes | None, headers: list[tuple[str, bytes]], topic_agency: str = PA
) -> Admitted | Refused:
    return admit(
        topic_agency, value, headers, keys=DIRECTORY, limits=LIMITS, received_at=NOW, now=NOW
    )


def sealed(**overrides: object) -> Sealed:
    return seal(sample_bulletin(PA, **{"issued_at": NOW, **overrides}), KEYS[PA])


def reason(result: Admitted | Refused) -> str:
    assert isinstance(result, Refused), "expected a refusal"
    return result.reason


def test_a_valid_bulletin_is_admitted_with_its_tearline() -> None:
    s = sealed()
    result = run(s.value, s.headers)
    assert isinstance(result, Admitted)
    assert result.tearline_value == s.tearline_value
    assert result.bulletin.origin == PA


def test_size_is_checked_before_anything_else() -> None:
    assert reason(run(b"\xc3\x01" + b"x" * 60_000, [])) == "oversize"
    assert reason(run(b"", [])) == "empty"
    assert reason(run(None, [])) == "empty"


def test_headers_then_origin_then_key() -> None:
    s = sealed()
    assert reason(run(s.value, [])) == "bad_header"
    doubled = [*s.headers, (hdr.ORIGIN, PA.encode())]
    assert reason(run(s.value, doubled)) == "bad_header"
    assert reason(run(s.value, s.headers, topic_agency=CR)) == "forged_origin"
    cr_signed = hdr.build(origin=PA, key_id=KEYS[CR].key_id, sig=KEYS[CR].sign(s.value))
    assert reason(run(s.value, cr_signed)) == "key_not_of_agency"
    unknown = hdr.build(origin=PA, key_id="pa-nokey", sig=KEYS[PA].sign(s.value))
    assert reason(run(s.value, unknown)) == "unknown_key"


def test_tampering_is_caught_by_the_signature_before_decoding() -> None:
    s = sealed()
    tampered = bytearray(s.value)
    tampered[12] ^= 0xFF
    assert reason(run(bytes(tampered), s.headers)) == "bad_signature"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"\x00\x01" + b"z" * 40, "bad_magic"),
        (b"\xc3\x01" + b"\x00" * 8 + b"body", "unknown_fingerprint"),
    ],
)
def test_decode_failures_signed_by_the_right_key(value: bytes, expected: str) -> None:
    headers = hdr.build(origin=PA, key_id=KEYS[PA].key_id, sig=KEYS[PA].sign(value),
                        sig_tearline=KEYS[PA].sign(value))  # fmt: skip
    assert reason(run(value, headers)) == expected


def test_body_origin_must_be_the_topic_agency() -> None:
    cr_bulletin = seal(sample_bulletin(CR, issued_at=NOW), KEYS[CR])
    # Signed by CR, headed as CR, but on PA's topic: forged origin comes first.
    assert reason(run(cr_bulletin.value, cr_bulletin.headers)) == "forged_origin"
    # Signed by PA with PA's headers but a body claiming CR.
    resigned = hdr.build(origin=PA, key_id=KEYS[PA].key_id, sig=KEYS[PA].sign(cr_bulletin.value),
                         sig_tearline=KEYS[PA].sign(cr_bulletin.tearline_value))  # fmt: skip
    assert reason(run(cr_bulletin.value, resigned)) == "origin_mismatch"


def test_clock_skew_window() -> None:
    future = sealed(issued_at=NOW + timedelta(minutes=10))
    past = sealed(issued_at=NOW - timedelta(days=8))
    assert reason(run(future.value, future.headers)) == "clock_skew"
    # Eight days back is also before the key's validity? No: the key is 30 days old.
    assert reason(run(past.value, past.headers)) == "clock_skew"
    edge = sealed(issued_at=NOW + timedelta(minutes=4))
    assert isinstance(run(edge.value, edge.headers), Admitted)


def test_key_must_be_valid_when_the_bulletin_was_issued() -> None:
    young = AgencyKey.generate(PA, key_id="pa-young", valid_from=NOW - timedelta(hours=1))
    directory = KeyDirectory.from_keys([*KEYS.values(), young])
    s = seal(sample_bulletin(PA, issued_at=NOW - timedelta(days=2)), young)
    result = admit(PA, s.value, s.headers, keys=directory, limits=LIMITS, received_at=NOW, now=NOW)
    assert reason(result) == "revoked_key"


def test_a_tearline_signature_that_does_not_match_the_projection() -> None:
    s = sealed()
    wrong = hdr.build(origin=PA, key_id=KEYS[PA].key_id, sig=KEYS[PA].sign(s.value),
                      sig_tearline=KEYS[PA].sign(b"something else"))  # fmt: skip
    assert reason(run(s.value, wrong)) == "tearline_mismatch"


def test_replay_index_tells_duplicates_from_conflicts_and_stages_until_commit() -> None:
    index = SeenIndex(timedelta(days=7))
    key, digest = b"pa/1", digest_of(b"bytes")
    staged: dict[bytes, SeenEntry] = {}
    assert index.classify(key, digest, staged) is Replay.NEW
    staged[key] = SeenEntry(digest, int(NOW.timestamp() * 1000))
    assert index.classify(key, digest, staged) is Replay.DUPLICATE
    assert index.classify(key, digest_of(b"other"), staged) is Replay.CONFLICT
    assert index.classify(key, digest, {}) is Replay.NEW, "not committed yet"
    commit, _withdraw = index.hold(staged)
    commit()
    assert index.classify(key, digest, {}) is Replay.DUPLICATE
    assert decode_entry(encode_entry(staged[key])) == staged[key]
    assert index.prune(NOW + timedelta(days=8)) == 1
    assert len(index) == 0


def test_dead_letter_keeps_the_original_and_says_why() -> None:
    out = dead_letter(key=b"k", value=b"v", headers=[("enlace-origin", b"pa")],
                      source=Source("enlace.outbound.pa", 2, 41), reason="bad_signature",
                      message="x" * 5000)  # fmt: skip
    headers = dict(out.headers)
    assert out.value == b"v"
    assert out.key == b"k"
    assert headers["enlace-origin"] == b"pa"
    assert headers["enlace-dlq-reason"] == b"bad_signature"
    assert headers["enlace-dlq-offset"] == b"41"
    assert len(headers["enlace-dlq-message"]) == 1000


def test_a_writer_cannot_forge_the_dead_letter_provenance() -> None:
    forged = [("enlace-dlq-reason", b"none"), ("enlace-dlq-topic", b"enlace.receipts.other")]
    out = dead_letter(key=b"k", value=b"v", headers=[("enlace-origin", b"pa"), *forged],
                      source=Source("enlace.receipts.pa", 0, 7), reason="bad_header",
                      message="duplicated header")  # fmt: skip
    assert hdr.text(out.headers, "enlace-dlq-reason") == "bad_header"  # once, the router's
    assert hdr.text(out.headers, "enlace-dlq-topic") == "enlace.receipts.pa"
    assert hdr.text(out.headers, "enlace-origin") == "pa"


def test_duplicate_audit_names_the_origin() -> None:
    s = sealed()
    admitted = run(s.value, s.headers)
    assert isinstance(admitted, Admitted)
    audit = decode_audit(duplicate_audit(admitted, Source("t", 0, 1), NOW).value)
    assert (audit.decision, audit.rule, audit.partner) == ("DUPLICATE", "duplicate", PA)
