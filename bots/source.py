"""Read YAML keeping the line and column of every key and value.

Flow authors get errors that point at a place in their file, so the loader
returns mappings and lists that remember where each of their items stood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

try:  # libyaml is ten times faster on large flows; pure Python is the fallback
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on the wheel
    from yaml import SafeLoader as _BaseLoader


class _Loader(_BaseLoader):
    """A safe loader that reads plain values as YAML 1.2 does, not as YAML 1.1.

    YAML 1.1 reads yes, no, on and off as booleans (turning the flow language's
    own `on:` key into `True`), 9:30 as the number 570, 010 as 8, and
    2024-05-01 as a date. Here only true/false are booleans, integers are
    decimal (or 0o/0x), and times and dates stay text.
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers
                if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
                               "tag:yaml.org,2002:timestamp")]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }

    def construct_yaml_int(self, node: Any) -> int:
        text = self.construct_scalar(node)
        if text.startswith(("0o", "0x")):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)

MAX_NODES = 200_000  # far above any real flow; stops alias bombs ("billion laughs")


@dataclass(frozen=True, slots=True)
class Pos:
    """A 1-based line and column in a source file."""

    line: int
    col: int


NOWHERE = Pos(1, 1)


class Diagnostic:
    """One error or warning about a file, at a position."""

    __slots__ = ("path", "pos", "severity", "message")

    def __init__(self, path: str, pos: Pos | None, severity: str, message: str) -> None:
        self.path = path
        self.pos = pos or NOWHERE
        self.severity = severity
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}:{self.pos.line}:{self.pos.col}: {self.severity}: {self.message}"

    def __repr__(self) -> str:
        return f"Diagnostic({str(self)!r})"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class YamlError(Exception):
    """The text is not YAML we can read; carries the diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("; ".join(str(d) for d in diagnostics))
        self.diagnostics = diagnostics


class Map(dict):
    """A mapping that knows where it, its keys and its values stood."""

    __slots__ = ("pos", "key_pos", "value_pos")

    def __init__(self, pos: Pos) -> None:
        super().__init__()
        self.pos = pos
        self.key_pos: dict[Any, Pos] = {}
        self.value_pos: dict[Any, Pos] = {}

    def at_key(self, key: Any) -> Pos:
        return self.key_pos.get(key, self.pos)

    def at_value(self, key: Any) -> Pos:
        return self.value_pos.get(key, self.at_key(key))


class Seq(list):
    """A list that knows where it and each of its items stood."""

    __slots__ = ("pos", "item_pos")

    def __init__(self, pos: Pos) -> None:
        super().__init__()
        self.pos = pos
        self.item_pos: list[Pos] = []

    def at(self, index: int) -> Pos:
        return self.item_pos[index] if 0 <= index < len(self.item_pos) else self.pos


def pos_of(value: Any, default: Pos = NOWHERE) -> Pos:
    """Return where a Map or Seq stood, else `default`."""
    return getattr(value, "pos", default)


def _mark_pos(mark: Any) -> Pos:
    return Pos(mark.line + 1, mark.column + 1) if mark is not None else NOWHERE


def load(text: str, path: str) -> Any:
    """Parse one YAML document into Map/Seq/scalars, or raise YamlError."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where, problem = _explain(text, _mark_pos(mark),
                                      exc.problem or exc.context or "cannot read this")
            if "expected a single document" in (exc.context or ""):
                problem = "a flow file holds one YAML document; remove the extra '---'"
            raise YamlError([Diagnostic(path, where, "error", f"YAML syntax: {problem}")]) \
                from None
        except yaml.reader.ReaderError as exc:  # a character YAML does not allow
            before = text[: exc.position]
            where = Pos(before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1)
            raise YamlError([Diagnostic(path, where, "error",
                                        f"YAML: the control character {_code(exc.character)} "
                                        "is not allowed here; remove it")]) from None
        except yaml.YAMLError as exc:
            raise YamlError([Diagnostic(path, NOWHERE, "error", f"YAML: {exc}")]) from None
        if node is None:
            return None
        builder = _Builder(loader, path)
        value = builder.build(node, ())
        if builder.errors:
            raise YamlError(builder.errors)
        return value
    finally:
        loader.dispose()


TAB_HINT = ("a tab is used to indent this line: indent with spaces only (most editors "
            "can insert spaces when you press Tab)")


COLON_HINT = ("a ': ' inside a value makes YAML read a second key: put the whole value in "
              "quotes, like bot: '/^Order: shipped/' or say: \"Note: ...\"")


