"""YAML files turned into plain data while keeping the node tree, so any error can name its line.

The node tree is composed with libyaml when PyYAML was built with it (about four times
faster than the pure-Python parser on large configs) and converted to data here rather
than by PyYAML's constructor: that keeps timestamps as the strings the user wrote,
refuses duplicate keys (PyYAML silently keeps the last one) and is faster still.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from reconciler.errors import ConfigError, SourceMark

_Loader: Any
if yaml.__with_libyaml__:
    _Loader = yaml.CSafeLoader
else:
    _Loader = yaml.SafeLoader

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_BOOL_WORDS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}

FieldPath = Sequence[str | int]
_N = TypeVar("_N", int, float)

# Limits that keep a hostile or broken file from taking the machine's memory and time. A
# 10,000-resource configuration is about 3 MB and 200,000 values; these leave ample room.
MAX_YAML_FILE_BYTES = 16 * 1024 * 1024
# Values once every alias is expanded: `*anchor` copies what it names, so a few lines of
# nested aliases (a "billion laughs") would otherwise expand to billions of values.
MAX_YAML_VALUES = 2_000_000


def mark_of(file: str, mark: yaml.Mark | None) -> SourceMark:
    """A PyYAML mark (0-based) as a SourceMark (1-based)."""
    if mark is None:
        return SourceMark(file)
    return SourceMark(file, mark.line + 1, mark.column + 1)


@dataclass(frozen=True)
class YamlDocument:
    """One parsed file: its data and the nodes that say where each value was written."""

    path: Path
    data: Any
    root: yaml.Node | None

    @property
    def name(self) -> str:
        return str(self.path)

    def mark(self, path: FieldPath, at_key: bool = False) -> SourceMark:
        """Where the value at `path` was written; the nearest enclosing node when it is absent.

        With `at_key`, a path ending in a mapping key points at the key rather than its value
        (an unknown key is reported where the key is).
        """
        node = self.root
        if node is None:
            return SourceMark(self.name, 1, 1)
        for position, element in enumerate(path):
            last = position == len(path) - 1
            if isinstance(node, yaml.MappingNode):
                match = _find_key(node, element)
                if match is None:
                    break
                key_node, value_node = match
                if last and at_key:
                    return mark_of(self.name, key_node.start_mark)
                node = value_node
            elif isinstance(node, yaml.SequenceNode) and isinstance(element, int):
                if not 0 <= element < len(node.value):
                    break
                node = node.value[element]
            else:
                break
        return mark_of(self.name, node.start_mark)


def _find_key(node: yaml.MappingNode, key: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    wanted = str(key)
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == wanted:
            return key_node, value_node
    return None


def parse_yaml_file(path: Path) -> YamlDocument:
    """Read and parse one YAML file; any problem is a ConfigError naming the file and line."""
    try:
        size = path.stat().st_size
        if size > MAX_YAML_FILE_BYTES:
            raise ConfigError(
                f"the file is {size / 1024 / 1024:.1f} MiB, more than the {MAX_YAML_FILE_BYTES // 1024 // 1024} MiB "
                "a configuration file may have",
                SourceMark(str(path)),
                hint="split the configuration into several files in one directory",
            )
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})", SourceMark(str(path))
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", SourceMark(str(path))) from exc
    return parse_yaml_text(text, path)


def parse_yaml_text(text: str, path: Path) -> YamlDocument:
    """Parse YAML text that came from `path` (used in messages only)."""
    name = str(path)
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        raise ConfigError(
            f"invalid YAML: {problem}{context}",
            mark_of(name, exc.problem_mark or exc.context_mark),
            hint="check the indentation and quoting around this line",
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", SourceMark(name)) from exc
    except RecursionError as exc:
        raise ConfigError("YAML nested too deeply", SourceMark(name)) from exc
    finally:
        loader.dispose()
    if root is None:
        return YamlDocument(path, None, None)
    try:
        _ExpansionCounter(name).count(root)
        data = _NodeConverter(name).convert(root)
    except RecursionError as exc:
        raise ConfigError(
            "YAML nested too deeply (or a recursive alias)", mark_of(name, root.start_mark)
        ) from exc
    return YamlDocument(path, data, root)


class _ExpansionCounter:
    """Counts the values a node tree expands to, aliases included, without expanding it.

    An alias is the very node it names, so each distinct node is counted once and its total
    reused: time and memory stay proportional to the file, whatever the aliases multiply to.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.totals: dict[int, int] = {}
        self.active: set[int] = set()

    def count(self, node: yaml.Node) -> int:
        if type(node) is yaml.ScalarNode:
            return 1
        known = self.totals.get(id(node))
        if known is not None:
            return known
        if id(node) in self.active:
            raise ConfigError(
                "a YAML alias refers to a node that contains it", mark_of(self.name, node.start_mark)
            )
        self.active.add(id(node))
        children = node.value if type(node) is yaml.SequenceNode else [n for pair in node.value for n in pair]
        total = 1 + sum(self.count(child) for child in children)
        self.active.discard(id(node))
        if total > MAX_YAML_VALUES:
            raise ConfigError(
                f"the YAML here holds {total:,} values once its aliases are expanded, more than the "
                f"{MAX_YAML_VALUES:,} a configuration may have",
                mark_of(self.name, node.start_mark),
                hint="write the values out, or use fewer nested aliases (`*name` copies everything it names)",
            )
        self.totals[id(node)] = total
        return total


