"""Templates and expressions of flows, run in Jinja2's sandbox.

Validation parses every template and expression when a flow loads; compiling
waits for first use and is cached on the object. Text without Jinja markup
is never handed to Jinja at all, which keeps most turns cheap.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, UndefinedError, nodes, pass_context
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from .source import Pos

log = logging.getLogger("concierge.flows")

# Names a template may use; `secrets` only inside `call`.
CONTEXT_NAMES = ("vars", "visitor", "input", "match", "locale", "missed")
VISITOR_FIELDS = ("id", "name", "email", "user_id", "verified", "page_url", "locale")

class _FlowEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's sandbox, where `x.name` on a mapping is only ever its key `name`.

    Variables hold JSON data (a `call` saves the backend's answer): a field called
    `items` or `keys` must read the field, never show the visitor a Python method.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


ENV = _FlowEnvironment(
    undefined=ChainableUndefined,
    autoescape=False,  # bot messages are plain text; clients never render them as HTML
    keep_trailing_newline=False,
)
MARKUP = ("{{", "{%", "{#")


DATE_FORMATS = ("full", "long", "medium", "short")


@pass_context
def _date_filter(context: Any, value: Any, form: str = "full") -> str:
    """`{{ vars.day | date }}`: an ISO date as the visitor's language writes it, in full (or
    `date('short')`: long, medium, short)."""
    try:
        day = datetime.date.fromisoformat(str(value))
    except ValueError:
        return str(value)
    from .dates import describe  # noqa: PLC0415 - Babel's data, only for flows with dates

    return describe(day, context.get(REGION) or context.get("locale") or "en",
                    form if form in DATE_FORMATS else "full")


TRANSLATIONS = "_translations"  # the flow's choices per language, in every template's context
REGION = "_region"  # the visitor's locale where it speaks the conversation's language


@pass_context
def _translate_filter(context: Any, value: Any) -> str:
    """`{{ vars.size | translate }}`: a saved choice in the conversation's language."""
    texts = (context.get(TRANSLATIONS) or {}).get(str(value))
    return texts.get(context.get("locale") or "", str(value)) if texts else str(value)


ENV.filters["date"] = _date_filter
ENV.filters["translate"] = _translate_filter


class Template:
    """A piece of flow text that may hold `{{ ... }}`."""

    __slots__ = ("source", "pos", "where", "_compiled", "ast", "is_plain")

    def __init__(self, source: str, pos: Pos, where: str = "") -> None:
        self.source = source
        self.pos = pos
        self.where = where  # "flow:state" for the log
        self._compiled: Any = None
        self.is_plain = not any(mark in source for mark in MARKUP)
        # Only the checker reads the AST; it drops it afterwards (a third of a flow's memory).
        self.ast: nodes.Template | None = None if self.is_plain else ENV.parse(source)

    def render(self, context: dict[str, Any]) -> str:
        """Render; any error renders empty text and is logged."""
        if self.is_plain:
            return self.source
        try:
            if self._compiled is None:
                self._compiled = ENV.from_string(self.source)
            return self._compiled.render(context)
        except UndefinedError:
            return ""
        except (SecurityError, Exception) as exc:  # noqa: BLE001 - a flow never stops a chat
            log.warning("template error in %s (line %d): %s", self.where, self.pos.line, exc)
            return ""


class Expression:
    """A Jinja expression, such as `vars.order.json.status == 'shipped'`."""

    __slots__ = ("source", "pos", "where", "_compiled", "ast")

    def __init__(self, source: str, pos: Pos, where: str = "") -> None:
        self.source = source
        self.pos = pos
        self.where = where
        self._compiled: Any = None
        self.ast: nodes.Expr | None = parse_expression(source)  # dropped after checking

    def test(self, context: dict[str, Any]) -> bool:
        """Evaluate as a condition; undefined or failing means false."""
        try:
            if self._compiled is None:
                self._compiled = ENV.compile_expression(self.source, undefined_to_none=False)
            value = self._compiled(**context)
            return bool(value)
        except UndefinedError:
            return False
        except (SecurityError, Exception) as exc:  # noqa: BLE001 - a flow never stops a chat
            log.warning("expression error in %s (line %d): %s", self.where, self.pos.line, exc)
            return False


def parse_expression(source: str) -> nodes.Expr:
    """Parse one expression or raise TemplateSyntaxError."""
    parser = Parser(ENV, source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        token = parser.stream.current
        raise TemplateSyntaxError(
            f"unexpected '{token.value}' after the expression", token.lineno, None, None
        )
    return expr


def names_used(ast: nodes.Node) -> list[tuple[str, str | None]]:
    """List (name, attribute) pairs a template or expression reads.

    `vars.order.json` gives ("vars", "order"); a bare `input` gives ("input", None).
    """
    found: list[tuple[str, str | None]] = []
    assigned: set[str] = set()
    for node in ast.find_all((nodes.Assign, nodes.For, nodes.Macro)):
        for target in node.find_all(nodes.Name):
            if target.ctx in ("store", "param"):
                assigned.add(target.name)
    attr_parents: set[int] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        inner = node.node
        if isinstance(inner, nodes.Name) and inner.ctx == "load":
            if isinstance(node, nodes.Getattr):
                key = node.attr
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                key = node.arg.value
            else:
                key = None
            found.append((inner.name, key))
            attr_parents.add(id(inner))
    for node in ast.find_all(nodes.Name):
        if node.ctx == "load" and id(node) not in attr_parents and node.name not in assigned:
            found.append((node.name, None))
    return [(name, key) for name, key in found if name not in assigned]


MISSED = ("no_agents", "left_queue", "max_wait")  # the values of `missed` (docs/flows.md)


def compared_with(ast: nodes.Node, name: str) -> list[str]:
    """List the texts a template or expression compares the name with (== or !=)."""
    found = []
    compares = [ast] if isinstance(ast, nodes.Compare) else []  # find_all skips the root
    for node in [*compares, *ast.find_all(nodes.Compare)]:
        sides = [node.expr, *(operand.expr for operand in node.ops
                              if operand.op in ("eq", "ne"))]
        if any(isinstance(side, nodes.Name) and side.name == name for side in sides):
            found += [side.value for side in sides
                      if isinstance(side, nodes.Const) and isinstance(side.value, str)]
    return found


def unknown_filters_and_tests(ast: nodes.Node) -> list[tuple[str, str, tuple[str, ...]]]:
    """List ("filter"|"test", name, known names) for each filter or test Jinja lacks."""
    found = []
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        kind, known = ("filter", ENV.filters) if isinstance(node, nodes.Filter) else \
            ("test", ENV.tests)
        if node.name not in known:
            found.append((kind, node.name, tuple(known)))
    return found


GLOBALS = frozenset(ENV.globals) | {"loop", "true", "false", "none", "True", "False", "None"}
