"""The console's canned replies: CANNED_FILE (YAML) read, checked and kept fresh.

The file is either a mapping of shortcut -> text:

    greeting: "Hi {{ visitor.name }}, I'm {{ agent.name }}. How can I help?"

or a list of replies with an optional title:

    - shortcut: order
      title: Ask for the order number
      text: Could you give me your order number? It looks like AB123456.

A shortcut is what the agent types after `/` in the composer: letters, digits, `-` and `_`.
A text may hold `{{ visitor.name }}`, `{{ visitor.email }}`, `{{ agent.name }}` and
`{{ vars.NAME }}`; the console fills them in the browser, as plain text, from the open
conversation (a missing value is an empty string). Nothing here renders a template.

A missing file means no canned replies. A broken one never breaks the console: the replies
come back empty with an error that names the file, line and column, and the console shows it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from flask import current_app

log = logging.getLogger("concierge.canned")

EXTENSION = "concierge.canned"  # app.extensions: the CannedFile of CANNED_FILE
SHORTCUT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
MAX_TITLE_CHARS = 100
MAX_REPLIES = 500
DEFAULT_MAX_TEXT_CHARS = 4000  # MAX_TEXT_CHARS: a longer text could never be sent
PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
KNOWN = re.compile(r"\s*(visitor\.name|visitor\.email|agent\.name|vars(\.[A-Za-z_]\w*)+)\s*",
                   re.ASCII)  # vars.order_id, vars.order.json.carrier
FIELDS = ("shortcut", "title", "text")
STR_TAG = "tag:yaml.org,2002:str"


class CannedError(Exception):
    """The file cannot be used; the message says where and what to fix."""


@dataclass(frozen=True)
class Canned:
    """One canned reply."""

    shortcut: str
    title: str
    text: str

    def as_dict(self) -> dict[str, str]:
        return {"shortcut": self.shortcut, "title": self.title, "text": self.text}


def parse(source: str, name: str = "canned.yaml", *,
          max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> list[Canned]:
    """Read canned replies from YAML text; raise CannedError naming `name`, line and column."""
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise CannedError(f"{_where(name, mark)}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise CannedError(f"{name}: not valid YAML: {exc}") from None
    checker = _Checker(name, max_text_chars)
    if root is None:
        return []  # an empty file: no canned replies
    if isinstance(root, yaml.MappingNode):
        replies = [checker.pair(key, value) for key, value in root.value]
    elif isinstance(root, yaml.SequenceNode):
        replies = [checker.item(node) for node in root.value]
    else:
        raise CannedError(f"{_where(name, root.start_mark)}: the file must be a mapping of "
                          "shortcut: text, or a list of {shortcut, title, text}")
    if len(replies) > MAX_REPLIES:
        raise CannedError(f"{name}: {len(replies)} canned replies; at most {MAX_REPLIES}")
    return replies


def load(path: Path, *, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> list[Canned]:
    """Read the canned replies of `path`; a missing file has none. Raises CannedError."""
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as exc:
        raise CannedError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise CannedError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return parse(source, str(path), max_text_chars=max_text_chars)


class CannedFile:
    """One CANNED_FILE, read again whenever it changes on disk (a lead may edit it any time)."""

    def __init__(self, path: Path, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> None:
        self.path = Path(path)
        self.max_text_chars = max_text_chars
        self._stamp: tuple[int, int] | None | bool = False  # False: never read
        self._replies: list[Canned] = []
        self._error: str | None = None

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def replies(self) -> tuple[list[Canned], str | None]:
        """Return (the replies, None), or ([], why the file cannot be used)."""
        stamp = self._current_stamp()
        if stamp != self._stamp:
            try:
                self._replies, self._error = load(self.path,
                                                  max_text_chars=self.max_text_chars), None
            except CannedError as exc:
                self._replies, self._error = [], str(exc)
                log.warning("canned replies unavailable: %s", exc)
            self._stamp = stamp
        return self._replies, self._error


def current() -> CannedFile:
    """Return the app's CannedFile for CANNED_FILE (relative to the working directory)."""
    path = Path(current_app.config.get("CANNED_FILE") or "canned.yaml")
    max_chars = int(current_app.config.get("MAX_TEXT_CHARS") or DEFAULT_MAX_TEXT_CHARS)
    found = current_app.extensions.get(EXTENSION)
    if found is None or found.path != path or found.max_text_chars != max_chars:
        found = current_app.extensions[EXTENSION] = CannedFile(path, max_chars)
    return found


