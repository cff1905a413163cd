"""Property tests: whatever text an author saves, the checker answers cleanly, never a traceback.

The checker must return either a Flow and no errors, or no Flow and at least one error; every
diagnostic is `path:line:col: severity: message` pointing inside the file. Any Flow it accepts
must run a few turns without raising. (A message may still span two lines: that is a known bug,
test_source.py::test_control_character_error_is_one_line_at_its_position.)
"""

import json
import re
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bots import engine
from bots.calls import CannedClient
from bots.checker import (
    BUTTON_KEYS,
    CALL_KEYS,
    ESCALATE_KEYS,
    RULE_KEYS,
    SETTINGS_KEYS,
    STATE_KEYS,
    TOP_KEYS,
    check_text,
)
from bots.machine import build_machine

PATH = "flows/fuzz.yaml"
DIAGNOSTIC = re.compile(r"^flows/fuzz\.yaml:(\d+):(\d+): (error|warning): (.+)$", re.DOTALL)
DEFAULT = (Path(__file__).resolve().parents[2] / "flows" / "default.yaml").read_text("utf-8")
DEFAULT_LINES = DEFAULT.splitlines(keepends=True)

FUZZ = settings(max_examples=75, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NAMES = ["a", "b", "greet", "handoff", "bye", "menu", "ask_order", "lookup", "nowhere"]
TEXTS = ["hi", "Hello {{ visitor.name }}", "{{ vars.x }}", "{{ order_id }}", "{{ secrets.T }}",
         "{{ x", "{% if %}", "{{ 1 / 0 }}", "([a-z", r"^\d+$", "email", "number", "yes_no",
         "vars.x == 1", "input", "input ==", "support", "https://x.test/{{ vars.x }}", "on",
         "no", " ", "GET", "ü", "\t"]
KEYS = sorted(set(TOP_KEYS + STATE_KEYS + RULE_KEYS + BUTTON_KEYS + CALL_KEYS + ESCALATE_KEYS
                  + SETTINGS_KEYS + ("title", "choices", "error", "sya", "<<")))
# No empty text (''): an empty state name is a known bug with tests of its own in test_checker.py
REPLACEMENTS = ["true", "false", "yes", "~", "[]", "{}", "nowhere", "'{{ x'", "-1", "0",
                "'(('", "[a, b]", "{goto: a}", "&x a", "*x", "bye", "'{{ secrets.A }}'"]
REPLIES = ["hi", "1", "2", "yes", "no", "person", "operator", "AB123456", "ada@example.com",
           "", "12.5", "menu", "bye", "Talk to a person"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 100), st.floats(-1, 100),
                    st.sampled_from(NAMES), st.sampled_from(TEXTS))
keys = st.one_of(st.sampled_from(KEYS), st.sampled_from(NAMES))
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)


@st.composite
def flowish(draw) -> dict:
    """A structure shaped like a flow, so that some of them are valid."""
    names = draw(st.lists(st.sampled_from(NAMES[:-1]), min_size=1, max_size=5, unique=True))
    target = st.sampled_from(names + ["nowhere"] * (len(names) // 4))
    state_value = st.one_of(
        scalars, target,
        st.lists(st.fixed_dictionaries({"title": st.sampled_from(TEXTS[:4]), "goto": target}),
                 max_size=3),
        st.lists(st.fixed_dictionaries({"keywords": st.lists(st.sampled_from(REPLIES), max_size=2),
                                        "goto": target}), max_size=2),
        st.fixed_dictionaries({"queue": st.just("support")}),
        st.fixed_dictionaries({"url": st.sampled_from(TEXTS[-8:])}),
    )
    state = st.dictionaries(st.sampled_from(STATE_KEYS + ("sya",)), state_value, max_size=5)
    data: dict = {"start": draw(target), "states": {n: draw(state) for n in names}}
    for name in names:
        if draw(st.booleans()):
            data["states"][name] = {"say": draw(st.sampled_from(TEXTS[:3])), "end": True}
    if draw(st.booleans()):
        data["intents"] = draw(st.lists(
            st.fixed_dictionaries({"keywords": st.lists(st.sampled_from(REPLIES), min_size=1,
                                                        max_size=2), "goto": target}),
            max_size=2))
    if draw(st.booleans()):
        data["settings"] = {"fallback_to": draw(target)}
    return data


@st.composite
def mutated_default(draw) -> str:
    """The shipped flow with a few lines deleted, characters swapped, re-indented or replaced."""
    lines = list(DEFAULT_LINES)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "swap", "indent", "dedent", "replace",
                                     "duplicate"]))
        line = lines[index]
        if kind == "delete":
            del lines[index]
        elif kind == "swap" and len(line) > 2:
            at = draw(st.integers(0, len(line) - 3))
            lines[index] = line[:at] + line[at + 1] + line[at] + line[at + 2:]
        elif kind == "indent":
            lines[index] = " " * draw(st.integers(1, 3)) + line
        elif kind == "dedent":
            lines[index] = line[draw(st.integers(1, 4)):] if line.startswith(" ") else line
        elif kind == "replace" and ": " in line:
            head = line.split(": ", 1)[0]
            lines[index] = f"{head}: {draw(st.sampled_from(REPLACEMENTS))}\n"
        elif kind == "duplicate":
            lines.insert(index, line)
    return "".join(lines)


