"""Bounded decoding: crafted bytes that declare more than they hold are refused before fastavro
allocates anything, and no mutation of a valid record escapes as anything but a typed error."""

from __future__ import annotations

import contextlib
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enlace.core.errors import CodecError, CorruptRecord, TruncatedRecord, ValidationError
from schemas.bounds import MAX_DEPTH, check_body, compile_schema
from schemas.catalog import Catalog, SchemaVersion
from schemas.codec import HEADER_SIZE, MAGIC, decode, decode_bulletin, encode_bulletin
from tests.samples import fixed_bulletin
from tests.unit.test_admission_sealed import CR, US, sealed_v2

SMALL: dict[str, Any] = {
    "type": "record",
    "name": "Small",
    "namespace": "enlace.test",
    "doc": "d",
    "fields": [
        {"name": "s", "type": "string", "doc": "d"},
        {"name": "a", "type": {"type": "array", "items": "long"}, "doc": "d"},
        {
            "name": "e",
            "type": {
                "type": "enum",
                "name": "E",
                "doc": "d",
                "symbols": ["X", "Y"],
                "default": "X",
            },
            "doc": "d",
        },
        {"name": "u", "type": ["null", "string"], "default": None, "doc": "d"},
        {"name": "b", "type": "boolean", "doc": "d"},
    ],
}


def varint(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = zigzag & 0x7F
        zigzag >>= 7
        if zigzag:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def small_body(
    s: bytes = varint(2) + b"hi",
    a: bytes = varint(1) + varint(7) + varint(0),
    e: bytes = varint(1),
    u: bytes = varint(1) + varint(1) + b"z",
    b: bytes = b"\x01",
) -> bytes:
    return s + a + e + u + b


@pytest.fixture(scope="module")
def small() -> Catalog:
    return Catalog([SchemaVersion.from_json(SMALL, 1, "small")])


def small_record(catalog: Catalog, body: bytes) -> bytes:
    return MAGIC + catalog.latest("Small").fingerprint + body


def test_well_formed_small_record(small: Catalog) -> None:
    datum = decode(small_record(small, small_body()), "Small", catalog=small)
    assert datum == {"s": "hi", "a": [7], "e": "Y", "u": "z", "b": True}


@pytest.mark.parametrize(
    ("body", "error", "match"),
    [
        (small_body(s=varint(2**60) + b"hi"), TruncatedRecord, "string declares"),
        (small_body(s=varint(-5)), CorruptRecord, "negative string length"),
        (small_body(a=varint(2**40) + varint(1)), TruncatedRecord, "array of"),
        (small_body(a=varint(-3) + varint(2**50)), TruncatedRecord, "array block"),
        (small_body(a=varint(-1) + varint(-1)), CorruptRecord, "negative array block size"),
        (small_body(e=varint(2)), CorruptRecord, "enum index"),
        (small_body(e=varint(-1)), CorruptRecord, "enum index"),
        (small_body(u=varint(2)), CorruptRecord, "union branch"),
        (small_body(b=b"\x02"), CorruptRecord, "boolean"),
        (small_body(s=b"\xff" * 11), CorruptRecord, "varint longer"),
        (small_body(b=b""), TruncatedRecord, "declares 1 bytes"),
        (small_body() + b"\x00", CorruptRecord, "trailing"),
        (small_body(s=varint(2) + b"\xff\xfe"), CorruptRecord, "does not decode"),
    ],
)
def test_crafted_bodies_are_refused(
    small: Catalog, body: bytes, error: type[CodecError], match: str
) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(error, match=match):
            decode(small_record(small, body), "Small", catalog=small)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, "refused up front, not after a huge allocation"


def test_huge_declared_title_in_a_real_bulletin() -> None:
    data = encode_bulletin(fixed_bulletin())
    # bulletin_id is the first field: replace its length prefix (36) with 2^62.
    assert data[HEADER_SIZE] == 72  # zigzag(36)
    crafted = data[:HEADER_SIZE] + varint(2**62) + data[HEADER_SIZE + 1 :]
    with pytest.raises(TruncatedRecord):
        decode_bulletin(crafted)


def test_zero_width_items_are_bounded_by_count() -> None:
    nulls = compile_schema({"type": "array", "items": "null"})
    check_body(nulls, varint(3) + varint(0))
    with pytest.raises(CorruptRecord, match="more items"):
        check_body(nulls, varint(2**62) + varint(0))


def test_nesting_depth_is_bounded() -> None:
    linked = compile_schema(
        {
            "type": "record",
            "name": "Node",
            "fields": [{"name": "next", "type": ["null", "Node"]}],
        }
    )
    check_body(linked, varint(1) * 10 + varint(0))
    with pytest.raises(CorruptRecord, match="deeper"):
        check_body(linked, varint(1) * (MAX_DEPTH + 5) + varint(0))


def test_map_keys_are_scanned() -> None:
    strings = compile_schema({"type": "map", "values": "string"})
    check_body(strings, varint(1) + varint(1) + b"k" + varint(1) + b"v" + varint(0))
    with pytest.raises(TruncatedRecord):
        check_body(strings, varint(1) + varint(2**40) + b"k")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutations_raise_only_typed_errors(data: st.DataObject) -> None:
    original = bytearray(encode_bulletin(fixed_bulletin()))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(original) - 1))
        original[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(original)))
    mutated = bytes(original[:cut]) if data.draw(st.booleans()) else bytes(original)
    with contextlib.suppress(CodecError, ValidationError):
        decode_bulletin(mutated)


SEALED = sealed_v2(CR, US)  # wire format 2: bytes, fixed and arrays of records


def _verdict(check: Any, tree: Any, body: bytes) -> tuple[str, str] | None:
    try:
        check(tree, body)
    except (TruncatedRecord, CorruptRecord) as exc:
        return type(exc).__name__, str(exc)
    return None


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.data())
def test_the_compiled_checker_gives_the_walks_verdict_on_any_mutation(data: st.DataObject) -> None:
    """Every schema in the catalog, a valid body of it mutated any way: the compiled checker
    passes, truncates or corrupts exactly where the generic walk does, with the same words."""
    from schemas.bounds import check_body_walking
    from schemas.codec import encode_audit, encode_trust_event
    from tests.samples import sample_audit, sample_event

    valid = {
        "ThreatBulletin": encode_bulletin(fixed_bulletin()),
        "AuditRecord": encode_audit(sample_audit()),
        "TrustEvent": encode_trust_event(sample_event()),
        "SealedBulletin": SEALED.value,
    }
    name = data.draw(st.sampled_from(sorted(valid)))
    tree = Catalog.default().latest(name).tree
    body = bytearray(valid[name][HEADER_SIZE:])
    for _ in range(data.draw(st.integers(0, 4))):
        where = data.draw(st.integers(0, max(0, len(body) - 1)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if action == "flip" and body:
            body[where] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del body[where:]
        elif action == "insert":
            body[where:where] = data.draw(st.binary(min_size=1, max_size=9))
        elif body:
            del body[where]
    raw = bytes(body)
    assert _verdict(check_body, tree, raw) == _verdict(check_body_walking, tree, raw)
