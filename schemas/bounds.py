"""Bounded pre-scan of an Avro binary body before fastavro reads it.

fastavro trusts declared lengths: a string or array that claims 2^60 elements makes it try to
allocate or loop that much. Every declared length must fit in the bytes that remain, and an
item count cannot exceed the remaining bytes times what one item needs at least, so walking the
body once against the writer schema, checking only that, bounds the later decode by the record
size. The walk also refuses trailing bytes and out-of-range enum and union indexes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from enlace.core.errors import CorruptRecord, TruncatedRecord

MAX_DEPTH = 64
ZERO_WIDTH_ALLOWANCE = 1024
_FIXED_WIDTH = {"null": 0, "boolean": 1, "float": 4, "double": 8}
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class Node:
    """A writer-schema node with named references resolved and its minimum encoded size."""

    __slots__ = ("branches", "fields", "items", "kind", "min_size", "size", "symbols")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.min_size = 0
        self.size = 0
        self.symbols = 0
        self.items: Node | None = None
        self.branches: tuple[Node, ...] = ()
        self.fields: tuple[Node, ...] = ()


def compile_schema(schema: Any) -> Node:
    """Turn a (JSON) Avro schema into a tree of :class:`Node` for :func:`check_body`."""
    named: dict[str, Node] = {}
    root = _compile(schema, "", named)
    _fill_min_sizes(root, set())
    return root


def _full_name(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _compile(schema: Any, namespace: str, named: dict[str, Node]) -> Node:
    if isinstance(schema, list):
        node = Node("union")
        node.branches = tuple(_compile(branch, namespace, named) for branch in schema)
        return node
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return Node(schema)
        found = named.get(_full_name(schema, namespace)) or named.get(schema)
        if found is None:
            raise ValueError(f"unknown named type {schema!r}")
        return found
    kind = schema["type"]
    if kind in _PRIMITIVES or not isinstance(kind, str):
        return _compile(kind, namespace, named)
    node = Node(kind)
    if kind in {"record", "error", "enum", "fixed"}:
        full = _full_name(schema["name"], schema.get("namespace", namespace))
        named[full] = node
        named.setdefault(full.rsplit(".", 1)[-1], node)
        namespace = full.rsplit(".", 1)[0] if "." in full else ""
    if kind in {"record", "error"}:
        node.kind = "record"
        node.fields = tuple(_compile(f["type"], namespace, named) for f in schema["fields"])
    elif kind == "enum":
        node.symbols = len(schema["symbols"])
    elif kind == "fixed":
        node.size = int(schema["size"])
    elif kind == "array":
        node.items = _compile(schema["items"], namespace, named)
    elif kind == "map":
        node.items = _compile(schema["values"], namespace, named)
    else:
        raise ValueError(f"unknown Avro type {kind!r}")
    return node


def _fill_min_sizes(node: Node, seen: set[int]) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    for child in (*node.fields, *node.branches, *((node.items,) if node.items else ())):
        _fill_min_sizes(child, seen)
    if node.kind in _FIXED_WIDTH:
        node.min_size = _FIXED_WIDTH[node.kind]
    elif node.kind == "fixed":
        node.min_size = node.size
    elif node.kind == "record":
        # A recursive record's own size is still being computed (0 then): an underestimate,
        # which only makes the bound looser, never wrong.
        node.min_size = sum(field.min_size for field in node.fields)
    elif node.kind == "union":
        node.min_size = 1 + min((b.min_size for b in node.branches), default=0)
    else:  # int, long, string, bytes, enum: one varint byte; array/map: one block count
        node.min_size = 1


def check_body(root: Node, body: bytes | memoryview, *, max_items: int | None = None) -> None:
    """Raise TruncatedRecord/CorruptRecord unless ``body`` is exactly one datum of ``root``.

    ``max_items`` bounds the total number of array/map items, which matters only for items
    that encode to zero bytes (every other item needs at least one byte); it defaults to the
    body length plus a small allowance.

    Runs the schema's compiled checker (:func:`compiled`): the same checks as the
    :class:`_Scan` walk, without dispatching on the node kind at every value
    (tests/unit/test_codec_bounds.py holds the two to the same verdicts).
    """
    scan = _Scan(body, len(body) + ZERO_WIDTH_ALLOWANCE if max_items is None else max_items)
    compiled(root)(scan, 0)
    if scan.pos != len(body):
        raise CorruptRecord(f"{len(body) - scan.pos} trailing bytes after the record")


def check_body_walking(
    root: Node, body: bytes | memoryview, *, max_items: int | None = None
) -> None:
    """:func:`check_body` by the generic walk: the reference the compiled checker is held to."""
    scan = _Scan(body, len(body) + ZERO_WIDTH_ALLOWANCE if max_items is None else max_items)
    scan.walk(root, 0)
    if scan.pos != len(body):
        raise CorruptRecord(f"{len(body) - scan.pos} trailing bytes after the record")


Check = Callable[["_Scan", int], None]
_COMPILED: dict[int, tuple[Node, Check]] = {}


def compiled(root: Node) -> Check:
    """The checker of ``root``, compiled once per tree (kept with its tree, so the id is
    never reused)."""
    found = _COMPILED.get(id(root))
    if found is None:
        found = _COMPILED[id(root)] = (root, _compile_check(root, {}))
    return found[1]


def _depth_guard(depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CorruptRecord(f"record nests deeper than {MAX_DEPTH}")


def _compile_check(node: Node, memo: dict[int, Check]) -> Check:  # noqa: PLR0911 - one closure per Avro type
    known = memo.get(id(node))
    if known is not None:
        return known
    kind = node.kind
    if kind == "record":
        fields: list[Check] = []

        def record(scan: _Scan, depth: int) -> None:
            _depth_guard(depth)
            for check in fields:
                check(scan, depth + 1)

        memo[id(node)] = record  # before the fields: a recursive record refers to itself
        fields.extend(_compile_check(f, memo) for f in node.fields)
        return record
    if kind == "union":
        branches: list[Check] = []

        def union(scan: _Scan, depth: int) -> None:
            _depth_guard(depth)
            index = scan.long()
            if not 0 <= index < len(branches):
                raise CorruptRecord(f"union branch {index} out of range")
            branches[index](scan, depth + 1)

        memo[id(node)] = union
        branches.extend(_compile_check(b, memo) for b in node.branches)
        return union
    if kind in {"array", "map"}:
        return _blocks_check(node, memo)
    if kind == "enum":
        return _enum_check(node.symbols)
    if kind == "fixed":
        return _width_check("fixed", node.min_size)
    return _LEAF_CHECKS.get(kind, _null_check)


def _blocks_check(node: Node, memo: dict[int, Check]) -> Check:
    """:meth:`_Scan.blocks` with the item's compiled checker."""
    assert node.items is not None
    kind = node.kind
    is_map = kind == "map"
    per_item = node.items.min_size + (1 if is_map else 0)
    items: list[Check] = []
    key_check = _LEAF_CHECKS["string"]

    def blocks(scan: _Scan, depth: int) -> None:
        _depth_guard(depth)
        item = items[0]
        while True:
            count = scan.long()
            if count == 0:
                return
            if count < 0:
                count = -count
                size = scan.long()
                if size < 0:
                    raise CorruptRecord(f"negative {kind} block size")
                scan.need(size, f"{kind} block")
            scan.need(count * per_item, f"{kind} of {count} items")
            scan.items_left -= count
            if scan.items_left < 0:
                raise CorruptRecord(f"{kind} declares more items than the record can hold")
            for _ in range(count):
                if is_map:
                    key_check(scan, depth + 1)
                item(scan, depth + 1)

    memo[id(node)] = blocks
    items.append(_compile_check(node.items, memo))
    return blocks