def check_cleanly(text: str):
    """Check `text` and assert the checker's promises; return the Flow or None."""
    flow, found = check_text(text, PATH)
    errors = [d for d in found if d.is_error]
    if flow is None:
        assert errors, "no Flow but no error either"
    else:
        assert not errors, [str(d) for d in errors]
    last_line = len(text.splitlines()) + 1  # YAML also breaks lines at \r, \x85, \u2028
    for diagnostic in found:
        shown = DIAGNOSTIC.match(str(diagnostic))
        assert shown, str(diagnostic)
        line, col = int(shown[1]), int(shown[2])
        assert 1 <= line <= last_line and col >= 1, str(diagnostic)
    return flow


def converse(flow) -> None:
    """Run a start and a few replies (typed, and button clicks) without raising."""
    flow.machine = build_machine(flow)
    context = engine.Context(http=CannedClient({}), visitor={"name": "Ada"})
    turn = engine.start(flow, context)
    for text in REPLIES[:8]:
        wait = turn.stored["wait"]
        if wait == engine.WAIT_NOTHING:
            return
        if wait == engine.WAIT_ESCALATION:
            turn = engine.no_agents(flow, turn.stored, context)
            continue
        buttons = [b for o in turn.outputs for b in o.get("buttons", [])]
        if buttons and text == "1":
            turn = engine.reply(flow, turn.stored, buttons[0]["title"], buttons[0]["payload"],
                                context)
        else:
            turn = engine.reply(flow, turn.stored, text, None, context)
    engine.idle(flow, turn.stored, context)


@FUZZ
@given(structures)
def test_random_structures_dumped_to_yaml_are_checked_cleanly(data):
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    flow = check_cleanly(text)
    if flow is not None:
        converse(flow)


@FUZZ
@given(flowish())
def test_flow_shaped_structures_are_checked_cleanly_and_valid_ones_run(data):
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=None)
    flow = check_cleanly(text)
    if flow is not None:
        converse(flow)


@FUZZ
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
       | st.text(alphabet=":-[]{}&*!|>'\"%@`#,? \n\tabc", max_size=120))
def test_random_text_is_checked_cleanly(text):
    check_cleanly(text)


@FUZZ
@given(mutated_default())
def test_mutations_of_the_shipped_flow_are_checked_cleanly_and_valid_ones_run(text):
    flow = check_cleanly(text)
    if flow is not None:
        converse(flow)


def test_the_generators_reach_valid_flows():
    """Guard the property tests above: a few of the flow-shaped structures must be valid."""
    valid = 0

    @settings(max_examples=60, deadline=None, derandomize=True, database=None)
    @given(flowish())
    def count(data):
        nonlocal valid
        flow, _found = check_text(yaml.safe_dump(data, sort_keys=False), PATH)
        valid += flow is not None

    count()
    assert valid >= 3


SHIPPED = check_text(DEFAULT, "flows/default.yaml")[0]
visitor_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="0123456789 .,+-eE", max_size=40),
    st.sampled_from(REPLIES + ["AB123456", "ab 123456", "Track my order", "yes, please",
                               "x@y.z", "9" * 50, "1" * 400 + ".5", "\x00", "\u202e"]),
)


@FUZZ
@given(st.lists(st.tuples(visitor_text, st.one_of(st.none(), st.integers(0, 5),
                                                  st.sampled_from(["old", "", "menu"]))),
                max_size=8),
       st.booleans())
def test_any_visitor_input_to_the_shipped_flow_keeps_the_conversation_going(inputs, agents):
    """Whatever a visitor types or clicks, a turn never raises and the stored form stays JSON."""
    flow = SHIPPED
    if flow.machine is None:
        flow.machine = build_machine(flow)
    client = CannedClient({"GET /demo/api/orders/AB123456": {"status": 200,
                                                              "json": {"status": "shipped"}}})
    context = engine.Context(http=client, visitor={"name": "Ada"})
    turn = engine.start(flow, context)
    for text, click in inputs:
        wait = turn.stored["wait"]
        if wait == engine.WAIT_NOTHING:
            break
        if wait == engine.WAIT_ESCALATION:
            if agents:
                break
            turn = engine.no_agents(flow, turn.stored, context)
            continue
        buttons = [b for o in turn.outputs for b in o.get("buttons", [])]
        if isinstance(click, int) and click < len(buttons):
            turn = engine.reply(flow, turn.stored, buttons[click]["title"],
                                buttons[click]["payload"], context)
        else:
            turn = engine.reply(flow, turn.stored, text, click if isinstance(click, str) else None,
                                context)
        assert json.loads(json.dumps(turn.stored, allow_nan=False)) == turn.stored
        assert all(o["type"] in ("message", "escalate", "end") for o in turn.outputs)