def _explain(text: str, where: Pos, problem: str) -> tuple[Pos, str]:
    """Say what PyYAML's message means for the mistakes it words worst."""
    lines = text.splitlines()
    line = lines[where.line - 1] if 0 < where.line <= len(lines) else ""
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    if "\t" in indent:
        return Pos(where.line, indent.index("\t") + 1), TAB_HINT
    if problem == "found unknown escape character":
        escape = line[where.col - 1: where.col + 1]
        if escape.startswith("\\"):
            return where, (f"{escape} cannot be written inside double quotes, where a backslash "
                           "starts an escape: put the text in single quotes instead (there "
                           f"backslashes stay as they are), or write the backslash twice: "
                           f"\\{escape}")
    if problem.startswith("mapping values are not allowed") and ": " in line[:where.col - 1]:
        # a key, then a value with ': ' in it (the second ': ' is where YAML gave up)
        return where, COLON_HINT
    return where, problem


def columns(line: str, col: int, value: str) -> list[int] | None:
    """Return the column of each character of `value`, a scalar that starts at `col` of `line`.

    None when the value is not written whole on that line, as it was read (a block
    scalar, a text folded over several lines): then only its start is known.
    """
    start = col - 1
    quote = line[start: start + 1]
    found: list[int] = []
    chars: list[str] = []
    if quote not in ("'", '"'):
        return list(range(col, col + len(value))) if line[start:].startswith(value) else None
    index = start + 1
    while index < len(line):
        char = line[index]
        if char == quote:
            if quote == "'" and line[index + 1: index + 2] == "'":
                found.append(index + 1)
                chars.append("'")
                index += 2
                continue
            return found if "".join(chars) == value else None
        if quote == '"' and char == "\\":
            width = {"x": 2, "u": 4, "U": 8}.get(line[index + 1: index + 2], 0)
            code = line[index + 2: index + 2 + width]
            try:
                decoded = chr(int(code, 16)) if width else _ESCAPES[line[index + 1]]
            except (KeyError, IndexError, ValueError):
                return None
            found.append(index + 1)
            chars.append(decoded)
            index += 2 + width
            continue
        found.append(index + 1)
        chars.append(char)
        index += 1
    return None


# what a backslash and the next character mean inside double quotes (YAML 1.2, 5.7)
_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v",
            "f": "\f", "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\",
            "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029"}


def _code(character: int | str) -> str:
    return f"U+{character if isinstance(character, int) else ord(character):04X}"


class _Builder:
    """Turn composed YAML nodes into Map/Seq/scalars with positions."""

    def __init__(self, loader: Any, path: str) -> None:
        self.loader = loader
        self.path = path
        self.errors: list[Diagnostic] = []
        self.count = 0

    def error(self, node: Any, message: str) -> None:
        if self.count > MAX_NODES + 1:
            return  # past the alias-bomb error, what follows is only its consequences
        self.errors.append(Diagnostic(self.path, _mark_pos(node.start_mark), "error", message))

    def build(self, node: Any, stack: tuple[int, ...]) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            if self.count == MAX_NODES + 1:
                self.error(node, f"the document expands to more than {MAX_NODES} values "
                                 "(too many aliases?)")
            return None
        if isinstance(node, yaml.ScalarNode):
            try:
                return self.loader.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                self.error(node, f"cannot read this value: {getattr(exc, 'problem', exc)}")
                return None
        if id(node) in stack:
            self.error(node, "an alias refers to the structure that contains it")
            return None
        stack = (*stack, id(node))
        if isinstance(node, yaml.SequenceNode):
            seq = Seq(_mark_pos(node.start_mark))
            for item in node.value:
                seq.append(self.build(item, stack))
                seq.item_pos.append(_mark_pos(item.start_mark))
            return seq
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, stack)
        self.error(node, "unsupported YAML node")  # pragma: no cover - YAML has only three kinds
        return None

    def _mapping(self, node: Any, stack: tuple[int, ...]) -> Map:
        own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        try:
            self.loader.flatten_mapping(node)  # resolves '<<' merge keys, merged entries first
        except yaml.YAMLError as exc:
            self.error(node, f"cannot merge: {getattr(exc, 'problem', exc)}")
        merged = len(node.value) - own
        result = Map(_mark_pos(node.start_mark))
        from_merge: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.build(key_node, stack)
            if isinstance(key, (list, dict)) or key is None:
                self.error(key_node, "a key must be a plain name")
                continue
            if key in result.key_pos:
                # PyYAML lists merged maps last-to-first, so among them the later entry is the
                # one YAML means (the first map named wins); an explicit key beats them all.
                if index >= merged and key not in from_merge:
                    first = result.key_pos[key]
                    self.error(key_node, f"duplicate key '{key}' (first at line {first.line})")
                    continue
                from_merge.discard(key)  # an explicit key overrides a merged one
            elif index < merged:
                from_merge.add(key)
            result[key] = self.build(value_node, stack)
            result.key_pos[key] = _mark_pos(key_node.start_mark)
            result.value_pos[key] = _mark_pos(value_node.start_mark)
        return result
