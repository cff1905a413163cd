"""Run a flow's conversation tests (the YAML format of docs/flows.md), without Redis or network.

Over ~300 lines: reading a test file (with errors at file:line:col) and running its steps
are one format, kept together so the two cannot drift apart.
"""

from __future__ import annotations

import datetime
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import engine
from .calls import CannedClient
from .checker import describe_type, regex_problem, suggest
from .flow import Flow
from .handoff import settle
from .locales import canonical
from .source import Diagnostic, Map, Pos, Seq, YamlError, load

FILE_KEYS = ("flow", "visitor", "locale", "today", "tests")
TEST_KEYS = ("name", "http", "agents_online", "visitor", "locale", "today", "steps")
REASONS = (engine.ASKED, engine.FALLBACK, engine.INVALID, engine.FLOW)
STEP_KINDS = ("bot", "user", "click", "state", "vars", "escalated", "reason", "note", "ended",
              "locale", "leave_queue")


@dataclass
class Step:
    kind: str
    value: Any
    pos: Pos

    def describe(self) -> str:
        if self.kind == "bot":
            return f"bot: {_quote(self.value)}"
        if self.kind in ("user", "click"):
            return f"{self.kind}: {_quote(self.value)}"
        return f"{self.kind}: {self.value}"


@dataclass
class Case:
    name: str
    pos: Pos
    steps: list[Step]
    http: dict[str, Any] = field(default_factory=dict)
    agents_online: int = 1
    visitor: dict[str, Any] = field(default_factory=dict)
    http_pos: dict[str, Pos] = field(default_factory=dict)  # where each answer is written
    today: datetime.date | None = None  # the day the test plays on (dates in the flow)


@dataclass
class Outcome:
    """The result of one test: passed, or where and why it failed."""

    file: str
    case: Case
    failure: str | None = None
    rows: list[tuple[str, str, bool]] = field(default_factory=list)  # expected, actual, failed
    unused: list[str] = field(default_factory=list)  # http answers the flow never asked for

    @property
    def passed(self) -> bool:
        return self.failure is None

    def report(self) -> str:
        """Describe a failure with the expected and actual conversation side by side."""
        head = f"FAIL {self.case.name}  ({self.file}:{self.case.pos.line})"
        if self.passed:
            return f"PASS {self.case.name}"
        width = max([len("expected")] + [len(e) for e, _, _ in self.rows])
        width = min(width, 60)
        lines = [head, f"  {self.failure}", f"    {'expected'.ljust(width)} | actual"]
        for expected, actual, failed in self.rows:
            mark = ">" if failed else " "
            lines.append(f"  {mark} {_clip(expected, width).ljust(width)} | {actual}")
        return "\n".join(lines)


class _Failed(Exception):
    pass


# --- reading test files ------------------------------------------------------------------


