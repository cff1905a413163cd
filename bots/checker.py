"""Check a flow file and build its Flow, reporting every mistake at its place.

Nothing an author writes may end in a traceback: every problem becomes a
Diagnostic with a line, a column and, where we can guess, a "did you mean".
What the flow's graph of states allows (reachability, loops) is worked out in
graph.py; this module turns it into diagnostics like the rest.

Longer than our ~300 lines on purpose: it is one pass over one file, with one
method for each construct of the flow language (docs/flows.md), and
the constructs share its reporting and the names it collects as it goes.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import hashlib
import re
import zoneinfo
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError

from . import flow as model
from . import graph
from . import locales as lang
from .matching import NAMED, Invalid, Validator, normalize
from .source import Diagnostic, Map, Pos, Seq, YamlError, columns, load, pos_of
from .templates import (
    CONTEXT_NAMES,
    GLOBALS,
    MISSED,
    VISITOR_FIELDS,
    Expression,
    Template,
    compared_with,
    names_used,
    unknown_filters_and_tests,
)

TOP_KEYS = ("name", "description", "start", "locales", "settings", "intents", "states")
STATE_KEYS = ("set", "say", "ask", "save", "validate", "retries", "on_invalid", "call",
              "on_error", "escalate", "no_agents", "next", "on", "else", "buttons", "end")
MATCHERS = ("keywords", "regex", "payload", "when", "any")
RULE_KEYS = (*MATCHERS, "goto", "set", "say", "locale", "return")
BUTTON_KEYS = ("title", "goto", "payload", "set", "locale", "return")
CALL_KEYS = ("method", "url", "headers", "json", "timeout", "save")
ESCALATE_KEYS = ("queue", "priority", "say", "note")
ELSE_KEYS = ("say", "goto")
SETTINGS_KEYS = ("max_fallbacks", "fallback_to", "idle_timeout", "on_idle", "fallback_locale",
                 "time_zone")
VALIDATE_KINDS = (*NAMED, "regex", "choices")
DATE_OPTIONS = ("future", "weekday")
VALIDATE_KEYS = (*VALIDATE_KINDS, "error", *DATE_OPTIONS)
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
NOT_ZONES = ("localtime", "posixrules", "Factory")  # files of the zone database, not places
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FLOW_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LEADS = ("next", "ask", "buttons", "on", "escalate", "end")
# keys an author may put on the state when they belong inside one of its keys
INSIDE = {"note": "note belongs inside escalate, with the queue: "
                  "escalate: {queue: support, note: \"...\"}",
          "error": "error belongs inside validate, with the validator: "
                   "validate: {email: true, error: \"...\"} (where a failed call goes is "
                   "on_error)",
          "return": "return belongs on a button or a rule, next to its goto: "
                    "- {title: Change my name, goto: ask_name, return: true}",
          "locale": "locale belongs on a button or a rule, to switch language: "
                    "- {title: Deutsch, locale: de}; the flow's languages go at its top: "
                    "locales: [en, de]",
          "future": "future belongs inside validate, with date: "
                    "validate: {date: true, future: true}",
          "weekday": "weekday belongs inside validate, with date: "
                     "validate: {date: true, weekday: true}"}


# what YAML makes of a backslash escape inside double quotes that a regex meant as its own
QUOTED_ESCAPES = {"\b": "\\b", "\a": "\\a", "\x1b": "\\e", "\0": "\\0", "\v": "\\v",
                  "\f": "\\f", "\x85": "\\N", "\u2028": "\\L", "\u2029": "\\P"}
QUOTED_ESCAPES_NAMES = {"\\b": "backspace", "\\a": "bell", "\\e": "escape character",
                        "\\0": "null character", "\\v": "vertical tab", "\\f": "form feed",
                        "\\N": "line break", "\\L": "line break", "\\P": "paragraph break"}
# Python's regex messages, said in words a flow author knows; the column shows where
REGEX_PROBLEMS = (
    ("missing ), unterminated subpattern", "this ( is never closed: add a ) where the group "
                                           "ends, or write \\( to match a parenthesis"),
    ("missing ), unterminated comment", "this (?# comment is never closed: add a )"),
    ("unbalanced parenthesis", "this ) closes nothing: remove it, or write \\) to match a "
                               "parenthesis"),
    ("unterminated character set", "this [ is never closed: add a ] where the set of characters "
                                   "ends, or write \\[ to match a bracket"),
    ("nothing to repeat", "there is nothing before this to repeat: write \\*, \\+ or \\? to "
                          "match the character itself"),
    ("multiple repeat", "two repeats in a row (like ** or ++): remove one, or write a backslash "
                        "before the character to match it"),
    ("bad escape (end of pattern)", "the regex ends with a lone backslash: remove it, or write "
                                    "\\\\ to match a backslash"),
    ("bad escape", "{rest} is not an escape regexes know: remove the backslash, or write \\\\ "
                   "to match a backslash"),
    ("bad character range", "the range {rest} goes backwards: write the earlier character "
                            "first, as in a-z"),
    ("global flags not at the start", "(?i) and other flags must come at the very start of the "
                                      "regex"),
    ("min repeat greater than max repeat", "in {{m,n}} the first number must not be bigger "
                                           "than the second"),
    ("look-behind requires fixed-width", "a look-behind, (?<=...) or (?<!...), must match a "
                                         "fixed number of characters"),
    ("unknown extension", "(? starts a special group regexes do not know: check the spelling, "
                          "or write \\( and \\? to match the characters"),
    ("invalid group reference", "this refers to a group in parentheses that the regex does "
                                "not have"),
)


def regex_problem(exc: re.error) -> str:
    """Say what is wrong with a regex in plain words (the position is the column)."""
    for start, plain in REGEX_PROBLEMS:
        if exc.msg.startswith(start):
            return plain.format(rest=exc.msg[len(start):].strip())
    return exc.msg


def suggest(word: Any, candidates: Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest candidate, or ""."""
    if not isinstance(word, str):
        return ""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    if word.lower() in lowered and lowered[word.lower()] != word:
        return f" (did you mean '{lowered[word.lower()]}'?)"
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def suggest_variable(word: str, candidates: Iterable[str]) -> str:
    """Like `suggest`, and also offer a variable that starts the same (phone for phone_number)."""
    close = suggest(word, candidates)
    if close:
        return close
    related = [c for c in candidates if word.startswith(c) or c.startswith(word)
               or c.split("_")[0] == word.split("_")[0]]
    return f" (did you mean '{max(related, key=len)}'?)" if related else ""


def describe_type(value: Any) -> str:
    """Name a YAML value's type as an author would say it."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (put text in quotes)"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def check_file(path: str | Path) -> tuple[model.Flow | None, list[Diagnostic]]:
    """Read and check one flow file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, [Diagnostic(str(path), None, "error", f"not UTF-8 text: {exc.reason}")]
    except OSError as exc:
        return None, [Diagnostic(str(path), None, "error", f"cannot read: {exc.strerror}")]
    return check_text(text, str(path))


