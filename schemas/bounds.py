"""Bounded pre-scan of an Avro binary body before fastavro reads it.

fastavro trusts declared lengths: a string or array that claims 2^60 elements makes it try to
allocate or loop that much. Every declared length must fit in the bytes that remain, and an
item count cannot exceed the remaining bytes times what one item needs at least, so walking the
body once against the writer schema, checking only that, bounds the later decode by the record
size. The walk also refuses trailing bytes and out-of-range enum and union indexes.
"""

from __future__ import annotations

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
    """
    scan = _Scan(body, len(body) + ZERO_WIDTH_ALLOWANCE if max_items is None else max_items)
    scan.walk(root, 0)
    if scan.pos != len(body):
        raise CorruptRecord(f"{len(body) - scan.pos} trailing bytes after the record")


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
        result = 0
        shift = 0
        body = self.body
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