def read_tests(path: str | Path) -> tuple[str | None, list[Case], list[Diagnostic]]:
    """Read a test file; return its flow id, the cases it could read and its problems.

    A case with a problem is left out; the others are returned, so one broken test
    (even one YAML cannot read) does not hide the rest of the file.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [], [Diagnostic(name, None, "error", f"cannot read: {exc}")]
    try:
        data = load(text, name)
    except YamlError as exc:
        return _read_in_pieces(text, name, exc.diagnostics)
    return _read_data(data, name, [])


def _read_data(data: Any, name: str, problems: list[Diagnostic], need_flow: bool = True,
               in_pieces: bool = False) -> tuple[str | None, list[Case], list[Diagnostic]]:
    def error(pos: Pos | None, message: str) -> None:
        problems.append(Diagnostic(name, pos, "error", message))

    if not isinstance(data, Map):
        error(None, "a test file is a mapping with flow and tests")
        return None, [], problems
    _unknown(data, FILE_KEYS, "the test file", error)
    flow_id = data.get("flow")
    if not isinstance(flow_id, str):
        if need_flow:
            error(data.at_value("flow") if "flow" in data else data.pos,
                  "the test file needs flow: the id of the flow it tests")
        flow_id = None
    visitor = _visitor(data, {}, error)
    today = _today(data, None, error)
    tests = data.get("tests")
    if not isinstance(tests, Seq) or (not tests and not in_pieces):
        error(data.at_value("tests") if "tests" in data else data.pos,
              "the test file needs tests: a list of tests with name and steps")
        return flow_id, [], problems
    cases = []
    for index, item in enumerate(tests):
        before = len(problems)
        case = _read_case(item, tests.at(index), visitor, today, error)
        if case is not None and len(problems) == before:
            cases.append(case)
    problems.sort(key=lambda d: (d.pos.line, d.pos.col) if d.pos else (0, 0))  # in file order
    return flow_id, cases, problems


def _read_in_pieces(text: str, name: str, whole: list[Diagnostic]) -> tuple[
        str | None, list[Case], list[Diagnostic]]:
    """Read a file YAML refused one top-level test at a time, to report all that can be read.

    Each piece keeps its lines where they are (the others are blanked), so every
    position is the file's own. Without a recognisable `tests:` list, the file's
    first YAML error is all there is to say.
    """
    lines = text.splitlines()
    pieces = _test_entries(lines)
    if pieces is None:
        return None, [], whole
    tests_line, entries = pieces
    inside = {i for start, end in entries for i in range(start, end)} | {tests_line}

    def piece(keep: Iterable[int]) -> str:
        kept = set(keep)
        return "\n".join(line if i in kept else "" for i, line in enumerate(lines)) + "\n"

    problems: list[Diagnostic] = []
    header: Any = None
    try:
        header = load(piece(i for i in range(len(lines)) if i not in inside), name)
    except YamlError as exc:
        # The piece, with the tests blanked out, often breaks only at its end; the whole
        # file broke nearer to the mistake.
        problems += whole if exc.diagnostics[0].pos.line > len(lines) else exc.diagnostics
    merged = header if isinstance(header, Map) else Map(Pos(1, 1))
    tests = Seq(Pos(tests_line + 2, 1))
    for start, end in entries:
        try:
            data = load(piece([tests_line, *range(start, end)]), name)
        except YamlError as exc:
            problems += exc.diagnostics
            continue
        if isinstance(data, Map) and isinstance(data.get("tests"), Seq) and data["tests"]:
            tests.append(data["tests"][0])
            tests.item_pos.append(data["tests"].at(0))
    unique = {(d.pos, d.message): d for d in problems}
    problems = sorted(unique.values(), key=lambda d: (d.pos.line, d.pos.col))
    merged["tests"] = tests
    merged.key_pos["tests"] = merged.value_pos["tests"] = Pos(tests_line + 1, 1)
    return _read_data(merged, name, problems, need_flow=isinstance(header, Map), in_pieces=True)


def _test_entries(lines: list[str]) -> tuple[int, list[tuple[int, int]]] | None:
    """Find the `tests:` line and the (first, after last) lines of each test under it."""
    tests_line = next((i for i, line in enumerate(lines)
                       if re.match(r"tests:\s*(#.*)?$", line)), None)
    if tests_line is None:
        return None
    starts: list[int] = []
    indent = None
    end = len(lines)
    for i in range(tests_line + 1, len(lines)):
        line = lines[i]
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        depth = len(line) - len(stripped)
        is_item = stripped == "-" or stripped.startswith("- ")
        if indent is None:
            if not is_item:
                return None
            indent = depth
        if depth < indent or (depth == indent and not is_item):
            end = i
            break
        if depth == indent:
            starts.append(i)
    if not starts:
        return None
    return tests_line, list(zip(starts, [*starts[1:], end], strict=True))


def _read_case(item: Any, pos: Pos, visitor: dict[str, Any], today: datetime.date | None,
               error: Callable[[Pos | None, str], None]) -> Case | None:
    if not isinstance(item, Map):
        error(pos, f"a test must be a mapping with name and steps, not {describe_type(item)}")
        return None
    _unknown(item, TEST_KEYS, "a test", error)
    name = item.get("name")
    if not isinstance(name, str) or not name:
        error(pos, "a test needs a name")
        name = f"test at line {pos.line}"
    agents = item.get("agents_online", 1)
    if not isinstance(agents, int) or isinstance(agents, bool) or agents < 0:
        error(item.at_value("agents_online"), "agents_online must be a whole number (0 or more)")
        agents = 1
    http = _mapping(item, "http", error)
    http_pos = {str(key): http.at_key(key) for key in http} if isinstance(http, Map) else {}
    for key, answer in http.items():
        if not isinstance(answer, Map) or len(str(key).split()) != 2:
            error(http.at_key(key) if isinstance(http, Map) else pos,
                  f"http entries look like \"GET https://...\": {{status: 200, json: {{...}}}}; "
                  f"check '{key}'")
    steps_raw = item.get("steps")
    if not isinstance(steps_raw, Seq) or not steps_raw:
        error(item.at_value("steps") if "steps" in item else pos, f"test '{name}' has no steps")
        return None
    steps = []
    for index, raw in enumerate(steps_raw):
        at = steps_raw.at(index)
        if not isinstance(raw, Map) or len(raw) != 1:
            error(at, "a step is one of " + ", ".join(f"{k}:" for k in STEP_KINDS))
            continue
        kind, value = next(iter(raw.items()))
        if kind not in STEP_KINDS:
            error(at, f"unknown step '{kind}'{suggest(kind, STEP_KINDS)}")
            continue
        problem = _step_problem(kind, value)
        if problem:
            error(raw.at_value(kind), problem)
            continue
        steps.append(Step(kind, value, at))
    return Case(name=name, pos=pos, steps=steps, http=dict(http), agents_online=agents,
                visitor=_visitor(item, visitor, error), http_pos=http_pos,
                today=_today(item, today, error))


def _visitor(data: Map, outer: dict[str, Any], error: Callable[[Pos | None, str], None]
             ) -> dict[str, Any]:
    """The visitor of a file or a test: `visitor:` over the outer one, `locale:` over both."""
    visitor = {**outer, **_mapping(data, "visitor", error)}
    if "locale" in data:
        problem = _step_problem("locale", data["locale"])
        if problem:
            error(data.at_value("locale"), problem)
        else:
            visitor["locale"] = str(data["locale"])
    return visitor


def _today(data: Map, outer: datetime.date | None, error: Callable[[Pos | None, str], None]
           ) -> datetime.date | None:
    if "today" not in data:
        return outer
    written = str(data["today"])
    try:
        return datetime.date.fromisoformat(written)
    except ValueError:
        shaped = re.fullmatch(r"\d{4}-\d\d-\d\d", written)
        error(data.at_value("today"), f"today: there is no day {written} in the calendar"
              if shaped else f"today must be a date like 2026-12-01, not '{written}'")
        return outer


def _step_problem(kind: str, value: Any) -> str | None:
    if kind in ("bot", "user", "click", "state", "escalated", "reason", "note"):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return f"{kind} must be text, not {describe_type(value)}"
        if kind == "reason" and value not in REASONS:
            return f"reason must be one of {', '.join(REASONS)}{suggest(str(value), REASONS)}"
        if kind in ("bot", "note") and _is_regex(str(value)):
            try:
                re.compile(str(value)[1:-1])
            except re.error as exc:
                return f"bad regex {value}: {regex_problem(exc)}"
    elif kind == "vars" and not isinstance(value, Map):
        return f"vars must be a mapping of expected variables, not {describe_type(value)}"
    elif kind in ("ended", "leave_queue") and value is not True:
        return f"{kind} must be true"
    elif kind == "locale" and canonical(value) is None:
        return f"locale must be a language tag like en, de or de-CH (BCP 47), not '{value}'"
    return None


def _mapping(data: Map, key: str, error: Callable[[Pos | None, str], None]) -> Any:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Map):
        error(data.at_value(key), f"{key} must be a mapping, not {describe_type(value)}")
        return {}
    return value


def _unknown(data: Map, allowed: tuple[str, ...], what: str,
             error: Callable[[Pos | None, str], None]) -> None:
    for key in data:
        if key not in allowed:
            error(data.at_key(key), f"unknown key '{key}' in {what}{suggest(key, allowed)}")


# --- running -----------------------------------------------------------------------------


def run_case(flow: Flow, case: Case, file: str = "") -> Outcome:
    """Run one test against a flow."""
    outcome = Outcome(file=file, case=case)
    conversation = _Conversation(flow, case)
    try:
        conversation.begin()
        for step in case.steps:
            conversation.do(step, outcome)
    except _Failed as exc:
        outcome.failure = str(exc)
        for text in conversation.said[conversation.seen:]:
            outcome.rows.append(("", f"bot: {_quote(text)}", False))
    else:
        outcome.unused = conversation.client.unused()
    return outcome


def run_file(path: str | Path, flows: Mapping[str, Flow]) -> tuple[list[Outcome],
                                                                   list[Diagnostic]]:
    """Run every test of a file that could be read against the flow it names.

    The diagnostics are the file's problems (errors) and the answers under `http:` that
    a passing test never used (warnings).
    """
    flow_id, cases, problems = read_tests(path)
    if flow_id is None:
        return [], problems
    flow = flows.get(flow_id)
    if flow is None:
        known = ", ".join(sorted(flows)) or "none loaded"
        return [], [*problems, Diagnostic(str(path), None, "error",
                                          f"no valid flow '{flow_id}' to test"
                                          f"{suggest(flow_id, flows)} (flows: {known})")]
    outcomes = [run_case(flow, case, str(path)) for case in cases]
    for outcome in outcomes:
        for key in outcome.unused:
            problems.append(Diagnostic(
                str(path), outcome.case.http_pos.get(key), "warning",
                f"the answer to '{key}' is never used by test '{outcome.case.name}': the flow "
                "made no such request (check the method and url, or remove the answer)"))
    return outcomes, problems


def test_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into their test files."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            found.append(path)
    return found


class _Conversation:
    """A conversation with the bot as a test sees it."""

    def __init__(self, flow: Flow, case: Case) -> None:
        self.flow = flow
        self.case = case
        self.client = CannedClient(case.http)
        self.visitor = {"verified": False, **case.visitor}
        self.context = engine.Context(visitor=self.visitor, http=self.client, today=case.today)
        self.stored: dict[str, Any] = {}
        self.said: list[str] = []
        self.buttons: list[dict[str, str]] = []
        self.seen = 0
        self.escalated: str | None = None
        self.tried_queue: str | None = None  # escalated while nobody was available
        self.escalation: dict[str, Any] | None = None  # the latest, taken or not
        self.ended = False

    def begin(self) -> None:
        self.take(engine.start(self.flow, self.context))
        self.answered()

    def answered(self) -> None:
        """Fail at once when the flow made a request the test has no answer for."""
        if not self.client.unexpected:
            return
        request = self.client.unexpected[0]
        raise _Failed(f"the flow made a request the test has no answer for: {request} "
                      f"(add it under http:){_closest_request(request, self.case.http)}")

    def take(self, turn: engine.Turn) -> None:
        # With anybody online an escalation is queued or assigned, as docs/flows.md says.
        turn = settle(self.flow, turn, self.context, lambda _: self.case.agents_online > 0)
        self.stored = turn.stored
        for output in turn.outputs:
            if output["type"] == "message":
                self.said.append(output["text"])
                if output.get("buttons"):
                    self.buttons = output["buttons"]
            elif output["type"] == "escalate":
                self.escalation = output
                if output["taken"]:
                    self.escalated = output["queue"]
                    self.said.extend(output["say"])
                else:
                    self.tried_queue = output["queue"]
            elif output["type"] == "end":
                self.ended = True

    def send(self, text: str, payload: str | None = None) -> None:
        if self.ended:
            raise _Failed("the conversation has ended; the visitor cannot type any more")
        if self.stored.get("wait") == engine.WAIT_ESCALATION:
            raise _Failed(f"the conversation is with a person (escalated to "
                          f"'{self.escalated}'); the bot no longer answers")
        self.seen = len(self.said)
        self.take(engine.reply(self.flow, self.stored, text, payload, self.context))
        self.answered()

    def do(self, step: Step, outcome: Outcome) -> None:
        expected = step.describe()
        actual = ""
        try:
            actual = getattr(self, f"step_{step.kind}")(step.value)
        except _Failed as exc:
            outcome.rows.append((expected, f"{exc}", True))
            raise _Failed(f"step at line {step.pos.line} ({expected}): {exc}") from None
        outcome.rows.append((expected, actual, False))

    def step_bot(self, expected: Any) -> str:
        if self.seen >= len(self.said):
            raise _Failed("the bot said nothing more")
        text = self.said[self.seen]
        self.seen += 1
        if not _text_matches(str(expected), text):
            raise _Failed(f"bot said {_quote(text)}")
        return f"bot: {_quote(text)}"

    def step_user(self, text: Any) -> str:
        self.send(str(text))
        return f"user: {_quote(str(text))}"

    def step_click(self, title: Any) -> str:
        titles = [b["title"] for b in self.buttons]
        for button in self.buttons:
            if button["title"] == str(title):
                self.send(button["title"], button["payload"])
                return f"click: {_quote(button['title'])}"
        offered = ", ".join(_quote(t) for t in titles) or "none"
        raise _Failed(f"no button {_quote(str(title))} (buttons offered: {offered})")

    def step_leave_queue(self, _value: Any) -> str:
        """The waiting visitor chooses to leave a message: the flow goes on at no_agents."""
        if self.stored.get("wait") != engine.WAIT_ESCALATION or self.escalated is None:
            raise _Failed("the visitor is not waiting for a person, so there is no queue to "
                          "leave")
        self.escalated = None
        self.seen = len(self.said)
        self.take(engine.no_agents(self.flow, self.stored, self.context, "left_queue"))
        return "leave_queue: true"

    def step_locale(self, tag: Any) -> str:
        """The visitor's page changes language (a reload in another language sends a hello)."""
        self.visitor["locale"] = str(tag)
        return f"locale: {tag}"

    def step_state(self, name: Any) -> str:
        state = self.stored.get("state")
        if state != str(name):
            raise _Failed(f"the conversation is in state '{state}'")
        return f"state: {state}"

    def step_vars(self, expected: Mapping[str, Any]) -> str:
        variables = self.stored.get("vars", {})
        wrong = [f"{k}={variables.get(k, '(unset)')!r}" for k, v in expected.items()
                 if k not in variables or not same_value(variables[k], v)]
        if wrong:
            raise _Failed("vars differ: " + ", ".join(wrong))
        return "vars: " + ", ".join(f"{k}={variables[k]!r}" for k in expected)

    def step_escalated(self, queue: Any) -> str:
        if self.escalated != str(queue):
            got = f"to '{self.escalated}'" if self.escalated else "not"
            why = f" (it tried '{self.tried_queue}', but agents_online is 0, so it went on at " \
                  "no_agents)" if self.tried_queue and not self.escalated else ""
            raise _Failed(f"the conversation was {got} escalated{why}")
        return f"escalated: {self.escalated}"

    def step_reason(self, reason: Any) -> str:
        escalation = self.last_escalation()
        if escalation["reason"] != reason:
            raise _Failed(f"the escalation's reason is {escalation['reason']}")
        return f"reason: {escalation['reason']}"

    def step_note(self, expected: Any) -> str:
        note = self.last_escalation().get("note", "")
        if not note:
            raise _Failed("the escalation has no note (give its escalate a note:)")
        if not _text_matches(str(expected), note):
            raise _Failed(f"the note is {_quote(note)}")
        return f"note: {_quote(note)}"

    def last_escalation(self) -> dict[str, Any]:
        if self.escalation is None:
            raise _Failed("the conversation has not escalated")
        return self.escalation

    def step_ended(self, _value: Any) -> str:
        if not self.ended:
            raise _Failed(f"the conversation has not ended (state '{self.stored.get('state')}')")
        return "ended"


def same_value(actual: Any, expected: Any) -> bool:
    """Compare a variable with a test's YAML value: equal, and of the same YAML type."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and actual.keys() == expected.keys() and all(
            same_value(actual[key], value) for key, value in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            same_value(a, e) for a, e in zip(actual, expected, strict=True))
    return type(actual) is type(expected) and actual == expected


def _closest_request(request: str, answers: Iterable[str]) -> str:
    """Return " (did you mean '...'?)" for an answer that looks misspelt, or ""."""
    keys = [str(key) for key in answers]
    folded = {" ".join(key.split()).lower(): key for key in keys}
    if request.lower() in folded:
        return f" (did you mean '{folded[request.lower()]}'?)"
    close = difflib.get_close_matches(request, keys, n=1, cutoff=0.85)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _is_regex(text: str) -> bool:
    return len(text) >= 2 and text.startswith("/") and text.endswith("/")


def _text_matches(expected: str, actual: str) -> bool:
    if _is_regex(expected):
        return re.search(expected[1:-1], actual) is not None
    return expected == actual


def _quote(value: Any) -> str:
    text = str(value)
    return text if _is_regex(text) else f'"{text}"'


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
