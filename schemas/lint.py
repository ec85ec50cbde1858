"""House rules for the ``.avsc`` files, beyond what Avro itself requires.

Docs on every field and named type; no maps (their encoding order is not canonical, and
signatures need one encoding per datum); every enum has a default symbol so old readers
survive new symbols; optional values are ``["null", T]`` with a null default.
"""

from __future__ import annotations

from typing import Any


def lint(schema: Any) -> list[str]:
    """Rule violations in one schema, each naming where."""
    problems: list[str] = []
    _walk(schema, schema.get("name", "?") if isinstance(schema, dict) else "?", problems)
    return problems


def _walk(schema: Any, path: str, problems: list[str]) -> None:  # noqa: PLR0912 - one branch per Avro type
    if isinstance(schema, list):
        if "null" in schema and schema[0] != "null":
            problems.append(f"{path}: 'null' must be the first branch of an optional union")
        for branch in schema:
            _walk(branch, path, problems)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if isinstance(kind, dict | list):
        _walk(kind, path, problems)
        return
    if kind in {"record", "enum", "fixed"} and not str(schema.get("doc", "")).strip():
        problems.append(f"{path}: named type {schema.get('name')} has no doc")
    if kind == "map":
        problems.append(f"{path}: maps are not allowed (encoding order is not canonical)")
        _walk(schema.get("values"), f"{path}{{}}", problems)
    elif kind == "array":
        _walk(schema.get("items"), f"{path}[]", problems)
    elif kind == "enum":
        if schema.get("default") not in schema.get("symbols", ()):
            problems.append(f"{path}: enum {schema.get('name')} needs a default symbol")
    elif kind == "record":
        for item in schema.get("fields", ()):
            where = f"{path}.{item.get('name')}"
            if not str(item.get("doc", "")).strip():
                problems.append(f"{where}: field has no doc")
            field_type = item.get("type")
            if (
                isinstance(field_type, list)
                and "null" in field_type
                and ("default" not in item or item["default"] is not None)
            ):
                problems.append(f"{where}: optional field needs 'default': null")
            _walk(field_type, where, problems)