def _where(name: str, mark: Any) -> str:
    if mark is None:
        return name
    return f"{name}, line {mark.line + 1}, column {mark.column + 1}"


class _Checker:
    def __init__(self, name: str, max_text_chars: int) -> None:
        self.name = name
        self.max_text_chars = max_text_chars
        self.seen: dict[str, int] = {}  # shortcut (lower-case) -> its line

    def fail(self, node: yaml.Node, message: str) -> CannedError:
        return CannedError(f"{_where(self.name, node.start_mark)}: {message}")

    def string(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag != STR_TAG:
            raise self.fail(node, f"{what} must be text (put it in quotes)")
        return node.value

    def pair(self, key: yaml.Node, value: yaml.Node) -> Canned:
        shortcut = self.shortcut(key)
        return self.reply(shortcut, shortcut, self.text(value, shortcut))

    def item(self, node: yaml.Node) -> Canned:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, "each item of the list must be a mapping with 'shortcut', "
                                  "'text' and, if you like, 'title'")
        fields: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = self.string(key, "a field name")
            if name not in FIELDS:
                raise self.fail(key, f"unknown field '{name}'; a canned reply has 'shortcut', "
                                     "'title' and 'text'")
            if name in fields:
                raise self.fail(key, f"'{name}' is given twice")
            fields[name] = value
        for required in ("shortcut", "text"):
            if required not in fields:
                raise self.fail(node, f"this canned reply has no '{required}'")
        shortcut = self.shortcut(fields["shortcut"])
        title = shortcut
        if "title" in fields:
            title = self.string(fields["title"], "'title'").strip()
            if not title:
                raise self.fail(fields["title"], "'title' is empty; leave it out to show the "
                                                 "shortcut instead")
            if len(title) > MAX_TITLE_CHARS:
                raise self.fail(fields["title"], f"'title' is {len(title)} characters long; "
                                                 f"at most {MAX_TITLE_CHARS}")
        return self.reply(shortcut, title, self.text(fields["text"], shortcut))

    def shortcut(self, node: yaml.Node) -> str:
        shortcut = self.string(node, "a shortcut").strip()
        if not SHORTCUT.fullmatch(shortcut):
            raise self.fail(node, f"the shortcut '{shortcut[:50]}' is not one an agent can "
                                  "type after '/': use 1-40 letters, digits, '-' or '_', "
                                  "starting with a letter or digit")
        earlier = self.seen.get(shortcut.lower())
        if earlier is not None:
            raise self.fail(node, f"the shortcut '{shortcut}' is used already, on line {earlier}")
        self.seen[shortcut.lower()] = node.start_mark.line + 1
        return shortcut

    def text(self, node: yaml.Node, shortcut: str) -> str:
        text = self.string(node, f"the text of '{shortcut}'").strip()
        if not text:
            raise self.fail(node, f"the text of '{shortcut}' is empty")
        if len(text) > self.max_text_chars:
            raise self.fail(node, f"the text of '{shortcut}' is {len(text)} characters long; a "
                                  f"message holds at most {self.max_text_chars}")
        for found in PLACEHOLDER.finditer(text):
            if not KNOWN.fullmatch(found.group(1)):
                raise self.fail(node, f"the text of '{shortcut}' uses {found.group(0)[:60]}, "
                                      "which the console cannot fill in: use {{ visitor.name }}, "
                                      "{{ visitor.email }}, {{ agent.name }} or "
                                      "{{ vars.NAME }}")
        return text

    @staticmethod
    def reply(shortcut: str, title: str, text: str) -> Canned:
        return Canned(shortcut=shortcut, title=title, text=text)
