"""Where a key sits in a YAML file, so a policy error can name its line as well as its path."""

from __future__ import annotations

from dataclasses import dataclass

import yaml


def format_path(loc: tuple[str | int, ...]) -> str:
    """``("agreements", 3, "level")`` → ``agreements[3].level``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("["):  # pydantic's "[key]": the mapping key itself is wrong
            out += f" {part}"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


@dataclass(frozen=True, slots=True)
class SourceMap:
    """The composed YAML node tree of a file, kept only to look up line numbers."""

    name: str
    root: yaml.Node | None

    @classmethod
    def parse(cls, text: str, name: str) -> SourceMap:
        return cls(name, yaml.compose(text, Loader=yaml.SafeLoader))

    def line_of(self, loc: tuple[str | int, ...]) -> int | None:
        """1-based line of the deepest node along ``loc`` that exists in the file."""
        node = self.root
        line: int | None = None
        for part in loc:
            child, key_line = _child(node, part)
            if child is None:
                break
            node = child
            line = key_line
        return line


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node | None, int]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value, key.start_mark.line + 1
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item = node.value[part]
        return item, item.start_mark.line + 1
    return None, 0