class _NodeConverter:
    """Node tree -> dicts, lists and scalars, refusing what a config never needs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.active: set[int] = set()

    def convert(self, node: yaml.Node) -> Any:
        if type(node) is yaml.ScalarNode:
            if node.tag == _STR:
                return node.value
            return self._scalar(node)
        if id(node) in self.active:
            raise ConfigError(
                "a YAML alias refers to a node that contains it", mark_of(self.name, node.start_mark)
            )
        self.active.add(id(node))
        try:
            if type(node) is yaml.SequenceNode:
                return [self.convert(item) for item in node.value]
            if type(node) is yaml.MappingNode:
                return self._mapping(node)
        finally:
            self.active.discard(id(node))
        raise ConfigError(f"unsupported YAML node {node.tag}", mark_of(self.name, node.start_mark))

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        tag, value = node.tag, node.value
        if tag == _INT:
            return _to_int(value)
        if tag == _FLOAT:
            return _to_float(value)
        if tag == _BOOL:
            return _BOOL_WORDS[value.lower()]
        if tag == _NULL:
            return None
        if tag == _TIMESTAMP:
            return value
        raise ConfigError(
            f"unsupported YAML tag {tag}",
            mark_of(self.name, node.start_mark),
            hint="write plain strings, numbers, booleans, lists and maps",
        )

    def _mapping(self, node: yaml.MappingNode) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        seen: dict[Any, yaml.Node] = {}
        merged: list[dict[Any, Any]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.extend(self._merge_sources(value_node))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(
                    "mapping keys must be plain scalars", mark_of(self.name, key_node.start_mark)
                )
            key = self.convert(key_node)
            if key in seen:
                first = mark_of(self.name, seen[key].start_mark)
                raise ConfigError(
                    f"duplicate key {key!r} (first at line {first.line})",
                    mark_of(self.name, key_node.start_mark),
                    hint="YAML keeps only one of them; remove or rename the other",
                )
            seen[key] = key_node
            result[key] = self.convert(value_node)
        if merged:
            base: dict[Any, Any] = {}
            for source in reversed(merged):
                base.update(source)
            base.update(result)
            return base
        return result

    def _merge_sources(self, node: yaml.Node) -> list[dict[Any, Any]]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        converted = []
        for source in sources:
            value = self.convert(source)
            if not isinstance(value, dict):
                raise ConfigError("'<<' merges only maps", mark_of(self.name, source.start_mark))
            converted.append(value)
        return converted


def _signed(text: str) -> tuple[int, str]:
    """A YAML number's sign and the rest of it, underscores dropped."""
    value = text.replace("_", "")
    if value[:1] in "+-":
        return (-1 if value[0] == "-" else 1), value[1:]
    return 1, value


def _base_60(value: str, digit: Callable[[str], _N]) -> _N:
    """`1:30:00` as YAML 1.1 reads it: each part counts sixty of the next."""
    parts = [digit(part) for part in value.split(":")]
    total = parts[0]
    for part in parts[1:]:
        total = total * 60 + part
    return total


def _to_int(text: str) -> int:
    """YAML 1.1 integers as PyYAML reads them (signs, underscores, 0x, 0o, 0b, sexagesimal)."""
    sign, value = _signed(text)
    if value == "0":
        return 0
    if value.startswith("0b"):
        return sign * int(value[2:], 2)
    if value.startswith("0x"):
        return sign * int(value[2:], 16)
    if value.startswith("0o"):
        return sign * int(value[2:], 8)
    if value.startswith("0"):
        return sign * int(value, 8)
    if ":" in value:
        return sign * _base_60(value, int)
    return sign * int(value)


def _to_float(text: str) -> float:
    sign, value = _signed(text.lower())
    if value == ".inf":
        return sign * float("inf")
    if value == ".nan":
        return float("nan")
    if ":" in value:
        return sign * _base_60(value, float)
    return sign * float(value)
