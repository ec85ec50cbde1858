"""Avro schema-resolution compatibility, rule by rule (Avro 1.11 spec, "Schema Resolution").

``incompatibilities(reader, writer)`` lists why data written with ``writer`` could fail to
resolve to ``reader``: an empty list means every ``writer`` datum reads. FULL TRANSITIVE
compatibility of a family of versions means that holds both ways for every pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


def _full_name(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


@dataclass
class _Names:
    """Named types of one schema, by full and by short name, with their namespaces resolved."""

    types: dict[str, dict[str, Any]] = field(default_factory=dict)

    def collect(self, schema: Any, namespace: str = "") -> None:
        if isinstance(schema, list):
            for branch in schema:
                self.collect(branch, namespace)
            return
        if not isinstance(schema, dict):
            return
        kind = schema.get("type")
        if isinstance(kind, dict | list):
            self.collect(kind, namespace)
            return
        if kind in NAMED:
            full = _full_name(schema["name"], schema.get("namespace", namespace))
            self.types[full] = {**schema, "name": full}
            self.types.setdefault(_short(full), self.types[full])
            namespace = full.rsplit(".", 1)[0] if "." in full else ""
            for item in schema.get("fields", ()):
                self.collect(item["type"], namespace)
        elif kind == "array":
            self.collect(schema["items"], namespace)
        elif kind == "map":
            self.collect(schema["values"], namespace)

    def resolve(self, schema: Any) -> Any:
        """Replace a name reference by its definition; unwrap ``{"type": "long"}`` forms."""
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return schema
            return self.types.get(schema) or self.types[_short(schema)]
        if isinstance(schema, dict):
            kind = schema.get("type")
            if isinstance(kind, str) and kind in PRIMITIVES:
                return schema if "logicalType" in schema else kind
            if kind in NAMED and "." not in str(schema.get("name", "")):
                found = self.types.get(_short(str(schema["name"])))
                return found if found is not None else schema
            if isinstance(kind, dict | list):
                return self.resolve(kind)
        return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    kind = schema["type"]
    return "record" if kind == "error" else str(kind)


def _logical(schema: Any) -> str | None:
    return schema.get("logicalType") if isinstance(schema, dict) else None


class _Checker:
    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader_names = _Names()
        self.reader_names.collect(reader)
        self.writer_names = _Names()
        self.writer_names.collect(writer)
        self.in_progress: set[tuple[str, str]] = set()
        self.problems: list[str] = []

    def check(self, reader: Any, writer: Any, path: str) -> None:
        reader = self.reader_names.resolve(reader)
        writer = self.writer_names.resolve(writer)
        if isinstance(writer, list):
            for index, branch in enumerate(writer):
                self.check(reader, branch, f"{path}<union branch {index}>")
            return
        if isinstance(reader, list):
            if not any(self.matches(branch, writer) for branch in reader):
                self.problems.append(f"{path}: no reader union branch accepts {_kind(writer)}")
                return
            branch = next(b for b in reader if self.matches(b, writer))
            self.check(branch, writer, path)
            return
        self.check_plain(reader, writer, path)

    def matches(self, reader: Any, writer: Any) -> bool:
        """Whether union branch ``reader`` is the one resolution would pick for ``writer``."""
        reader = self.reader_names.resolve(reader)
        r_kind, w_kind = _kind(reader), _kind(writer)
        if r_kind in NAMED | {"record"} and r_kind == w_kind:
            return bool(_short(reader["name"]) == _short(writer["name"]))
        return r_kind == w_kind or r_kind in PROMOTIONS.get(w_kind, frozenset())

    def check_plain(self, reader: Any, writer: Any, path: str) -> None:
        r_kind, w_kind = _kind(reader), _kind(writer)
        if _logical(reader) != _logical(writer):
            self.problems.append(
                f"{path}: logical type changed from {_logical(writer)} to {_logical(reader)}"
            )
        if r_kind != w_kind:
            if r_kind not in PROMOTIONS.get(w_kind, frozenset()):
                self.problems.append(f"{path}: {w_kind} cannot be read as {r_kind}")
            return
        if r_kind in {"record", "enum", "fixed"} and _short(reader["name"]) != _short(
            writer["name"]
        ):
            aliases = {_short(a) for a in reader.get("aliases", ())}
            if _short(writer["name"]) not in aliases:
                self.problems.append(
                    f"{path}: named type {writer['name']} cannot be read as {reader['name']}"
                )
                return
        if r_kind == "record":
            self.check_record(reader, writer, path)
        elif r_kind == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            default = reader.get("default")
            if missing and default not in reader["symbols"]:
                self.problems.append(
                    f"{path}: writer symbols {missing} unknown to the reader, which has no default"
                )
        elif r_kind == "fixed" and reader["size"] != writer["size"]:
            self.problems.append(f"{path}: fixed size {writer['size']} read as {reader['size']}")
        elif r_kind == "array":
            self.check(reader["items"], writer["items"], f"{path}[]")
        elif r_kind == "map":
            self.check(reader["values"], writer["values"], f"{path}{{}}")

    def check_record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        key = (reader["name"], writer["name"])
        if key in self.in_progress:
            return  # recursive type: already being checked further up
        self.in_progress.add(key)
        writer_fields = {f["name"]: f for f in writer["fields"]}
        for reader_field in reader["fields"]:
            names = [reader_field["name"], *reader_field.get("aliases", ())]
            found = next((writer_fields[n] for n in names if n in writer_fields), None)
            where = f"{path}.{reader_field['name']}" if path else reader_field["name"]
            if found is None:
                if "default" not in reader_field:
                    self.problems.append(
                        f"{where}: reader field has no default and writer lacks it"
                    )
                continue
            self.check(reader_field["type"], found["type"], where)
        self.in_progress.discard(key)


def incompatibilities(reader: Any, writer: Any) -> list[str]:
    """Why data written with ``writer`` may not resolve to ``reader`` (empty: always resolves)."""
    checker = _Checker(reader, writer)
    checker.check(reader, writer, "")
    return checker.problems


def full_transitive(versions: list[Any]) -> list[str]:
    """Problems across every ordered pair of versions (oldest first), labelled v<i> → v<j>."""
    problems: list[str] = []
    for i, older in enumerate(versions, start=1):
        for j, newer in enumerate(versions[i:], start=i + 1):
            for reader, writer, label in ((newer, older, "backward"), (older, newer, "forward")):
                problems.extend(
                    f"{label} v{j if label == 'backward' else i} reads "
                    f"v{i if label == 'backward' else j}: {p}"
                    for p in incompatibilities(reader, writer)
                )
    return problems