def check_text(text: str, path: str) -> tuple[model.Flow | None, list[Diagnostic]]:
    """Check a flow's text; return the Flow (None on any error) and all diagnostics."""
    try:
        data = load(text, path)
    except YamlError as exc:
        return None, exc.diagnostics
    checker = _Checker(path, Path(path).stem, hashlib.sha1(text.encode()).hexdigest()[:12],
                       text.splitlines())
    flow = checker.check(data)
    diagnostics = sorted(checker.diagnostics, key=lambda d: (d.pos.line, d.pos.col))
    if any(d.is_error for d in diagnostics):
        return None, diagnostics
    return flow, diagnostics


class _Checker:
    """One pass over one file's data."""

    def __init__(self, path: str, stem: str, version: str, lines: list[str]) -> None:
        self.path = path
        self.lines = lines  # to point inside a value, such as at the broken part of a regex
        self.stem = stem
        self.version = version
        self.diagnostics: list[Diagnostic] = []
        self.gotos: list[tuple[str, Pos, str]] = []  # (target, where, key) to resolve at the end
        self.vars_set: set[str] = set()
        self.declared: set[str] = set()  # state names, including states with errors
        self.vars_read: list[tuple[str, Pos]] = []
        self.where = stem
        self.locales: tuple[str, ...] = ()  # the flow's languages, read before any text
        self.locales_broken = False  # the list had a mistake: texts are not checked against it
        self.fallback_locale: str | None = None
        self.detours: list[tuple[str, Pos]] = []  # (target, where) of each `return: true`
        self.translations: dict[str, dict[str, str]] = {}  # for `| translate` (docs/flows.md)

    # --- reporting -------------------------------------------------------------------------

    def error(self, pos: Pos, message: str) -> None:
        self.diagnostics.append(Diagnostic(self.path, pos, "error", message))

    def warn(self, pos: Pos, message: str) -> None:
        self.diagnostics.append(Diagnostic(self.path, pos, "warning", message))

    def inside(self, pos: Pos, needle: str) -> Pos:
        """Point at `needle` in the value that starts at `pos`, when it is on that line."""
        line = self.lines[pos.line - 1] if 0 < pos.line <= len(self.lines) else ""
        found = line.find(needle, pos.col - 1)
        return Pos(pos.line, found + 1) if found >= 0 else pos

    def known_keys(self, data: Map, allowed: tuple[str, ...], what: str,
                   reported: Iterable[str] = ()) -> None:
        for key in data:
            if key not in allowed and key not in reported:
                inside = key in INSIDE and (what.startswith("state ") or key == "error")
                hint = f": {INSIDE[key]}" if inside \
                    else suggest(key, allowed) or f" (allowed: {', '.join(allowed)})"
                self.error(data.at_key(key), f"unknown key '{key}' in {what}{hint}")

    def expect_map(self, value: Any, pos: Pos, what: str) -> Map | None:
        if isinstance(value, Map):
            return value
        self.error(pos, f"{what} must be a mapping of keys, not {describe_type(value)}")
        return None

    # --- scalars ---------------------------------------------------------------------------

    def text(self, value: Any, pos: Pos, what: str) -> str | None:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if value is None:
            self.error(pos, f"{what} is empty")
        else:
            self.error(pos, f"{what} must be text, not {describe_type(value)}")
        return None

    def title(self, value: Any, pos: Pos, what: str) -> str | None:
        """A button's title: text with something on it to read."""
        text = self.text(value, pos, what)
        if text is not None and not text.strip():
            self.error(pos, f"{what} of a button is empty: write what the button says")
            return None
        return text

    def integer(self, value: Any, pos: Pos, what: str, low: int) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= low:
            return value
        self.error(pos, f"{what} must be a whole number of at least {low}, "
                        f"not {describe_type(value) if not isinstance(value, int) else value}")
        return None

    def name(self, value: Any, pos: Pos, what: str) -> str | None:
        text = self.text(value, pos, what)
        if text is not None and not IDENTIFIER.match(text):
            self.error(pos, f"{what} '{text}' is not a valid variable name "
                            "(letters, digits and _; not starting with a digit)")
            return None
        return text

    def goto(self, value: Any, pos: Pos, key: str = "goto") -> str:
        target = self.text(value, pos, key)
        if target is not None and not target.strip():
            self.error(pos, f"{key} is empty: name the state to go to")
            return ""
        if target is not None:
            self.gotos.append((target, pos, key))
        return target or ""

    # --- templates -------------------------------------------------------------------------

    def author_text(self, value: Any, pos: Pos, what: str, required: bool = False,
                    translated: bool = True, nested: bool = False
                    ) -> Template | lang.Localized | None:
        """Read a text a person reads (say, ask, escalate say and note, a validator's error).

        Every such text of the author's comes through here: a template, or in a flow of
        several languages a mapping of locale to template. `required`: empty text is a
        mistake, not a choice. `translated`: the visitor reads it, so one text for every
        language is worth a warning (an agent's note is not). `nested`: the text of one
        language, which cannot be per language again.
        """
        if isinstance(value, Map) and nested:
            self.error(pos, f"{what} must be text, not a mapping: under a language comes its "
                            "text")
            return None
        if isinstance(value, Map):
            texts = self.per_locale(value, pos, what, lambda item, at, name: self.author_text(
                item, at, name, required=required, translated=False, nested=True))
            return lang.Localized(texts, self.fallback_locale or self.locales[0], pos) \
                if texts else None
        if required and value is None:
            self.error(pos, f"{what} is empty: write the text, or remove the key")
            return None
        template = self.template(value, pos, what)
        if required and template is not None and not template.source.strip():
            self.error(pos, f"{what} is empty: write the text, or remove the key")
            return None
        if template is not None and translated:
            self.one_for_all(template.source, pos, what)
        return template

    def one_for_all(self, text: str, pos: Pos, what: str) -> None:
        """Warn of words given once in a flow of several languages: likely not translated."""
        if len(self.locales) < 2 or not any(ch.isalpha() for ch in _WITHOUT_MARKUP.sub("", text)):
            return
        example = ", ".join(f"{locale}: ..." for locale in self.locales)
        self.warn(pos, f"{what} is one text for every language, so every visitor reads it as "
                       f"written: if it needs translating, give it per language ({{{example}}})")

    def per_locale(self, value: Map, pos: Pos, what: str,
                   read: Callable[[Any, Pos, str], Any]) -> dict[str, Any]:
        """Read a mapping of locale to something `read` reads; report wrong and missing locales.

        Returns the readable ones by canonical locale ({} when the flow has no locales).
        """
        if not self.locales:
            self.error(pos, f"{what} is a mapping: to give it per language, name the flow's "
                            "languages at its top (locales: [en, de], the default first); "
                            "otherwise write it as one text")
            return {}
        found: dict[str, Any] = {}
        given: set[str] = set()  # readable or not: a text with a mistake is not also missing
        for key, item in value.items():
            locale = lang.canonical(key)
            if locale not in self.locales and self.locales_broken:
                continue  # the list of locales is wrong, and says so: not each text too
            if locale not in self.locales:
                known = ", ".join(self.locales)
                meant = lang.closest(key, self.locales)
                if meant:  # then only this is wrong here, not also a missing text in it
                    given.add(meant)
                hint = lang.suggest_locale(key, self.locales) or (
                    f": add it to locales at the top ({known}), or remove this text"
                    if locale else f": give a language like {self.locales[0]} ({known})")
                self.error(value.at_key(key), f"'{key}' in {what} is not one of the flow's "
                                              f"locales{hint}")
                continue
            if locale in given:
                self.error(value.at_key(key), f"{what} has two texts in '{locale}'")
                continue
            given.add(locale)
            text = read(item, value.at_value(key), f"{what} ({locale})")
            if text is not None:
                found[locale] = text
        have = ", ".join(sorted(given)) or "none"
        fallback = self.fallback_locale
        for locale in self.locales:
            if locale in given or self.locales_broken:
                continue
            if fallback and fallback in given:
                self.warn(pos, f"{what} has no text in '{locale}' (it has {have}): visitors "
                               f"in '{locale}' read the '{fallback}' one (fallback_locale)")
            else:
                self.error(pos, f"{what} has no text in '{locale}' (it has {have}): add "
                                f"{locale}: ... under it")
        return found

    def template(self, value: Any, pos: Pos, what: str, secrets: bool = False) -> Template | None:
        text = self.text(value, pos, what)
        if text is None:
            return None
        try:
            template = Template(text, pos, self.where)
        except TemplateSyntaxError as exc:
            self.error(_offset(pos, exc.lineno), f"bad template in {what}: {exc.message}")
            return None
        if template.ast is not None:
            self.names(template.ast, pos, what, secrets)
            template.ast = None
        return template

    def expression(self, value: Any, pos: Pos, what: str) -> Expression | None:
        text = self.text(value, pos, what)
        if text is None:
            return None
        try:
            expression = Expression(text, pos, self.where)
        except TemplateSyntaxError as exc:
            self.error(pos, f"bad expression in {what}: {exc.message}")
            return None
        self.names(expression.ast, pos, what, secrets=False)
        expression.ast = None
        return expression

    def names(self, ast: Any, pos: Pos, what: str, secrets: bool) -> None:
        for kind, name, known in unknown_filters_and_tests(ast):
            self.error(pos, f"unknown {kind} '{name}' in {what}{suggest(name, known)}")
        for value in compared_with(ast, "missed"):
            if value not in MISSED:
                self.error(self.inside(pos, value), f"missed is never '{value}' in {what}: it is "
                                                    f"one of {', '.join(MISSED)} (or empty)"
                                                    f"{suggest(value, MISSED)}")
        for name, key in names_used(ast):
            if name == "vars":
                if key is not None:
                    self.vars_read.append((key, pos))
            elif name == "visitor":
                if key is not None and key not in VISITOR_FIELDS:
                    hint = suggest(key, VISITOR_FIELDS) or f" (known: {', '.join(VISITOR_FIELDS)})"
                    self.warn(pos, f"visitor has no field '{key}' in {what}{hint}")
            elif name == "secrets":
                if not secrets:
                    self.error(pos, f"secrets can be used only inside call, not in {what}: "
                                    "they must never reach the visitor")
            elif name not in CONTEXT_NAMES and name not in GLOBALS:
                hint = f" (variables are under vars: vars.{name})"
                self.error(pos, f"unknown name '{name}' in {what}"
                                f"{suggest(name, (*CONTEXT_NAMES, 'secrets')) or hint}")

    def say(self, value: Any, pos: Pos, what: str) -> list[model.Template]:
        if isinstance(value, Seq):
            if not value:
                self.error(pos, f"{what} is an empty list")
            items = [self.author_text(item, value.at(i), what, required=True)
                     for i, item in enumerate(value)]
            return [item for item in items if item is not None]
        template = self.author_text(value, pos, what, required=True)
        return [template] if template is not None else []

    def assignments(self, value: Any, pos: Pos, what: str) -> dict[str, Template]:
        data = self.expect_map(value, pos, what)
        if data is None:
            return {}
        result = {}
        for key, item in data.items():
            name = self.name(key, data.at_key(key), f"variable in {what}")
            template = self.template(item, data.at_value(key), f"{what}.{key}")
            if name is not None and template is not None:
                result[name] = template
                self.vars_set.add(name)
        return result

    # --- the file --------------------------------------------------------------------------

    def check(self, data: Any) -> model.Flow | None:
        if data is None:
            self.error(Pos(1, 1), "the file is empty: a flow needs start and states")
            return None
        top = self.expect_map(data, pos_of(data), "a flow")
        if top is None:
            return None
        for key in top:
            if key in SETTINGS_KEYS:
                self.error(top.at_key(key), f"'{key}' is a setting, but it stands at the top "
                                            "level of the flow: indent it under settings:")
            elif key in STATE_KEYS and key not in TOP_KEYS:
                self.error(top.at_key(key), f"'{key}' is a key of a state, but it stands at "
                                            "the top level of the flow, so it looks "
                                            "mis-indented: indent it under its state, inside "
                                            "states:")
        self.known_keys(top, TOP_KEYS, "the flow", reported=(*STATE_KEYS, *SETTINGS_KEYS))
        flow_id = self.stem
        if "name" in top:
            flow_id = self.text(top["name"], top.at_value("name"), "name") or flow_id
        if not FLOW_ID.match(flow_id):
            self.error(top.at_value("name") if "name" in top else Pos(1, 1),
                       f"flow name '{flow_id}' may hold only letters, digits, '-', '_' and '.'")
        self.where = flow_id
        description = ""
        if "description" in top:
            description = self.text(top["description"], top.at_value("description"),
                                    "description") or ""
        if "locales" in top:
            self.locales = self.flow_locales(top["locales"], top.at_value("locales"))
        settings = self.settings(top.get("settings"), top.at_value("settings")) \
            if "settings" in top else model.Settings()
        intents = self.rules(top["intents"], top.at_value("intents"), "intents") \
            if "intents" in top else []

        states: dict[str, model.State] = {}
        if "states" not in top:
            self.error(top.pos, "the flow has no states: add 'states:' with at least one state")
        else:
            states = self.states(top["states"], top.at_value("states"))
        start = None
        if "start" not in top:
            hint = f": add 'start: {next(iter(states))}'" if states else ""
            self.error(top.pos, f"the flow has no start state{hint}")
        else:
            start = self.goto(top["start"], top.at_value("start"), "start")

        for state in states.values():
            self.state_rules(state, settings)
        self.resolve_gotos(states)
        self.check_variables()
        if any(d.is_error for d in self.diagnostics) or start is None:
            return None
        flow = model.Flow(id=flow_id, path=self.path, start=start, states=states,
                          version=self.version, description=description, settings=settings,
                          intents=intents, locales=self.locales,
                          translations=self.translations)
        self.check_graph(flow)
        return flow

    def settings(self, value: Any, pos: Pos) -> model.Settings:
        settings = model.Settings()
        data = self.expect_map(value, pos, "settings")
        if data is None:
            return settings
        self.known_keys(data, SETTINGS_KEYS, "settings")
        if "max_fallbacks" in data:
            settings.max_fallbacks = self.integer(
                data["max_fallbacks"], data.at_value("max_fallbacks"), "max_fallbacks", 1
            ) or model.DEFAULT_MAX_FALLBACKS
        if "fallback_to" in data:
            settings.fallback_to = self.goto(data["fallback_to"], data.at_value("fallback_to"),
                                             "fallback_to") or None
        if "idle_timeout" in data:
            settings.idle_timeout = self.integer(data["idle_timeout"],
                                                 data.at_value("idle_timeout"), "idle_timeout", 1)
        if "on_idle" in data:
            settings.on_idle = self.goto(data["on_idle"], data.at_value("on_idle"),
                                         "on_idle") or None
        if "fallback_locale" in data:
            at = data.at_value("fallback_locale")
            settings.fallback_locale = self.fallback_locale = self.locale(
                data["fallback_locale"], at, "fallback_locale")
        if "time_zone" in data:
            settings.time_zone = self.time_zone(data["time_zone"], data.at_value("time_zone"))
        if ("idle_timeout" in data) != ("on_idle" in data):
            missing = "on_idle" if "idle_timeout" in data else "idle_timeout"
            self.error(data.pos, f"idle_timeout and on_idle go together: add {missing}")
        return settings

    def flow_locales(self, value: Any, pos: Pos) -> tuple[str, ...]:
        """Read `locales: [en, de]`: the languages the flow speaks, its default first."""
        items = value if isinstance(value, Seq) else [value] if isinstance(value, str) else None
        if not items:
            self.error(pos, "locales must be a list of languages, the default first (like "
                            f"locales: [en, de]), not {describe_type(value)}")
            return ()
        found: list[str] = []
        for index, item in enumerate(items):
            at = items.at(index) if isinstance(items, Seq) else pos
            tag = lang.canonical(item)
            if tag is None:
                self.locales_broken = True
                self.error(at, f"'{item}' in locales is not a language tag: write one like en, "
                               "de, de-CH or pt-BR (BCP 47)")
            elif tag in found:
                self.error(at, f"'{tag}' is twice in locales")
            else:
                found.append(tag)
        unspoken = [tag for tag in found if not lang.speaks(tag)]
        if unspoken:
            spoken = ", ".join(lang.BUILTIN)
            self.warn(pos, f"the bot's own messages (for an answer it did not understand or a "
                           f"refused one) exist in {spoken}; visitors in {', '.join(unspoken)} "
                           "get them in English unless every state that waits gives its else "
                           "and every validate its error in their language")
        return tuple(found)

    def locale(self, value: Any, pos: Pos, what: str) -> str | None:
        """Read one of the flow's locales (for fallback_locale and a switch of language)."""
        tag = lang.canonical(value)
        if self.locales_broken:
            return tag  # the list of locales is wrong, and says so
        if not self.locales:
            self.error(pos, f"{what} needs the flow's languages at its top: locales: [en, de]")
            return None
        if tag not in self.locales:
            hint = lang.suggest_locale(value, self.locales)
            written = f"'{value}'" if isinstance(value, str) else describe_type(value)
            self.error(pos, f"{what} {written} is not one of the flow's locales "
                            f"({', '.join(self.locales)}){hint}")
            return None
        return tag

    def time_zone(self, value: Any, pos: Pos) -> str:
        name = self.text(value, pos, "time_zone")
        if name is None:
            return "UTC"
        try:
            zoneinfo.ZoneInfo(name)
            if name in NOT_ZONES or name not in zoneinfo.available_timezones():
                raise zoneinfo.ZoneInfoNotFoundError(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            hint = suggest(name, zoneinfo.available_timezones()) or \
                " (an IANA name, like Europe/Berlin or America/New_York)"
            self.error(pos, f"unknown time_zone '{name}'{hint}")
            return "UTC"
        return name

    def states(self, value: Any, pos: Pos) -> dict[str, model.State]:
        data = self.expect_map(value, pos, "states")
        if data is None:
            return {}
        if not data:
            self.error(pos, "states is empty: add at least one state")
        self.adopt_misindented(data)
        states = {}
        for key, body in data.items():
            name = self.text(key, data.at_key(key), "a state's name")
            if name is None:
                continue
            if not name.strip():
                self.error(data.at_key(key), "a state's name is empty")
                continue
            self.declared.add(name)
            self.where = f"{self.where.split(':')[0]}:{name}"
            state = self.state(name, body, data.at_key(key), data.at_value(key))
            if state is not None:
                states[name] = state
        self.where = self.where.split(":")[0]
        return states

    def adopt_misindented(self, data: Map) -> None:
        """Give a state's key indented like a state's name back to the state above it.

        `next:` two spaces short of its state reads as a state named 'next'. A real state of
        that name would be a mapping that leads somewhere; anything else is reported once,
        and checked as part of the state above, so its absence there is not reported too.
        """
        above: Any = None
        column = 0  # where the keys of the state above start
        for key in list(data):
            body = data[key]
            if key not in STATE_KEYS or (isinstance(body, Map) and set(body) & set(LEADS)):
                above = key
                column = min((p.col for p in body.key_pos.values()),
                             default=data.at_key(key).col + 2) if isinstance(body, Map) \
                    else data.at_key(key).col + 2
                continue
            where = data.at_key(key)
            problem = (f"'{key}' is a key of a state, but it stands where the names of states "
                       "stand, so it looks mis-indented")
            owner = data.get(above) if above is not None else None
            if above is None or not (owner is None or isinstance(owner, Map)):
                self.error(where, f"{problem}: indent it under the state it belongs to")
            elif isinstance(owner, Map) and key in owner:
                self.error(where, f"{problem}, and state '{above}' above it already has {key} "
                                  f"(line {owner.at_key(key).line}): remove one of them")
            else:
                if owner is None:  # `b:` with all its keys short: they are all of them
                    owner = data[above] = Map(where)
                    data.value_pos[above] = where
                self.error(where, f"{problem}: indent it under state '{above}', to column "
                                  f"{column}")
                owner[key] = body
                owner.key_pos[key] = where
                owner.value_pos[key] = data.at_value(key)
            del data[key]

    def state(self, name: str, value: Any, key_pos: Pos, pos: Pos) -> model.State | None:
        if value is None:
            self.error(key_pos, f"state '{name}' is empty: give it say, ask, buttons, next, "
                                "escalate or end")
            return None
        data = self.expect_map(value, pos, f"state '{name}'")
        if data is None:
            return None
        self.known_keys(data, STATE_KEYS, f"state '{name}'")
        state = model.State(name=name, pos=key_pos)
        at = data.at_value
        what = f"state '{name}'"
        if "set" in data:
            state.set = self.assignments(data["set"], at("set"), f"set of {what}")
        if "say" in data:
            state.say = self.say(data["say"], at("say"), f"say of {what}")
        if "ask" in data:
            state.ask = self.author_text(data["ask"], at("ask"), f"ask of {what}", required=True)
        if "save" in data:
            state.save = self.name(data["save"], at("save"), "save")
            if state.save:
                self.vars_set.add(state.save)
        if "validate" in data:
            state.validate = self.validator(data["validate"], at("validate"), what)
        if "retries" in data:
            retries = self.integer(data["retries"], at("retries"), "retries", 0)
            state.retries = model.DEFAULT_RETRIES if retries is None else retries
        for key in ("on_invalid", "on_error", "no_agents"):
            if key in data:
                setattr(state, key, self.goto(data[key], at(key), key) or None)
        if "call" in data:
            state.call = self.call(data["call"], at("call"), what)
        if "escalate" in data:
            state.escalate = self.escalation(data["escalate"], at("escalate"), what)
        if "next" in data:
            state.next = self.branches(data["next"], at("next"))
        if "on" in data:
            state.on = self.rules(data["on"], at("on"), f"on of {what}")
        if "else" in data:
            state.else_ = self.otherwise(data["else"], at("else"), what)
        if "buttons" in data:
            state.buttons = self.buttons(data["buttons"], at("buttons"), what,
                                         asks="ask" in data)
            self.answers(state)
        if "end" in data:
            if data["end"] is True:
                state.end = True
            elif data["end"] is not False:
                self.error(at("end"), f"end must be true, not {describe_type(data['end'])}")
        self.state_shape(state, data)
        return state

    def state_shape(self, state: model.State, data: Map) -> None:
        """Catch combinations of keys that cannot work together."""
        what = f"state '{state.name}'"
        present = set(data)
        if not present & set(LEADS):
            self.error(state.pos, f"{what} is a dead end: give it next, ask, buttons, on, "
                                  "escalate or end: true")
        doers = [key for key in ("ask", "call", "escalate") if key in present]
        if len(doers) > 1:
            self.error(data.at_key(doers[1]), f"{what} can do only one of ask, call and "
                                              f"escalate; it has {' and '.join(doers)}")

        def unused(keys: Iterable[str], why: str) -> None:
            for key in keys:
                if key in present:
                    self.error(data.at_key(key), f"{key} is never used in {what}: {why}")

        if "end" in present and state.end:
            unused(("next", "ask", "buttons", "on", "else", "call", "escalate"),
                   "the conversation closes after an end state's messages")
        elif "escalate" in present:
            unused(("next", "buttons", "on", "else"),
                   "the state hands the visitor to a person (or goes on at no_agents)")
        elif "next" in present and not present & {"ask", "call"}:
            unused(("buttons", "on", "else"), "next moves on at once, without waiting")
        if "ask" in present:
            unused(("else",), "an invalid answer gets the validator's error, and any "
                              "answer is valid without validate")
        if "else" in present and not present & {"buttons", "on"}:
            self.error(data.at_key("else"), f"else is used only in a state that waits for "
                                            f"buttons or on rules, and {what} has neither")
        if "buttons" in present and not present & {"say", "ask"}:
            self.error(data.at_key("buttons"), f"buttons need a say or an ask in {what}: they "
                                               "are shown with the state's last message")
        pairs = (("save", "ask", "save stores the answer of ask (for call, put save inside "
                                 "call)"),
                 ("validate", "ask", "validate checks the answer of ask"),
                 ("retries", "validate", "retries counts invalid answers"),
                 ("on_invalid", "validate", "on_invalid is where invalid answers go"),
                 ("on_error", "call", "on_error is where a failed call goes"),
                 ("no_agents", "escalate", "no_agents is where a failed escalation goes"))
        for key, needs, why in pairs:
            if key in present and needs not in present:
                self.error(data.at_key(key), f"{key} needs {needs} in {what}: {why}")
        if "call" in present and "on_error" not in present:
            self.error(data.at_key("call"), f"call needs on_error in {what}: where to go when "
                                            "the request fails or times out")
        if "call" in present and "next" not in present:
            self.error(data.at_key("call"), f"call needs next in {what}: where to go after "
                                            "a successful request")
        if "escalate" in present and "no_agents" not in present:
            self.error(data.at_key("escalate"), f"escalate needs no_agents in {what}: where "
                                                "the bot goes on when nobody can take it")
        if "ask" in present and "next" not in present:
            self.error(data.at_key("ask"), f"ask needs next in {what}: where to go after a "
                                           "valid answer")

    def state_rules(self, state: model.State, settings: model.Settings) -> None:
        """Checks that need the flow's settings."""
        if state.validate and not state.on_invalid and not settings.fallback_to:
            self.error(state.pos, f"state '{state.name}' validates its answer but has no "
                                  "on_invalid, and the flow has no settings.fallback_to: add "
                                  "one of them")

    def validator(self, value: Any, pos: Pos, what: str) -> Validator | None:
        if isinstance(value, str):
            if value in NAMED:
                return Validator(value)
            self.error(pos, f"unknown validator '{value}'{suggest(value, NAMED)} "
                            f"(known: {', '.join(NAMED)}, {{regex: ...}}, {{choices: [...]}})")
            return None
        data = self.expect_map(value, pos, "validate")
        if data is None:
            return None
        self.known_keys(data, VALIDATE_KEYS, "validate")
        message = self.validator_error(data, what)
        kinds = [key for key in VALIDATE_KINDS if key in data]
        if not kinds and any(key not in VALIDATE_KEYS for key in data):
            return None  # a misspelt validator: reported with its suggestion
        if len(kinds) != 1:
            self.error(pos, "validate needs exactly one validator: one of "
                            f"{', '.join(VALIDATE_KINDS)}"
                            + (f", not both {kinds[0]} and {kinds[1]}" if len(kinds) > 1 else
                               " (future and weekday go with date: validate: {date: true, "
                               "future: true})" if set(data) & set(DATE_OPTIONS) else
                               " (like validate: {email: true, error: \"...\"})"))
            return None
        kind = kinds[0]
        options = self.date_options(data, kind)
        if kind in NAMED:
            if data[kind] is not True:
                self.error(data.at_value(kind),
                           f"{kind} in validate must be true, not {describe_type(data[kind])}: "
                           f"write validate: {{{kind}: true, error: \"...\"}}, or "
                           f"validate: {kind} for the default message")
                return None
            return Validator(kind, message=message, **options)
        if kind == "regex":
            pattern = self.regex(data["regex"], data.at_value("regex"))
            if pattern is None:
                return None
            return Validator("regex", pattern=pattern, message=message)
        return self.choices(data["choices"], data.at_value("choices"), message)

    def date_options(self, data: Map, kind: str) -> dict[str, bool]:
        """Read `future` and `weekday`, which only a date validator takes."""
        options = {}
        for key in DATE_OPTIONS:
            if key not in data:
                continue
            if kind != "date":
                self.error(data.at_key(key), f"{key} is an option of the date validator only "
                                             f"(validate: {{date: true, {key}: true}}), not of "
                                             f"{kind}")
            elif not isinstance(data[key], bool):
                self.error(data.at_value(key), f"{key} in validate must be true or false, not "
                                               f"{describe_type(data[key])}")
            else:
                options[key] = data[key]
        return options

    def choices(self, value: Any, pos: Pos, message: Any) -> Validator | None:
        """Read `choices`: each one text, or one text per language (stored in the default)."""
        if not isinstance(value, Seq) or not value:
            self.error(pos, f"choices must be a list of answers, not {describe_type(value)}")
            return None
        stored: list[str] = []
        shown: dict[str, list[str]] = {locale: [] for locale in self.locales}
        aliases: dict[str, str] = {}
        first: dict[str, tuple[Pos, str]] = {}  # normalized text -> where, and in which language
        for index, item in enumerate(value):
            at = value.at(index)
            if isinstance(item, Map):
                texts = self.per_locale(item, at, "a choice", self.text)
                if not texts:
                    continue
                canonical = texts.get(self.locales[0]) or next(iter(texts.values()))
                self.translations.setdefault(canonical, texts)
            else:
                text = self.text(item, at, "a choice")
                if text is None:
                    continue
                self.one_for_all(text, at, "a choice")
                canonical, texts = text, {}
            for locale in shown:
                shown[locale].append(texts.get(locale, canonical))
            for locale, text in (texts or {"": canonical}).items():
                key = normalize(text)
                if aliases.get(key, canonical) != canonical:
                    where, other = first[key]
                    self.error(at, f"the choice '{text}'{_in(locale)} is also the text of "
                                   f"another choice{_in(other)} (line {where.line}): the bot "
                                   "could not tell which one the visitor meant; give one of "
                                   "them other words")
                aliases.setdefault(key, canonical)
                first.setdefault(key, (at, locale))
            aliases.setdefault(normalize(canonical), canonical)
            stored.append(canonical)
        return Validator("choices", choices=tuple(stored), message=message, aliases=aliases,
                         choice_texts={k: tuple(v) for k, v in shown.items()})

    def validator_error(self, data: Map, what: str) -> Template | lang.Localized | None:
        """The author's message for a refused answer: one text (or one per language)."""
        if "error" not in data:
            return None
        raw, at = data["error"], data.at_value("error")
        name = f"the error of validate in {what}"
        if isinstance(raw, Seq):
            self.error(at, f"{name} must be one text, not {describe_type(raw)}: the visitor "
                           "gets it as one message when an answer is refused")
            return None
        return self.author_text(raw, at, name, required=True)

    def regex(self, value: Any, pos: Pos) -> re.Pattern[str] | None:
        text = self.text(value, pos, "regex")
        if text is None:
            return None
        line = self.lines[pos.line - 1] if 0 < pos.line <= len(self.lines) else ""
        where = columns(line, pos.col, text)

        def at(index: int) -> Pos:
            return Pos(pos.line, where[index]) if where and index < len(where) else pos

        stray = next((i for i, char in enumerate(text) if char in QUOTED_ESCAPES), None)
        if stray is not None:
            escape = QUOTED_ESCAPES[text[stray]]
            meant = "".join(QUOTED_ESCAPES.get(char, char) for char in text)
            example = "'" + meant.replace("'", "''") + "'"
            self.error(at(stray), f"regex in double quotes: YAML reads {escape} there as a "
                                  f"{QUOTED_ESCAPES_NAMES[escape]}, so the regex cannot match "
                                  "what you meant; write it in single quotes, where "
                                  f"{escape} stays as it is: {example}")
            return None
        try:
            return re.compile(text)
        except re.error as exc:
            self.error(at(exc.pos or 0), f"bad regex '{text}': {regex_problem(exc)}")
            return None

    def call(self, value: Any, pos: Pos, what: str) -> model.Call | None:
        data = self.expect_map(value, pos, f"call of {what}")
        if data is None:
            return None
        self.known_keys(data, CALL_KEYS, "call")
        at = data.at_value
        method = "GET"
        if "method" in data:
            method = (self.text(data["method"], at("method"), "method") or "GET").upper()
            if method not in HTTP_METHODS:
                self.error(at("method"), f"method '{method}' is not one of "
                                         f"{', '.join(HTTP_METHODS)}")
        if "url" not in data:
            self.error(data.pos, f"call of {what} needs a url")
            return None
        url = self.template(data["url"], at("url"), "url", secrets=True)
        headers: dict[str, Template] = {}
        if "headers" in data:
            headers_map = self.expect_map(data["headers"], at("headers"), "headers")
            for key, item in (headers_map or {}).items():
                header = self.template(item, headers_map.at_value(key), f"header {key}",
                                       secrets=True)
                if header is not None:
                    headers[str(key)] = header
        body = self.body(data["json"], at("json")) if "json" in data else None
        timeout = model.DEFAULT_CALL_TIMEOUT_S
        if "timeout" in data:
            raw = data["timeout"]
            if isinstance(raw, (int, float)) and not isinstance(raw, bool) and \
                    0 < raw <= model.MAX_CALL_TIMEOUT_S:
                timeout = float(raw)
            else:
                self.error(at("timeout"), "timeout must be a number of seconds above 0 and at "
                                          f"most {model.MAX_CALL_TIMEOUT_S:g}")
        save = None
        if "save" in data:
            save = self.name(data["save"], at("save"), "save")
            if save:
                self.vars_set.add(save)
        if url is None:
            return None
        return model.Call(method=method, url=url, pos=pos, headers=headers, json=body,
                          timeout=timeout, save=save)

    def body(self, value: Any, pos: Pos) -> Any:
        """Turn a json body's string leaves into templates."""
        if isinstance(value, str):
            return self.template(value, pos, "json", secrets=True)
        if isinstance(value, Map):
            return {str(k): self.body(v, value.at_value(k)) for k, v in value.items()}
        if isinstance(value, Seq):
            return [self.body(v, value.at(i)) for i, v in enumerate(value)]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        self.error(pos, f"json cannot hold {describe_type(value)}")
        return None

    def escalation(self, value: Any, pos: Pos, what: str) -> model.Escalation | None:
        if isinstance(value, str):  # shorthand: `escalate: support`
            if not value.strip():
                self.error(pos, f"the queue of escalate in {what} is empty (for example: support)")
                return None
            return model.Escalation(queue=value, pos=pos)
        data = self.expect_map(value, pos, f"escalate of {what}")
        if data is None:
            return None
        self.known_keys(data, ESCALATE_KEYS, "escalate")
        if "queue" not in data:
            self.error(data.pos, f"escalate of {what} needs a queue (for example: support)")
            return None
        queue = self.text(data["queue"], data.at_value("queue"), "queue")
        if queue is not None and not queue.strip():
            self.error(data.at_value("queue"), f"the queue of escalate in {what} is empty")
            queue = None
        priority = 0
        if "priority" in data:
            raw = data["priority"]
            if isinstance(raw, int) and not isinstance(raw, bool):
                priority = raw
            else:
                self.error(data.at_value("priority"), "priority must be a whole number, not "
                                                      f"{describe_type(raw)}")
        say = self.say(data["say"], data.at_value("say"), "escalate say") if "say" in data \
            else []
        note = None
        if "note" in data:
            raw = data["note"]
            if isinstance(raw, (Seq, Map)):
                self.error(data.at_value("note"), f"the note of escalate in {what} must be one "
                                                  f"text, not {describe_type(raw)}: the agent "
                                                  "sees it as one line with the handoff")
            else:
                note = self.author_text(raw, data.at_value("note"),
                                        f"the note of escalate in {what}", required=True,
                                        translated=False)
        if queue is None:
            return None
        return model.Escalation(queue=queue, pos=pos, priority=priority, say=say, note=note)

    def branches(self, value: Any, pos: Pos) -> list[model.Branch]:
        if not isinstance(value, Seq):
            target = self.goto(value, pos, "next")
            return [model.Branch(goto=target, pos=pos)] if target else []
        if not value:
            self.error(pos, "next is an empty list")
        branches = []
        for index, item in enumerate(value):
            item_pos = value.at(index)
            data = self.expect_map(item, item_pos, "a choice of next")
            if data is None:
                continue
            self.known_keys(data, ("when", "goto"), "a choice of next")
            when = self.expression(data["when"], data.at_value("when"), "when") \
                if "when" in data else None
            if "goto" not in data:
                self.error(item_pos, "a choice of next needs a goto")
                continue
            target = self.goto(data["goto"], data.at_value("goto"))
            branches.append(model.Branch(goto=target, pos=item_pos, when=when))
            if "when" not in data and index != len(value) - 1:
                self.error(item_pos, "a choice of next without when must come last: the "
                                     "choices after it are never used")
        if value and isinstance(value[-1], Map) and "when" in value[-1]:
            self.error(value.at(len(value) - 1), "next must end with a choice without when "
                                                 "(- goto: somewhere), for when none is true")
        return branches

    def rules(self, value: Any, pos: Pos, what: str) -> list[model.Rule]:
        if not isinstance(value, Seq):
            self.error(pos, f"{what} must be a list of rules (- keywords: [...]\\n  goto: ...), "
                            f"not {describe_type(value)}")
            return []
        rules = [self.rule(item, value.at(i), what) for i, item in enumerate(value)]
        return [rule for rule in rules if rule is not None]

    def rule(self, value: Any, pos: Pos, what: str) -> model.Rule | None:
        data = self.expect_map(value, pos, f"a rule in {what}")
        if data is None:
            return None
        self.known_keys(data, RULE_KEYS, f"a rule in {what}")
        matchers = [key for key in MATCHERS if key in data]
        if not matchers:
            self.error(pos, f"a rule in {what} needs a matcher: one of {', '.join(MATCHERS)}")
            return None
        if len(matchers) > 1:
            self.error(data.at_key(matchers[1]), f"a rule has exactly one matcher, this one has "
                                                 f"{' and '.join(matchers)}: split it in two")
            return None
        if "goto" not in data and "locale" not in data:
            self.error(pos, f"a rule in {what} needs a goto (or a locale, to switch language "
                            "and stay where the visitor is)")
            return None
        matcher = matchers[0]
        at = data.at_value(matcher)
        raw = data[matcher]
        target = self.goto(data["goto"], data.at_value("goto")) if "goto" in data else ""
        rule = model.Rule(matcher=matcher, goto=target, pos=pos,
                          goto_pos=data.at_value("goto") if "goto" in data else None)
        if matcher == "keywords" and isinstance(raw, Map):
            rule.localized = self.per_locale(raw, at, "keywords", self.keywords)
        elif matcher == "keywords":
            rule.keywords = self.keywords(raw, at, "keywords")
        elif matcher == "regex":
            rule.regex = self.regex(raw, at)
        elif matcher == "payload":
            rule.payload = self.text(raw, at, "payload")
        elif matcher == "when":
            rule.when = self.expression(raw, at, "when")
        elif raw is not True:
            self.error(at, f"any must be true, not {describe_type(raw)}")
        if "set" in data:
            rule.set = self.assignments(data["set"], data.at_value("set"), "set of a rule")
        if "say" in data:
            rule.say = self.say(data["say"], data.at_value("say"), "say of a rule")
        rule.locale, rule.returns = self.switches(data, rule.goto or None)
        return rule

    def keywords(self, raw: Any, at: Pos, what: str) -> tuple[str, ...]:
        words = raw if isinstance(raw, Seq) else Seq(at) if raw is None else [raw]
        keywords = []
        for index, word in enumerate(words):
            where = words.at(index) if isinstance(words, Seq) else at
            text = self.text(word, where, "a keyword")
            if text is not None and not normalize(text):
                self.error(where, f"keyword '{text}' has no letters or digits to match")
            elif text is not None:
                keywords.append(normalize(text))
        if not words:
            self.error(at, f"{what} is an empty list")
        return tuple(keywords)

    def switches(self, data: Map, target: str | None) -> tuple[str | None, bool]:
        """Read a rule's or a button's `locale` (switch language) and `return` (a detour)."""
        locale = self.locale(data["locale"], data.at_value("locale"), "locale") \
            if "locale" in data else None
        returns = False
        if "return" in data:
            if not isinstance(data["return"], bool):
                self.error(data.at_value("return"), "return must be true or false, not "
                                                    f"{describe_type(data['return'])}")
            elif data["return"] and target is None:
                self.error(data.at_key("return"), "return needs a goto: the state to visit "
                                                  "before coming back here")
            elif data["return"]:
                returns = True
                self.detours.append((target or "", data.at_key("return")))
        return locale, returns

    def otherwise(self, value: Any, pos: Pos, what: str) -> model.Else | None:
        data = self.expect_map(value, pos, f"else of {what}")
        if data is None:
            return None
        self.known_keys(data, ELSE_KEYS, "else")
        result = model.Else()
        if "say" in data:
            result.say = self.say(data["say"], data.at_value("say"), "else say")
        if "goto" in data:
            result.goto = self.goto(data["goto"], data.at_value("goto")) or None
        return result

    def answers(self, state: model.State) -> None:
        """An answering button's fixed answer must pass the ask's validator, in each language."""
        validate = state.validate
        if validate is not None and validate.kind == "date":
            # "Tomorrow" is after today and a weekday on some days only: what the checker can
            # know any day is that the answer is a date (the question checks the rest)
            validate = dataclasses.replace(validate, future=False, weekday=False)
        for button in state.buttons:
            if button.answer is None or validate is None:
                continue
            for locale in button.answers or {None: button.answer}:
                answer = button.answer_in(locale)
                try:
                    validate.check(answer or "", locale, datetime.date(2026, 12, 1))
                except Invalid:
                    given = "payload" if answer != button.title_in(locale) else "title"
                    self.error(button.pos, f"the button '{button.title_in(locale)}' of state "
                                           f"'{state.name}' answers '{answer}' (its {given}), "
                                           f"which the validator {validate.kind} "
                                           "refuses: change the answer, or give the button a "
                                           "goto to go elsewhere without answering")
                    break

    def buttons(self, value: Any, pos: Pos, what: str, asks: bool = False
                ) -> list[model.Button]:
        if not isinstance(value, Seq):
            self.error(pos, f"buttons must be a list of {{title, goto}}, not "
                            f"{describe_type(value)}")
            return []
        buttons: list[model.Button] = []
        seen: dict[str, Pos] = {}  # normalized title, in any language -> its button
        payloads: dict[str, Pos] = {}
        for index, item in enumerate(value):
            item_pos = value.at(index)
            data = self.expect_map(item, item_pos, "a button")
            if data is None:
                continue
            self.known_keys(data, BUTTON_KEYS, "a button")
            missing = [key for key in ("title", "goto") if key not in data
                       and not (key == "goto" and asks)]
            if missing:
                hint = "" if asks or "goto" not in missing else \
                    " (only a button of a state with ask may leave out goto: it then answers " \
                    "the question)"
                self.error(item_pos, f"a button needs {' and '.join(missing)}{hint}")
                continue
            raw_title, title_at = data["title"], data.at_value("title")
            titles: dict[str, str] = {}
            if isinstance(raw_title, Map):
                titles = self.per_locale(raw_title, title_at, "title", self.title)
                title = titles.get(self.fallback_locale or self.locales[0]) or \
                    next(iter(titles.values()), None) if titles else None
            else:
                title = self.title(raw_title, title_at, "title")
                if title is not None and "locale" not in data:  # "Deutsch" is for everyone
                    self.one_for_all(title, title_at, f"the title of a button of {what}")
            target: str | None = self.goto(data["goto"], data.at_value("goto")) \
                if "goto" in data else None
            payload = target if target is not None else title or ""
            if target is not None and data.get("return") is True:
                payload = f"{target}+return"  # the same goto without return is another button
            if "payload" in data:
                payload = self.text(data["payload"], data.at_value("payload"), "payload") or ""
            answer = None if target is not None or title is None else \
                payload if "payload" in data else title
            answers = dict(titles) if answer is not None and "payload" not in data else {}
            assigned = self.assignments(data["set"], data.at_value("set"), "set of a button") \
                if "set" in data else {}
            locale, returns = self.switches(data, target)
            if title is None:
                continue
            keys = tuple(dict.fromkeys(normalize(t) for t in (title, *titles.values())))
            clash = next((key for key in keys if key in seen), None)
            if clash is not None:
                written = next(t for t in (title, *titles.values()) if normalize(t) == clash)
                self.error(title_at, f"two buttons of {what} are titled '{written}' (first at "
                                     f"line {seen[clash].line})")
            elif payload in payloads:
                self.error(item_pos, f"two buttons of {what} have the payload '{payload}' "
                                     f"(first at line {payloads[payload].line}): give one a "
                                     "payload of its own")
            for key in keys:
                seen.setdefault(key, item_pos)
            payloads.setdefault(payload, item_pos)
            buttons.append(model.Button(title=title, goto=target, payload=payload,
                                        pos=item_pos, title_keys=keys, set=assigned,
                                        answer=answer, titles=titles, answers=answers,
                                        locale=locale, returns=returns))
        return buttons

    # --- the whole flow --------------------------------------------------------------------

    def resolve_gotos(self, states: dict[str, model.State]) -> None:
        for target, pos, key in self.gotos:
            if target and target not in self.declared:
                self.error(pos, f"unknown state '{target}' in {key}{suggest(target, states)}")

    def check_variables(self) -> None:
        for name, pos in self.vars_read:
            if name not in self.vars_set:
                hint = suggest_variable(name, self.vars_set)
                self.error(self.inside(pos, f"vars.{name}"), f"variable '{name}' is never set "
                                                             "by any state (set, save or call "
                                                             f"save){hint}")

    def check_graph(self, flow: model.Flow) -> None:
        """Report unreachable states, endless loops and states that can never finish."""
        edges = graph.edges(flow)
        for name in graph.unreached(flow, edges):
            self.warn(flow.states[name].pos, f"state '{name}' is never reached from start "
                                             f"'{flow.start}'")
        for name in graph.stuck(flow, edges):
            self.error(flow.states[name].pos, f"from state '{name}' the visitor can never reach "
                                              "a person or an end (add a way out, such as a "
                                              "button or an intent that leads to an escalate or "
                                              "end state)")
        for cycle in graph.instant_loops(flow):
            loop = " -> ".join([*cycle, cycle[0]])
            self.error(flow.states[cycle[0]].pos,
                       f"states {loop} go round forever without waiting for the visitor")
        for target, pos in self.detours:
            stop = _question_after(flow, target)
            if stop is not None:
                self.warn(pos, f"return: true comes back after the next question answered, "
                               f"and from '{target}' the bot asks none before it {stop}: "
                               "lead the goto to a state with ask, or remove return")
        chain = graph.overlong_chain(flow)
        if chain is not None:
            name, length = chain
            self.error(flow.states[name].pos,
                       f"from state '{name}', {length} states in a row move on "
                       f"without waiting; one turn enters at most {graph.MAX_STEPS_PER_TURN} "
                       "states: let one of them wait (ask, buttons or on)")


def _in(locale: str) -> str:
    return f" ({locale})" if locale else ""


def _question_after(flow: model.Flow, name: str) -> str | None:
    """Say where the bot stops without a question on the way from `name`, or None if it asks."""
    seen: set[str] = set()
    while name in flow.states and name not in seen:
        seen.add(name)
        state = flow.states[name]
        if state.ask:
            return None
        if state.end:
            return f"ends at '{name}'"
        if state.escalate:
            return f"hands over at '{name}'"
        if not state.next or state.waits:
            return f"waits at '{name}'"
        name = state.next[0].goto
    return f"goes round at '{name}'"


_WITHOUT_MARKUP = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def _offset(pos: Pos, lineno: int | None) -> Pos:
    """Point inside a multi-line template at the line Jinja blamed."""
    if not lineno or lineno <= 1:
        return pos
    return Pos(pos.line + lineno, 1)
