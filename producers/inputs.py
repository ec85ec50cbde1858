"""Reading bulletins from files and streams: JSON (one object or an array) or JSON Lines.

Every item keeps where it came from (line, position) so a problem is reported as
``line 12: location.lat: must be <= 90``. Parsing is pure: bytes in, items and problems out.

Format detection (``auto``): ``.jsonl``/``.ndjson`` names are JSON Lines; otherwise a
document starting with ``[`` is an array; a document that parses as one JSON value is a
single bulletin; else, if its first non-blank line is a JSON value on its own, JSON Lines.

Other formats (``InputFormat``: STIX 2.1 bundles, MISP events) are read by their own
modules into the same :class:`ParsedInput`; ``producers.produce.read_input`` picks one (here
would be an import cycle: those modules build on this one). They may leave parts of an input
out and still publish the rest: those are ``warnings``, shown but never a refusal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

Format = Literal["auto", "json", "jsonl"]
# What ``enlace produce --format`` accepts: ``Format`` plus the threat-intel formats.
InputFormat = Literal["auto", "json", "jsonl", "stix", "misp"]
INPUT_FORMATS: tuple[InputFormat, ...] = ("auto", "json", "jsonl", "stix", "misp")

JSONL_SUFFIXES = (".jsonl", ".ndjson")
_WHITESPACE = " \t\n\r"


@dataclass(frozen=True)
class Item:
    """One bulletin-to-be. ``position`` is the line number in JSON Lines, else the 1-based
    index in the array (a minified array puts many items on one line)."""

    position: int
    line: int
    obj: Any


@dataclass(frozen=True)
class Problem:
    """Why an item (or the whole input, ``line is None``) was refused; in
    :attr:`ParsedInput.warnings`, what was left out of an item that still publishes."""

    line: int | None
    field: str
    rule: str
    bulletin_id: str | None = None

    def describe(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.field}: {self.rule}"


@dataclass(frozen=True)
class ParsedInput:
    items: tuple[Item, ...]
    problems: tuple[Problem, ...]
    digest: str  # sha256 of the raw bytes: the seed of derived bulletin ids
    # Parts of the input not carried into its items (never a refusal; JSON has none).
    warnings: tuple[Problem, ...] = ()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


class _Lines:
    """Line numbers of offsets, counted incrementally (offsets only move forward)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self._line = 1

    def at(self, pos: int) -> int:
        self._line += self._text.count("\n", self._pos, pos)
        self._pos = pos
        return self._line


def _syntax(exc: ValueError, lines: _Lines | None = None, pos: int = 0) -> Problem:
    if isinstance(exc, json.JSONDecodeError):
        return Problem(exc.lineno, "(json)", f"{exc.msg} (column {exc.colno})")
    return Problem(lines.at(pos) if lines else None, "(json)", str(exc))


def _array(text: str, start: int) -> tuple[list[Item], list[Problem]]:
    items: list[Item] = []
    lines = _Lines(text)
    pos = _skip_ws(text, start + 1)
    if pos < len(text) and text[pos] == "]":
        return items, []
    while True:
        pos = _skip_ws(text, pos)
        try:
            obj, end = _DECODER.raw_decode(text, pos)
        except ValueError as exc:
            return items, [_syntax(exc, lines, pos)]
        items.append(Item(len(items) + 1, lines.at(pos), obj))
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        if pos < len(text) and text[pos] == "]":
            break
        return items, [Problem(lines.at(pos), "(json)", "expected ',' or ']' in the array")]
    rest = _skip_ws(text, pos + 1)
    if rest < len(text):
        return items, [Problem(lines.at(rest), "(json)", "extra data after the array")]
    return items, []


def _jsonl(text: str) -> tuple[list[Item], list[Problem]]:
    items: list[Item] = []
    problems: list[Problem] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            obj = _DECODER.decode(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(number, "(json)", f"{exc.msg} (column {exc.colno})"))
            continue
        except ValueError as exc:
            problems.append(Problem(number, "(json)", str(exc)))
            continue
        items.append(Item(number, number, obj))
    return items, problems


def _single(text: str, start: int) -> tuple[list[Item], list[Problem]]:
    try:
        obj = _DECODER.decode(text)
    except ValueError as exc:
        return [], [_syntax(exc)]
    return [Item(1, _Lines(text).at(start), obj)], []


def _looks_like_jsonl(text: str) -> bool:
    for raw in text.split("\n"):
        if raw.strip():
            try:
                _DECODER.decode(raw.strip())
            except ValueError:
                return False
            return True
    return False


def load_document(data: bytes) -> tuple[str, Any] | Problem:
    """``(text, value)`` of one JSON document, or the problem (encoding or syntax) with it;
    for the readers of other formats, with the same refusals as :func:`parse_input`."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return Problem(line, "(encoding)", "input is not valid UTF-8")
    if _skip_ws(text, 0) == len(text):
        return Problem(None, "(input)", "contains no bulletins")
    try:
        return text, _DECODER.decode(text)
    except ValueError as exc:
        return _syntax(exc)


def parse_input(data: bytes, *, fmt: Format = "auto", name: str = "") -> ParsedInput:
    """Items and syntax problems of ``data``; ``name`` (a file name) helps detect the format."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return ParsedInput((), (Problem(line, "(encoding)", "input is not valid UTF-8"),), digest)
    if fmt == "auto" and name.lower().endswith(JSONL_SUFFIXES):
        fmt = "jsonl"
    start = _skip_ws(text, 0)
    if start == len(text):
        return ParsedInput((), (Problem(None, "(input)", "contains no bulletins"),), digest)
    if fmt == "jsonl":
        items, problems = _jsonl(text)
    elif text[start] == "[":
        items, problems = _array(text, start)
    elif fmt == "json":
        items, problems = _single(text, start)
    else:
        items, problems = _single(text, start)
        if problems and _looks_like_jsonl(text):
            items, problems = _jsonl(text)
    return ParsedInput(tuple(items), tuple(problems), digest)


def iter_chunks(items: tuple[Any, ...] | list[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in consecutive lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
