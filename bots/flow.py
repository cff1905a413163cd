"""The checked form of a flow: what the checker builds and the engine runs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .matching import Validator
from .source import Pos
from .templates import Expression, Template

DEFAULT_MAX_FALLBACKS = 2
DEFAULT_RETRIES = 2
DEFAULT_CALL_TIMEOUT_S = 5.0  # a visitor waits on the call; keep it short
MAX_CALL_TIMEOUT_S = 30.0


@dataclass(slots=True)
class Rule:
    """A matcher and where it leads, in `on` or `intents`."""

    matcher: str  # keywords | regex | payload | when | any
    goto: str  # "": stay (a rule that only switches language), the state entered again
    pos: Pos
    keywords: tuple[str, ...] = ()  # normalized; these match in every language
    localized: dict[str, tuple[str, ...]] = field(default_factory=dict)  # locale -> keywords
    regex: re.Pattern[str] | None = None
    payload: str | None = None
    when: Expression | None = None
    set: dict[str, Template] = field(default_factory=dict)
    say: list[Template] = field(default_factory=list)
    goto_pos: Pos | None = None
    locale: str | None = None  # the conversation goes on in this language
    returns: bool = False  # a detour: the next answered question comes back to this state

    def keywords_in(self, locale: str | None, fallback: str | None = None) -> tuple[str, ...]:
        """The keywords that match in `locale` (the fallback_locale's, where it has none)."""
        if (locale or "") in self.localized or not fallback:
            return self.keywords + self.localized.get(locale or "", ())
        return self.keywords + self.localized.get(fallback, ())

    def describe(self) -> str:
        if self.matcher == "keywords":
            words = self.keywords or next(iter(self.localized.values()), ())
            return "keywords: " + ", ".join(words)
        if self.matcher == "regex":
            return f"regex: {self.regex.pattern if self.regex else ''}"
        if self.matcher == "payload":
            return f"payload: {self.payload}"
        if self.matcher == "when":
            return f"when: {self.when.source if self.when else ''}"
        return "any"


@dataclass(slots=True)
class Button:
    """A quick reply."""

    title: str  # in the flow's default language
    goto: str | None  # None: a button of an `ask` that answers it (with `answer`)
    payload: str
    pos: Pos
    title_keys: tuple[str, ...]  # its normalized titles in every language, to match a typed one
    set: dict[str, Template] = field(default_factory=dict)
    answer: str | None = None  # what an answering button answers, as if the visitor typed it
    titles: dict[str, str] = field(default_factory=dict)  # locale -> title, when given so
    answers: dict[str, str] = field(default_factory=dict)  # locale -> answer, likewise
    locale: str | None = None  # the conversation goes on in this language
    returns: bool = False  # a detour: the next answered question comes back to this state

    def title_in(self, locale: str | None) -> str:
        return self.titles.get(locale or "", self.title)

    def answer_in(self, locale: str | None) -> str | None:
        return self.answers.get(locale or "", self.answer)


@dataclass(slots=True)
class Branch:
    """One choice of `next`: a condition (or none) and a target."""

    goto: str
    pos: Pos
    when: Expression | None = None


@dataclass(slots=True)
class Call:
    """An HTTP request to the site owner's backend."""

    method: str
    url: Template
    pos: Pos
    headers: dict[str, Template] = field(default_factory=dict)
    json: Any = None  # a structure whose string leaves are Templates
    timeout: float = DEFAULT_CALL_TIMEOUT_S
    save: str | None = None


@dataclass(slots=True)
class Escalation:
    """Where and how a state hands the visitor to a person."""

    queue: str
    pos: Pos
    priority: int = 0
    say: list[Template] = field(default_factory=list)
    note: Template | None = None  # for the agent, with the handoff; never sent to the visitor


@dataclass(slots=True)
class Else:
    say: list[Template] = field(default_factory=list)
    goto: str | None = None


@dataclass(slots=True)
class State:
    """One state of a flow, as the checker accepted it."""

    name: str
    pos: Pos
    set: dict[str, Template] = field(default_factory=dict)
    say: list[Template] = field(default_factory=list)
    ask: Template | None = None
    save: str | None = None
    validate: Validator | None = None
    retries: int = DEFAULT_RETRIES
    on_invalid: str | None = None
    call: Call | None = None
    on_error: str | None = None
    escalate: Escalation | None = None
    no_agents: str | None = None
    next: list[Branch] = field(default_factory=list)
    on: list[Rule] = field(default_factory=list)
    else_: Else | None = None
    buttons: list[Button] = field(default_factory=list)
    end: bool = False

    @property
    def waits(self) -> bool:
        """Tell whether the bot stops here for the visitor's input."""
        if self.end or self.escalate or self.call:
            return False
        return bool(self.ask or ((self.buttons or self.on) and not self.next))

    def exits(self) -> list[tuple[str, str]]:
        """List (target, label) of every way out of this state, intents aside."""
        out: list[tuple[str, str]] = []
        out += [(b.goto, f"button: {b.title}") for b in self.buttons if b.goto]
        out += [(r.goto, r.describe()) for r in self.on]
        if self.else_ and self.else_.goto:
            out.append((self.else_.goto, "else"))
        for branch in self.next:
            out.append((branch.goto, f"when {branch.when.source}" if branch.when else "next"))
        if self.on_invalid:
            out.append((self.on_invalid, "invalid"))
        if self.on_error:
            out.append((self.on_error, "error"))
        if self.no_agents:
            out.append((self.no_agents, "no agents"))
        return out


@dataclass(slots=True)
class Settings:
    max_fallbacks: int = DEFAULT_MAX_FALLBACKS
    fallback_to: str | None = None
    idle_timeout: int | None = None
    on_idle: str | None = None
    fallback_locale: str | None = None  # a text missing in a language is said in this one
    time_zone: str = "UTC"  # what "today" is for dates (an IANA name, like Europe/Berlin)


@dataclass(eq=False)
class Flow:
    """A checked flow and its state machine (one per flow, shared by all conversations)."""

    id: str
    path: str
    start: str
    states: dict[str, State]
    version: str  # hash of the source text: tells a stored conversation which edit it ran on
    description: str = ""
    settings: Settings = field(default_factory=Settings)
    intents: list[Rule] = field(default_factory=list)
    locales: tuple[str, ...] = ()  # the languages it speaks, the default first; () for one
    # each choice given per language, as saved (default language) -> locale -> its text there
    translations: dict[str, dict[str, str]] = field(default_factory=dict)
    machine: Any = None  # transitions.Machine, built by bots.machine
