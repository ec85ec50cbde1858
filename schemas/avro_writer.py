"""A compiled Avro binary writer for datums a validated model produced.

fastavro's generic writer costs ~75 µs per sample ThreatBulletin on the 2-core bench host,
most of it checking rather than writing: it resolves each ``["null", record]`` union by
validating the datum against the branch (a recursive walk of the nested record) and calls a
logical-type hook per value, and ``strict=True`` walks the datum once more. A datum dumped
from a validated pydantic model has passed stricter rules already. This writer walks the
schema once, at compile time, into one small function per schema node, and then only writes:
the same bytes (Avro binary encoding is deterministic for these schemas; the hypothesis tests
in ``tests/unit/test_avro_writer.py`` hold it to fastavro's output byte for byte).

What a datum may hold is what ``model_dump()`` gives: nested dicts, tuples or lists for
arrays, ``str`` (``StrEnum`` members included) for strings and enum symbols, aware
``datetime`` or ``int`` for ``timestamp-millis``, ``str`` or ``uuid.UUID`` for ``uuid``.
A value of the wrong kind still fails (KeyError, TypeError, AttributeError, ValueError,
OverflowError, struct.error), it is not written as garbage; the codec turns those into a
ValidationError.

Only what the catalog's schemas use is compiled: records, enums, arrays, fixed, the
primitives, two-branch unions with ``null`` and the two logical types above. Anything else
raises :class:`UnsupportedSchema` at compile time and the caller keeps fastavro.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Emit = Callable[[bytearray, Any], None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)
_pack_double = struct.Struct("<d").pack
_pack_float = struct.Struct("<f").pack
_NULL_FIRST = b"\x00"  # zigzag(0): the union's first branch
_SECOND = b"\x02"  # zigzag(1)
# isinstance() with a tuple, not an ``X | Y`` union: the union form costs ~0.5 µs more per
# call on the bench host, paid per array and per bytes value (a ROUTED audit record with 10
# partners has 14 arrays).
_BYTES_LIKE = (bytes, bytearray, memoryview)
_NOT_ARRAYS = (str, bytes, dict)


class UnsupportedSchema(ValueError):
    """The schema uses something this writer does not compile (fastavro writes it)."""


def long_bytes(value: int) -> bytes:
    """Avro's zig-zag varint of a long (fastavro's ``write_long``)."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag & ~0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


# Lengths, counts and enum indexes are nearly always small: their encodings are looked up.
_SMALL = tuple(long_bytes(n) for n in range(1024))


def _length(value: int) -> bytes:
    return _SMALL[value] if value < 1024 else long_bytes(value)


def _checked_long(value: int, bounds: tuple[int, int]) -> bytes:
    if not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    if not bounds[0] <= value <= bounds[1]:
        raise OverflowError(f"{value} is out of range")
    return _SMALL[value] if 0 <= value < 1024 else long_bytes(value)


def _write_null(_out: bytearray, value: Any) -> None:
    if value is not None:
        raise TypeError(f"{value!r} is not null")