def _null_check(_scan: _Scan, depth: int) -> None:
    _depth_guard(depth)


def _long_check(scan: _Scan, depth: int) -> None:
    _depth_guard(depth)
    scan.long()


def _int_check(scan: _Scan, depth: int) -> None:
    _depth_guard(depth)
    if not -(2**31) <= scan.long() < 2**31:
        raise CorruptRecord("int out of the 32-bit range")


def _sized_check(kind: str) -> Check:
    def sized(scan: _Scan, depth: int) -> None:
        _depth_guard(depth)
        length = scan.long()
        if length < 0:
            raise CorruptRecord(f"negative {kind} length {length}")
        scan.need(length, kind)
        scan.pos += length

    return sized


def _boolean_check(scan: _Scan, depth: int) -> None:
    _depth_guard(depth)
    scan.need(1, "boolean")
    if scan.body[scan.pos] > 1:
        raise CorruptRecord("boolean byte is neither 0 nor 1")
    scan.pos += 1


def _width_check(kind: str, width: int) -> Check:
    def fixed_width(scan: _Scan, depth: int) -> None:
        _depth_guard(depth)
        scan.need(width, kind)
        scan.pos += width

    return fixed_width


def _enum_check(symbols: int) -> Check:
    def enum(scan: _Scan, depth: int) -> None:
        _depth_guard(depth)
        index = scan.long()
        if not 0 <= index < symbols:
            raise CorruptRecord(f"enum index {index} out of range 0..{symbols - 1}")

    return enum


