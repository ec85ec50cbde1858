"""Input parsing: JSON object / array / JSON Lines, with line numbers for every problem."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from producers.dropfolder import is_candidate, stable
from producers.inputs import parse_input


def test_single_object() -> None:
    parsed = parse_input(b'\n\n  {"a": 1}\n', name="x.json")
    assert [(i.position, i.line, i.obj) for i in parsed.items] == [(1, 3, {"a": 1})]
    assert parsed.problems == ()


def test_array_items_carry_their_start_line() -> None:
    text = '[\n  {"a": 1},\n\n  {"a": 2}, {"a": 3}\n]\n'
    parsed = parse_input(text.encode())
    assert [(i.position, i.line) for i in parsed.items] == [(1, 2), (2, 4), (3, 4)]
    assert parsed.problems == ()


def test_empty_array_is_no_items_no_problem() -> None:
    parsed = parse_input(b"[ ]")
    assert parsed.items == ()
    assert parsed.problems == ()


def test_array_syntax_error_names_the_line() -> None:
    parsed = parse_input(b'[\n {"a": 1},\n {"a": }\n]')
    assert len(parsed.items) == 1
    (problem,) = parsed.problems
    assert problem.line == 3
    assert problem.field == "(json)"


def test_array_missing_comma() -> None:
    parsed = parse_input(b'[{"a": 1}\n{"a": 2}]')
    assert parsed.problems[0].line == 2
    assert "expected ','" in parsed.problems[0].rule


def test_jsonl_by_suffix_reports_bad_lines_and_keeps_good_ones() -> None:
    text = '{"a": 1}\n\n{"a": \n{"a": 3}\n'
    parsed = parse_input(text.encode(), name="feed.jsonl")
    assert [(i.position, i.line, i.obj) for i in parsed.items] == [
        (1, 1, {"a": 1}),
        (4, 4, {"a": 3}),
    ]
    assert [p.line for p in parsed.problems] == [3]
    assert parsed.problems[0].describe().startswith("line 3: (json): ")


def test_jsonl_sniffed_without_suffix() -> None:
    parsed = parse_input(b'{"a": 1}\n{"a": 2}\n')
    assert [i.line for i in parsed.items] == [1, 2]
    assert parsed.problems == ()


def test_broken_pretty_object_reports_its_line_not_jsonl_noise() -> None:
    parsed = parse_input(b'{\n  "a": 1,\n  "b": \n}\n', name="x.json")
    assert parsed.items == ()
    assert parsed.problems[0].line == 4


def test_nan_is_refused() -> None:
    parsed = parse_input(b'{"lat": NaN}')
    assert parsed.problems
    assert parsed.problems[0].field == "(json)"


def test_not_utf8_names_the_line() -> None:
    parsed = parse_input(b'{"a": 1}\n{"a": "\xff"}\n', name="x.jsonl")
    assert parsed.problems[0].line == 2
    assert parsed.problems[0].field == "(encoding)"


def test_empty_input() -> None:
    parsed = parse_input(b"  \n")
    assert parsed.items == ()
    assert "no bulletins" in parsed.problems[0].rule


def test_bom_is_accepted() -> None:
    assert parse_input(b'\xef\xbb\xbf{"a": 1}').items[0].obj == {"a": 1}


def test_digest_depends_on_bytes() -> None:
    assert parse_input(b"[1]").digest != parse_input(b"[1] ").digest
    assert parse_input(b"[1]").digest == parse_input(b"[1]").digest


@given(st.lists(st.dictionaries(st.text(max_size=5), st.integers(), max_size=3), max_size=8))
def test_array_and_jsonl_agree(objs: list[dict[str, int]]) -> None:
    as_array = parse_input(json.dumps(objs, indent=1).encode())
    as_lines = parse_input("".join(json.dumps(o) + "\n" for o in objs).encode(), name="x.jsonl")
    assert [i.obj for i in as_array.items] == objs
    assert [i.obj for i in as_lines.items] == objs
    assert [i.line for i in as_lines.items] == list(range(1, len(objs) + 1))


def test_drop_folder_candidates() -> None:
    assert is_candidate("a.json")
    assert is_candidate("B.JSONL")
    assert not is_candidate(".a.json")
    assert not is_candidate("a.json.tmp")
    assert not is_candidate("a.json.part")
    assert not is_candidate("a.txt")


def test_only_files_unchanged_across_two_scans_are_stable() -> None:
    previous = {"a.json": (10, 1), "b.json": (10, 1), "c.json": (5, 1)}
    current = {"a.json": (10, 1), "b.json": (12, 2), "d.json": (1, 1)}
    assert stable(previous, current) == ["a.json"]
