"""Schema evolution: the rule-based compatibility checker, the house rules, the CLI, and a
throwaway v2 (new optional field, new enum symbol) read by v1 and vice versa."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from enlace.cli import app
from schemas.catalog import SCHEMA_DIR, Catalog, SchemaVersion
from schemas.check import check_schemas
from schemas.codec import decode, decode_bulletin, encode, encode_bulletin
from schemas.compat import full_transitive, incompatibilities
from schemas.lint import lint
from tests.samples import fixed_bulletin

V2_PATH = Path(__file__).parent / "golden" / "evolution" / "threat_bulletin.v2.avsc"


def v1_raw() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((SCHEMA_DIR / "threat_bulletin.v1.avsc").read_text())
    return raw


@pytest.fixture(scope="module")
def evolved() -> Catalog:
    default = Catalog.default()
    return Catalog(
        [
            default.get("ThreatBulletin", 1),
            SchemaVersion.load(V2_PATH),
        ]
    )


def record(*fields: dict[str, Any], name: str = "R") -> dict[str, Any]:
    return {"type": "record", "name": name, "doc": "d", "fields": list(fields)}


def test_shipped_schemas_pass_the_check() -> None:
    report = check_schemas()
    assert report.ok, report.problems
    assert {v.name for v in report.versions} == {
        "ThreatBulletin",
        "TrustEvent",
        "AuditRecord",
        "SealedBulletin",
        "SealedRelease",
        "BulletinRecall",
    }


def test_throwaway_v2_is_full_transitive_compatible_with_v1() -> None:
    v2 = json.loads(V2_PATH.read_text())
    assert full_transitive([v1_raw(), v2]) == []
    assert lint(v2) == []


def test_v2_written_read_by_v1(evolved: Catalog) -> None:
    datum = fixed_bulletin().to_avro() | {"category": "ILLEGAL_MINING", "confidence": 80}
    data = encode(datum, "ThreatBulletin", catalog=evolved)
    assert data[2:10] == evolved.get("ThreatBulletin", 2).fingerprint
    as_v1 = decode(data, "ThreatBulletin", catalog=evolved, reader_version=1)
    assert as_v1["category"] == "OTHER"  # unknown symbol → the enum's default
    assert "confidence" not in as_v1
    assert decode_bulletin(data, catalog=evolved).category == "OTHER"
    as_v2 = decode(data, "ThreatBulletin", catalog=evolved)
    assert (as_v2["category"], as_v2["confidence"]) == ("ILLEGAL_MINING", 80)


def test_v1_written_read_by_v2(evolved: Catalog) -> None:
    data = encode_bulletin(fixed_bulletin())
    datum = decode(data, "ThreatBulletin", catalog=evolved, reader_version=2)
    assert datum["confidence"] is None
    assert datum["title"] == fixed_bulletin().title
    # The bytes a v1 agency signed re-encode identically with the v1 writer schema.
    assert (
        encode_bulletin(decode_bulletin(data, catalog=evolved), catalog=evolved, writer=data[2:10])
        == data
    )


def test_added_field_without_default_breaks_backward() -> None:
    old = record({"name": "a", "type": "string", "doc": "d"})
    new = record(
        {"name": "a", "type": "string", "doc": "d"}, {"name": "b", "type": "int", "doc": "d"}
    )
    problems = full_transitive([old, new])
    assert len(problems) == 1
    assert "backward" in problems[0]
    assert "b: reader field has no default" in problems[0]


def test_removed_field_without_default_breaks_forward() -> None:
    old = record(
        {"name": "a", "type": "string", "doc": "d"}, {"name": "b", "type": "int", "doc": "d"}
    )
    new = record({"name": "a", "type": "string", "doc": "d"})
    assert ["forward" in p for p in full_transitive([old, new])] == [True]


def test_enum_symbols_need_a_default() -> None:
    enum: dict[str, Any] = {"type": "enum", "name": "E", "doc": "d", "symbols": ["A", "B"]}
    grown = copy.deepcopy(enum)
    grown["symbols"].append("C")
    old = record({"name": "e", "type": enum, "doc": "d"})
    new = record({"name": "e", "type": grown, "doc": "d"})
    assert incompatibilities(new, old) == []
    assert "unknown to the reader" in incompatibilities(old, new)[0]
    enum["default"] = "A"
    assert incompatibilities(old, new) == []


def test_promotions_one_way() -> None:
    narrow = record({"name": "n", "type": "int", "doc": "d"})
    wide = record({"name": "n", "type": "long", "doc": "d"})
    assert incompatibilities(wide, narrow) == []
    assert "long cannot be read as int" in incompatibilities(narrow, wide)[0]


def test_union_branches_and_names() -> None:
    optional = record({"name": "x", "type": ["null", "string"], "default": None, "doc": "d"})
    required = record({"name": "x", "type": "string", "doc": "d"})
    assert incompatibilities(optional, required) == []
    assert incompatibilities(required, optional) != []  # a null cannot be read as string
    renamed = record({"name": "x", "type": "string", "doc": "d"}, name="Other")
    assert "cannot be read as" in incompatibilities(renamed, required)[0]


def test_logical_type_change_is_flagged() -> None:
    millis = record(
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}, "doc": "d"}
    )
    micros = record(
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}, "doc": "d"}
    )
    assert "logical type" in incompatibilities(micros, millis)[0]


def test_house_rules() -> None:
    bad = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "m", "type": {"type": "map", "values": "string"}, "doc": "d"},
            {"name": "e", "type": {"type": "enum", "name": "E", "doc": "d", "symbols": ["A"]}},
            {"name": "o", "type": ["string", "null"], "default": "x", "doc": "d"},
        ],
    }
    found = "\n".join(lint(bad))
    for expected in (
        "has no doc",
        "maps are not allowed",
        "needs a default symbol",
        "'null' must be the first",
        "needs 'default': null",
        "R.e: field has no doc",
    ):
        assert expected in found


def test_cli_check_passes_and_prints_fingerprints() -> None:
    result = CliRunner().invoke(app, ["schemas", "check"])
    assert result.exit_code == 0, result.output
    fp = Catalog.default().latest("ThreatBulletin").fingerprint.hex()
    assert fp in result.output


def test_cli_check_fails_on_an_incompatible_version(tmp_path: Path) -> None:
    for path in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, tmp_path)
    broken = v1_raw()
    broken["fields"] += ({"name": "extra", "type": "int", "doc": "no default"},)
    (tmp_path / "threat_bulletin.v2.avsc").write_text(json.dumps(broken))
    result = CliRunner().invoke(app, ["schemas", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "extra: reader field has no default" in result.output


def test_catalog_refuses_gaps_and_duplicates(tmp_path: Path) -> None:
    from enlace.core.errors import ConfigError

    shutil.copy(SCHEMA_DIR / "threat_bulletin.v1.avsc", tmp_path / "threat_bulletin.v2.avsc")
    shutil.copy(SCHEMA_DIR / "threat_bulletin.v1.avsc", tmp_path / "threat_bulletin.v1.avsc")
    with pytest.raises(ConfigError, match="same canonical form"):
        Catalog.from_dir(tmp_path)
    (tmp_path / "threat_bulletin.v1.avsc").unlink()
    with pytest.raises(ConfigError, match="without gaps"):
        Catalog.from_dir(tmp_path)


def test_a_changed_released_schema_is_refused(tmp_path: Path) -> None:
    for path in (*SCHEMA_DIR.glob("*.avsc"), SCHEMA_DIR / "released.txt"):
        shutil.copy(path, tmp_path)
    assert check_schemas(tmp_path).ok
    edited = v1_raw()
    edited["doc"] = "docs may change freely"
    (tmp_path / "threat_bulletin.v1.avsc").write_text(json.dumps(edited))
    assert check_schemas(tmp_path).ok
    edited["fields"][-1]["name"] = "lang"
    (tmp_path / "threat_bulletin.v1.avsc").write_text(json.dumps(edited))
    assert any(
        "released schema threat_bulletin.v1.avsc changed" in p
        for p in check_schemas(tmp_path).problems
    )
    (tmp_path / "threat_bulletin.v1.avsc").unlink()
    assert any("is missing" in p for p in check_schemas(tmp_path).problems)