def _write_boolean(out: bytearray, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not a boolean")
    out += b"\x01" if value else b"\x00"


def _write_int(out: bytearray, value: Any) -> None:
    out += _checked_long(value, _INT_RANGE)


def _write_long(out: bytearray, value: Any) -> None:
    out += _checked_long(value, _LONG_RANGE)


def _write_float(out: bytearray, value: Any) -> None:
    out += _pack_float(value)


def _write_double(out: bytearray, value: Any) -> None:
    out += _pack_double(value)


def _write_bytes(out: bytearray, value: Any) -> None:
    if not isinstance(value, _BYTES_LIKE):
        raise TypeError(f"{type(value).__name__} is not bytes")
    out += _length(len(value))
    out += value


def _write_string(out: bytearray, value: Any) -> None:
    data = value.encode("utf-8")  # AttributeError for a non-str: refused, as fastavro does
    out += _length(len(data))
    out += data


def _write_uuid(out: bytearray, value: Any) -> None:
    _write_string(out, str(value) if isinstance(value, uuid.UUID) else value)


def _millis(value: Any) -> int:
    """fastavro's ``prepare_timestamp_millis`` for aware datetimes; ints pass through."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a naive datetime is not a timestamp")
        delta = value - _EPOCH
        return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"{value!r} is not a timestamp")


def _write_timestamp_millis(out: bytearray, value: Any) -> None:
    out += _checked_long(_millis(value), _LONG_RANGE)


_PRIMITIVES: dict[str, Emit] = {
    "null": _write_null,
    "boolean": _write_boolean,
    "int": _write_int,
    "long": _write_long,
    "float": _write_float,
    "double": _write_double,
    "bytes": _write_bytes,
    "string": _write_string,
}
_LOGICAL: dict[tuple[str, str], Emit] = {
    ("long", "timestamp-millis"): _write_timestamp_millis,
    ("string", "uuid"): _write_uuid,
}


class _Compiler:
    def __init__(self) -> None:
        self.named: dict[str, Emit] = {}

    def node(self, schema: Any, namespace: str) -> Emit:
        if isinstance(schema, str):
            return self.reference(schema, namespace)
        if isinstance(schema, list):
            return self.union(schema, namespace)
        if not isinstance(schema, dict):
            raise UnsupportedSchema(f"not a schema: {schema!r}")
        kind = schema.get("type")
        logical = schema.get("logicalType")
        if logical is not None:
            found = _LOGICAL.get((kind, logical)) if isinstance(kind, str) else None
            if found is None:
                raise UnsupportedSchema(f"logical type {logical!r} on {kind!r}")
            return found
        complex_kinds = {
            "record": self.record,
            "error": self.record,
            "enum": self.enum,
            "array": self.array,
            "fixed": self.fixed,
        }
        compile_kind = complex_kinds.get(kind) if isinstance(kind, str) else None
        if compile_kind is not None:
            return compile_kind(schema, namespace)
        if kind is None or kind == "map":
            raise UnsupportedSchema(f"type {kind!r}")
        return self.node(kind, namespace)  # {"type": "string"} and the like

    def reference(self, name: str, namespace: str) -> Emit:
        primitive = _PRIMITIVES.get(name)
        if primitive is not None:
            return primitive
        for candidate in (name, f"{namespace}.{name}" if namespace else name):
            if candidate in self.named:
                return self.named[candidate]
        raise UnsupportedSchema(f"unknown named type {name!r}")

    def full_name(self, schema: dict[str, Any], namespace: str) -> tuple[str, str]:
        name = str(schema["name"])
        if "." in name:
            return name, name.rsplit(".", 1)[0]
        own = str(schema.get("namespace", namespace) or "")
        return (f"{own}.{name}" if own else name), own

    def define(self, schema: dict[str, Any], namespace: str, emit: Emit) -> str:
        full, own = self.full_name(schema, namespace)
        self.named[full] = emit
        return own

    def record(self, schema: dict[str, Any], namespace: str) -> Emit:
        fields: list[tuple[str, Emit]] = []

        def write(out: bytearray, value: Any) -> None:
            for name, emit in fields:
                emit(out, value[name])

        # Defined before its fields compile, so a field may refer to the record itself.
        own = self.define(schema, namespace, write)
        fields.extend((str(f["name"]), self.node(f["type"], own)) for f in schema["fields"])
        return write

    def enum(self, schema: dict[str, Any], namespace: str) -> Emit:
        indexes = {str(symbol): _length(i) for i, symbol in enumerate(schema["symbols"])}

        def write(out: bytearray, value: Any) -> None:
            out += indexes[value]  # KeyError for a symbol the schema does not have

        self.define(schema, namespace, write)
        return write

    def fixed(self, schema: dict[str, Any], namespace: str) -> Emit:
        size = int(schema["size"])

        def write(out: bytearray, value: Any) -> None:
            if not isinstance(value, _BYTES_LIKE) or len(value) != size:
                raise ValueError(f"fixed {schema['name']} needs {size} bytes")
            out += value

        self.define(schema, namespace, write)
        return write

    def array(self, schema: dict[str, Any], namespace: str) -> Emit:
        item = self.node(schema["items"], namespace)

        def write(out: bytearray, value: Any) -> None:
            if isinstance(value, _NOT_ARRAYS):
                raise TypeError(f"{type(value).__name__} is not an array")
            count = len(value)
            if count:
                out += _length(count)
                for element in value:
                    item(out, element)
            out += b"\x00"  # the end of the blocks (one block, then a zero count)

        return write

    def union(self, branches: list[Any], namespace: str) -> Emit:
        if len(branches) != 2 or branches.count("null") != 1:
            raise UnsupportedSchema(f"union {branches!r} (only [null, X] and [X, null])")
        null_first = branches[0] == "null"
        other = self.node(branches[1] if null_first else branches[0], namespace)
        absent, present = (_NULL_FIRST, _SECOND) if null_first else (_SECOND, _NULL_FIRST)

        def write(out: bytearray, value: Any) -> None:
            if value is None:
                out += absent
            else:
                out += present
                other(out, value)

        return write


def compile_writer(schema: Any) -> Callable[[Any], bytes]:
    """A function that writes ``schema``'s Avro binary encoding of a datum (raw or
    fastavro-parsed schema). Raises UnsupportedSchema if the schema needs fastavro."""
    emit = _Compiler().node(schema, "")

    def write(datum: Any) -> bytes:
        out = bytearray()
        emit(out, datum)
        return bytes(out)

    return write


_COMPILED: dict[int, tuple[Any, Callable[[Any], bytes]]] = {}


def writer_for(parsed: Any) -> Callable[[Any], bytes]:
    """:func:`compile_writer` of a schema object, compiled once per object (the catalog
    parses each schema once; the object is kept with its writer so its id is never reused).
    Raises UnsupportedSchema like compile_writer."""
    found = _COMPILED.get(id(parsed))
    if found is None:
        found = _COMPILED[id(parsed)] = (parsed, compile_writer(parsed))
    return found[1]