_LEAF_CHECKS: dict[str, Check] = {
    "null": _null_check,
    "int": _int_check,
    "long": _long_check,
    "string": _sized_check("string"),
    "bytes": _sized_check("bytes"),
    "boolean": _boolean_check,
    "float": _width_check("float", 4),
    "double": _width_check("double", 8),
}


class _Scan:
    def __init__(self, body: bytes | memoryview, max_items: int) -> None:
        self.body = bytes(body)
        self.pos = 0
        self.items_left = max_items

    def need(self, count: int, what: str) -> None:
        if count > len(self.body) - self.pos:
            raise TruncatedRecord(
                f"{what} declares {count} bytes but {len(self.body) - self.pos} remain"
            )

    def long(self) -> int:
        body, pos = self.body, self.pos
        if pos < len(body) and body[pos] < 0x80:
            # One byte (most lengths, counts and indexes): no loop.
            self.pos = pos + 1
            byte = body[pos]
            return (byte >> 1) ^ -(byte & 1)
        result = 0
        shift = 0
        while True:
            if self.pos >= len(body):
                raise TruncatedRecord("record ends inside a number")
            byte = body[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift >= 70:
                raise CorruptRecord("varint longer than 10 bytes")
        value = (result >> 1) ^ -(result & 1)
        if not -(2**63) <= value < 2**63:
            raise CorruptRecord("varint out of the 64-bit range")
        return value

    def walk(self, node: Node, depth: int) -> None:  # noqa: PLR0912 - one branch per Avro type
        if depth > MAX_DEPTH:
            raise CorruptRecord(f"record nests deeper than {MAX_DEPTH}")
        kind = node.kind
        if kind == "record":
            for field in node.fields:
                self.walk(field, depth + 1)
        elif kind in {"int", "long"}:
            value = self.long()
            if kind == "int" and not -(2**31) <= value < 2**31:
                raise CorruptRecord("int out of the 32-bit range")
        elif kind in {"string", "bytes"}:
            length = self.long()
            if length < 0:
                raise CorruptRecord(f"negative {kind} length {length}")
            self.need(length, kind)
            self.pos += length
        elif kind == "boolean":
            self.need(1, kind)
            if self.body[self.pos] > 1:
                raise CorruptRecord("boolean byte is neither 0 nor 1")
            self.pos += 1
        elif kind in {"float", "double", "fixed"}:
            self.need(node.min_size, kind)
            self.pos += node.min_size
        elif kind == "enum":
            index = self.long()
            if not 0 <= index < node.symbols:
                raise CorruptRecord(f"enum index {index} out of range 0..{node.symbols - 1}")
        elif kind == "union":
            index = self.long()
            if not 0 <= index < len(node.branches):
                raise CorruptRecord(f"union branch {index} out of range")
            self.walk(node.branches[index], depth + 1)
        elif kind in {"array", "map"}:
            self.blocks(node, depth)
        # "null" takes no bytes.

    def blocks(self, node: Node, depth: int) -> None:
        assert node.items is not None
        per_item = node.items.min_size + (1 if node.kind == "map" else 0)
        while True:
            count = self.long()
            if count == 0:
                return
            if count < 0:
                count = -count
                size = self.long()
                if size < 0:
                    raise CorruptRecord(f"negative {node.kind} block size")
                self.need(size, f"{node.kind} block")
            self.need(count * per_item, f"{node.kind} of {count} items")
            self.items_left -= count
            if self.items_left < 0:
                raise CorruptRecord(f"{node.kind} declares more items than the record can hold")
            for _ in range(count):
                if node.kind == "map":
                    self.walk(_STRING, depth + 1)
                self.walk(node.items, depth + 1)


_STRING = Node("string")
_STRING.min_size = 1
