"""The schema catalog: every ``*.vN.avsc`` parsed once, found by name, version or fingerprint.

No registry server: every agency ships the same versioned files, so the 8 fingerprint bytes
in a record are enough to find the writer schema.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException

from enlace.core.errors import ConfigError, UnknownFingerprint
from schemas.bounds import Node, compile_schema
from schemas.fingerprint import canonical_form, schema_fingerprint

SCHEMA_DIR = Path(__file__).resolve().parent
_FILE_NAME = re.compile(r"^(?P<stem>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")


@dataclass(frozen=True)
class SchemaVersion:
    """One released version of one record schema."""

    name: str  # simple record name, e.g. "ThreatBulletin"
    version: int
    raw: dict[str, Any] = field(repr=False)
    parsed: Any = field(repr=False)  # fastavro's parsed form, reused for every read and write
    canonical: str = field(repr=False)
    fingerprint: bytes
    tree: Node = field(repr=False)  # for the bounded pre-scan
    source: str = ""

    @property
    def full_name(self) -> str:
        namespace = self.raw.get("namespace")
        return f"{namespace}.{self.name}" if namespace else self.name

    @classmethod
    def from_json(cls, raw: dict[str, Any], version: int, source: str = "") -> SchemaVersion:
        try:
            parsed = fastavro.parse_schema(raw)
            tree = compile_schema(raw)
        except (SchemaParseException, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"schema {source or raw.get('name')!r} does not parse: {exc}"
            ) from exc
        name = str(raw["name"]).rsplit(".", 1)[-1]
        return cls(
            name=name,
            version=version,
            raw=raw,
            parsed=parsed,
            canonical=canonical_form(raw),
            fingerprint=schema_fingerprint(raw),
            tree=tree,
            source=source,
        )

    @classmethod
    def load(cls, path: Path) -> SchemaVersion:
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise ConfigError(f"schema file {path.name!r} must be named like 'name.v1.avsc'")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read schema {path}: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("type") != "record":
            raise ConfigError(f"schema {path} must be one top-level record")
        return cls.from_json(raw, int(match["version"]), str(path))


class Catalog:
    """Versions by record name (ascending) and by fingerprint."""

    def __init__(self, versions: Iterable[SchemaVersion]) -> None:
        self._by_fp: dict[bytes, SchemaVersion] = {}
        self._by_name: dict[str, list[SchemaVersion]] = {}
        for entry in versions:
            if entry.fingerprint in self._by_fp:
                other = self._by_fp[entry.fingerprint]
                raise ConfigError(
                    f"{entry.source} has the same canonical form as {other.source}: "
                    "a new version must change the schema"
                )
            self._by_fp[entry.fingerprint] = entry
            self._by_name.setdefault(entry.name, []).append(entry)
        for name, entries in self._by_name.items():
            entries.sort(key=lambda e: e.version)
            numbers = [e.version for e in entries]
            if numbers != list(range(1, len(numbers) + 1)):
                raise ConfigError(f"{name} versions must be 1..N without gaps, found {numbers}")

    @classmethod
    def from_dir(cls, directory: Path) -> Catalog:
        return cls(SchemaVersion.load(path) for path in sorted(directory.glob("*.avsc")))

    @staticmethod
    def default() -> Catalog:
        """The catalog shipped in this package, loaded once per process."""
        return _default_catalog()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_name))

    def versions(self, name: str) -> tuple[SchemaVersion, ...]:
        try:
            return tuple(self._by_name[name])
        except KeyError:
            raise ConfigError(f"no schema named {name!r}; known: {', '.join(self.names)}") from None

    def latest(self, name: str) -> SchemaVersion:
        return self.versions(name)[-1]

    def get(self, name: str, version: int | None = None) -> SchemaVersion:
        if version is None:
            return self.latest(name)
        for entry in self.versions(name):
            if entry.version == version:
                return entry
        raise ConfigError(f"no version {version} of schema {name!r}")

    def by_fingerprint(self, fingerprint: bytes) -> SchemaVersion:
        try:
            return self._by_fp[bytes(fingerprint)]
        except KeyError:
            raise UnknownFingerprint(
                f"writer schema fingerprint {bytes(fingerprint).hex()} is not in the catalog"
            ) from None

    def __iter__(self) -> Any:
        for name in self.names:
            yield from self._by_name[name]


@functools.cache
def _default_catalog() -> Catalog:
    return Catalog.from_dir(SCHEMA_DIR)
