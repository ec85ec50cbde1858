"""Validate a custom resource as the Kubernetes API server would, offline: against its CRD's
``openAPIV3Schema`` for the served version (jsonschema, after the OpenAPI-to-JSON-Schema
differences are mapped), the CRD's CEL rules (``x-kubernetes-validations``, cel-python), the
fields the server would prune (every key the structural schema does not declare), and
``metadata`` against Kubernetes' own ObjectMeta. Built-in kinds go through
kubernetes-validate's strict schemas. Each check returns problems as ``path: message``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema

# kubernetes-validate ships no type information (no py.typed): its API is two functions.
import kubernetes_validate  # type: ignore[import-untyped]
import yaml
from celpy.adapter import json_to_cel

Schema = dict[str, Any]

# The extensions Kubernetes defines for structural schemas; any other x-kubernetes-* key in a
# CRD is a new one this module does not know how to check, and fails loudly.
_KNOWN_EXTENSIONS = {
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-validations",
    "x-kubernetes-embedded-resource",
}
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


class Crds:
    """The CRDs of one directory, by (apiVersion, kind)."""

    def __init__(self, directory: Path) -> None:
        self.schemas: dict[tuple[str, str], Schema] = {}
        for path in sorted(directory.glob("*Crd-*.yaml")):
            crd = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version["served"]:
                    schema = version["schema"]["openAPIV3Schema"]
                    self.schemas[(f"{group}/{version['name']}", kind)] = schema

    def problems(self, resource: Mapping[str, Any], k8s_version: str) -> list[str]:
        key = (resource.get("apiVersion", ""), resource.get("kind", ""))
        schema = self.schemas.get(key)
        if schema is None:
            return [f"$: no served CRD version for {key[0]} {key[1]}"]
        found = [f"{_path(e.absolute_path)}: {e.message}" for e in _errors(schema, resource)]
        found += unknown_fields(schema, resource)
        found += cel_failures(schema, resource)
        found += meta_problems(resource.get("metadata", {}), k8s_version)
        return found


def to_json_schema(schema: Schema) -> Schema:
    """OpenAPI v3 (Kubernetes structural schema) to JSON Schema: ``nullable`` becomes a null
    type, ``x-kubernetes-int-or-string`` an integer-or-string, other extensions are kept as
    annotations (jsonschema ignores unknown keywords) and checked by the walkers below."""
    out: Schema = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") and key not in _KNOWN_EXTENSIONS:
            raise NotImplementedError(f"unknown schema extension {key}")
        if key in ("properties", "patternProperties"):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("anyOf", "oneOf", "allOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        elif key != "nullable":
            out[key] = copy.deepcopy(value)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _errors(schema: Schema, instance: Any) -> Iterator[jsonschema.ValidationError]:
    # OpenAPI 3.0 schema objects are JSON Schema draft 4/5 with extensions.
    validator = jsonschema.Draft4Validator(to_json_schema(schema))
    yield from sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))


def unknown_fields(schema: Schema, value: Any, path: str = "$") -> list[str]:
    """Every key the API server would prune: not declared by ``properties`` (or
    ``additionalProperties``) of an object schema without
    ``x-kubernetes-preserve-unknown-fields``. ``apiVersion``, ``kind`` and ``metadata`` at
    the root are the server's own (metadata is checked against ObjectMeta)."""
    found: list[str] = []
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return found
        declared: Mapping[str, Schema] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            where = f"{path}.{key}"
            if path == "$" and key in ("apiVersion", "kind", "metadata"):
                continue
            if key in declared:
                found += unknown_fields(declared[key], sub, where)
            elif isinstance(extra, dict):
                found += unknown_fields(extra, sub, where)
            elif extra is not True:
                found.append(f"{where}: field not declared by the schema (pruned)")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += unknown_fields(schema["items"], item, f"{path}[{index}]")
    return found


@cache
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_failures(schema: Schema, value: Any, path: str = "$") -> list[str]:
    """Each ``x-kubernetes-validations`` rule on a node present in the value, evaluated
    with ``self`` bound to that node, as the API server does; an error counts as a failure."""
    found: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        message = rule.get("message", rule["rule"])
        try:
            ok = bool(_program(rule["rule"]).evaluate({"self": json_to_cel(value)}))
        except Exception as exc:  # noqa: BLE001 - any evaluation error fails the rule
            ok, message = False, f"{message} ({exc})"
        if not ok:
            found.append(f"{path}: {message}")
    if isinstance(value, dict):
        declared: Mapping[str, Schema] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            child = declared.get(key) or (extra if isinstance(extra, dict) else None)
            if child is not None:
                found += cel_failures(child, sub, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += cel_failures(schema["items"], item, f"{path}[{index}]")
    return found


def meta_problems(metadata: Any, k8s_version: str) -> list[str]:
    """``metadata`` against Kubernetes' own strict ObjectMeta schema."""
    schema = {**_definitions(k8s_version), "$ref": f"#/$defs/{OBJECT_META}"}
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"$.metadata{_path(e.absolute_path, '')}: {e.message}"
        for e in validator.iter_errors(metadata)
    ]


@cache
def _definitions(k8s_version: str) -> dict[str, Any]:
    # The strict schemas forbid fields a kind does not declare (additionalProperties: false).
    version = _schema_version(k8s_version)
    document: dict[str, Any] = kubernetes_validate.utils.schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", k8s_version
    )
    return document


def _schema_version(k8s_version: str) -> str:
    versions = kubernetes_validate.utils.all_versions()
    chosen = [v for v in versions if v.rsplit(".", 1)[0] == k8s_version]
    if not chosen:
        raise LookupError(f"kubernetes-validate has no schemas for Kubernetes {k8s_version}")
    return str(chosen[-1])


def builtin_problems(resource: Mapping[str, Any], k8s_version: str) -> list[str]:
    """A built-in kind (Deployment, ConfigMap, Secret, Service...) against Kubernetes' own
    strict JSON schema of that version, from kubernetes-validate."""
    try:
        kubernetes_validate.validate(dict(resource), k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{_path(exc.absolute_path)}: {exc.message}"]
    return []


def k8s_versions() -> list[str]:
    """major.minor of every Kubernetes version kubernetes-validate has schemas for."""
    return sorted(
        {v.rsplit(".", 1)[0] for v in kubernetes_validate.utils.all_versions()},
        key=lambda v: tuple(int(p) for p in v.split(".")),
    )


def _path(parts: Any, root: str = "$") -> str:
    text = root
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
