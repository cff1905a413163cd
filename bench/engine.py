"""Benchmark the flow engine (`bots/`): load time, time per turn, memory, GC pauses.

Run from the repository root:

    .venv/bin/python bench/engine.py              # the full run (about 40 s on 2 cores)
    .venv/bin/python bench/engine.py --quick      # a smoke run of a few seconds
    .venv/bin/python bench/engine.py --sizes 10,1000 --turns 50000
    .venv/bin/python bench/engine.py --profile    # also print where the time goes (cProfile)

It generates flows of N states that look like real ones, checks them with the
checker (any error stops the run with exit code 1), and measures, against the
targets of bench/README.md#targets (a 1,000-state flow loads in under 1 s; the
engine alone takes under 0.2 ms a turn, whatever the flow's size):

1. load time: `bots.catalog.load_flow(path)` = read + parse + validate + build the
   transitions machine, median of several runs per size, with a breakdown;
2. time per turn: one `bots.engine.reply(...)` call of a fixed scripted
   conversation, after a warm-up (so first-use template compilation is
   excluded), on every generated flow and on flows/default.yaml;
3. the JSON round trip of `Turn.stored`, which the service stores after each turn;
4. memory of a loaded 1,000-state flow (tracemalloc) and the process RSS;
5. garbage-collector runs and pauses during the turn loops (docs/stack.md,
   "Collector pauses").

Exit code: 0, whatever the figures; 1 when a generated flow fails the checker or a
scripted conversation does not go where the benchmark expects (then the figures
would not measure what they claim to).

One script of ~850 lines on purpose: a benchmark is read top to bottom next to its output
(generator, timings, report), and bench/README.md explains each section it prints.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/engine.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(ROOT))

import bots.catalog  # noqa: E402 - needs the path above
import bots.checker  # noqa: E402
from bots import engine  # noqa: E402
from bots.calls import CannedClient  # noqa: E402
from bots.catalog import load_flow  # noqa: E402
from bots.checker import check_text  # noqa: E402
from bots.flow import Flow  # noqa: E402
from bots.machine import build_machine  # noqa: E402

# --- targets (bench/README.md#targets) ----------------------------------------------------
LOAD_TARGET_STATES = 1_000  # the flow size the load target is stated for
LOAD_TARGET_S = 1.0  # seconds to load it, at most
TURN_TARGET_US = 200.0  # median microseconds per engine turn, at most, on every flow
# "whatever the flow's size": the median turn of the largest generated flow may be at most
# this many times that of the smallest (a ratio, not a time: it allows for noise, not growth)
GROWTH_LIMIT = 1.5

# --- how much to measure ----------------------------------------------------------------
DEFAULT_SIZES = (10, 100, 1_000, 5_000)  # states per generated flow
QUICK_SIZES = (10, 100, 1_000)
LOAD_RUNS = 7  # timed loads per size (median reported)
LOAD_RUNS_BIG = 3  # for flows above BIG_FLOW_STATES, whose loads take seconds
BIG_FLOW_STATES = 2_000
TURNS = 20_000  # timed turns per flow
WARMUP_CYCLES = 30  # untimed passes over the script before timing (compiles templates)
JSON_ROUNDS = 2_000  # JSON round trips of each stored state of one script pass
QUICK = {"load_runs": 3, "load_runs_big": 1, "turns": 1_500,
         "warmup": 3, "json_rounds": 200}

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
MIB = 1024 * 1024
KIB = 1024

DEFAULT_FLOW = ROOT / "flows" / "default.yaml"
VISITOR = {"id": "v_bench", "name": "Ada", "locale": "en"}  # what the widget would send

# ==========================================================================================
# Generated flows
# ==========================================================================================
#
# A flow of N states is a fixed core (greeting, menu, an offer of a person, the escalation
# with its no_agents state, two end states) plus topics of four states each, and 0-3 FAQ
# states to make the count exact:
#
#   t<i>        say + buttons + `on` rules (keywords, and a regex that saves a code) + else
#   t<i>_ask    ask + validate (integer, email, yes_no, choices or regex, in turn) +
#               `next` with a `when` branch
#   t<i>_big    set + say, then next
#   t<i>_info   say (two templated lines) + buttons to two "related" topics, which makes
#               the topics a binary tree under t0 (every topic is reachable), + on + else
#
# Global intents (a person, the menu, goodbye, an order number by regex) work in every
# waiting state, so every state can reach a person or an end.

CORE_STATES = 6
TOPIC_STATES = 4
MAX_MENU_TOPICS = 3  # topics offered as buttons on the main menu

HEAD = """\
# Generated by bench/engine.py: a flow of <n> states for the engine benchmark.
name: bench-<n>
description: Benchmark flow of <n> states (<topics> topics)
start: greet

settings:
  max_fallbacks: 2
  fallback_to: offer_person
  idle_timeout: 900
  on_idle: goodbye

intents:
  - keywords: [agent, human, person, representative, "talk to someone"]
    goto: handoff
  - regex: '\\b([A-Za-z]{2}\\d{6})\\b'
    set: {order_id: "{{ match[1] | upper }}"}
    say: "Noted your order {{ vars.order_id }}."
    goto: menu
  - keywords: [restart, "start over", "main menu", menu]
    goto: menu
  - keywords: [bye, goodbye, "that's all"]
    goto: goodbye

states:
  greet:
    set: {greeted: "yes"}
    say: "Hi {{ visitor.name or 'there' }}! I'm the benchmark assistant."
    next: menu

  menu:
    say: "What would you like to know{{ ', ' ~ visitor.name if visitor.name else '' }}?"
    buttons:
<menu_buttons>
      - {title: Talk to a person, goto: handoff}
    on:
      - keywords: [hello, hi, hey, "good morning"]
        say: "Hello again!"
        goto: menu
<menu_rules>
    else:
      say: "Sorry, I didn't quite get that. Pick a topic, or type 'person'."

  offer_person:
    say: "I'm sorry I couldn't help. Would you like to talk to a person?"
    buttons:
      - {title: "Yes, please", goto: handoff}
      - {title: "No, back to the menu", goto: menu}

  handoff:
    escalate:
      queue: support
      priority: 1
      say: "Connecting you with a person, {{ visitor.name or 'there' }}. Please hold on."
    no_agents: offline

  offline:
    say: "Nobody is available right now; we'll write back about {{ vars.order_id or 'it' }}."
    end: true

  goodbye:
    say: "Thanks for visiting, {{ visitor.name or 'and' }} have a great day!"
    end: true
"""

TOPIC = """
  t<i>:
    say: "Topic <i>: what would you like to do, {{ visitor.name or 'there' }}?"
    buttons:
      - {title: Ask a question, goto: t<i>_ask, payload: ask}
      - {title: Read the details, goto: t<i>_info, payload: info}
      - {title: Back to the menu, goto: menu, payload: menu}
    on:
      - keywords: [details, "tell me more", topic<i>]
        goto: t<i>_info
      - regex: '\\bT<i>-(\\d{4})\\b'
        set: {code<i>: "{{ match[1] }}"}
        goto: t<i>_info
    else:
      say: "Pick one of the buttons, or type 'details'."

  t<i>_ask:
    ask: "Topic <i>, {{ visitor.name }}: <question>"
    save: a<i>
    validate: <validate>
    retries: 2
    on_invalid: offer_person
    next:
      - when: "<when>"
        goto: t<i>_big
      - goto: t<i>_info

  t<i>_big:
    set: {last_topic: "<i>"}
    say: "Noted {{ vars.a<i> }} for topic {{ vars.last_topic }}."
    next: t<i>_info

  t<i>_info:
    say:
      - "Here is topic <i>, explained for {{ visitor.name or 'you' }}."
      - "You said {{ vars.a<i> if vars.a<i> is defined else '-' }}, code {{ vars.code<i> or '-' }}."
    buttons:
      - {title: Related topic, goto: t<c1>, payload: related1}
      - {title: Another related topic, goto: t<c2>, payload: related2}
      - {title: Back to topic <i>, goto: t<i>, payload: back}
    on:
      - keywords: [more, again]
        goto: t<i>
      - keywords: [thanks, "thank you"]
        say: "You're welcome!"
        goto: goodbye
    else:
      say: "Sorry {{ visitor.name or '' }}, I didn't get that. Try one of the buttons."
"""

FAQ = """
  faq<j>:
    say: "FAQ <j>: we ship within two working days, {{ visitor.name or 'friend' }}."
    next: menu
"""


@dataclass(frozen=True)
class AskKind:
    """One kind of `ask` + `validate`, with answers for the scripted conversation."""

    question: str
    validate: str  # YAML for the `validate:` key
    when: str  # the `next` condition, true for `valid`
    invalid: str  # an answer the validator rejects
    valid: str  # an answer it accepts


ASK_KINDS = (
    AskKind("how many items?", "integer", "vars.a<i> > 10", "lots", "42"),
    AskKind("your email?", "email", "vars.a<i>.endswith('.org')", "ada at example",
            "ada@example.org"),
    AskKind("is it urgent?", "yes_no", "vars.a<i>", "maybe", "yes please"),
    AskKind("which size?", "{choices: [Small, Medium, Large]}", "vars.a<i> == 'Large'",
            "huge", "large"),
    AskKind("your postcode?", "{regex: '^\\s*\\d{5}\\s*$', error: \"Five digits, please.\"}",
            "vars.a<i> | trim | length == 5", "12", "10115"),
)


def topic_count(states: int) -> int:
    return (states - CORE_STATES) // TOPIC_STATES


def generate_flow(states: int) -> str:
    """Return the YAML text of a flow of exactly `states` states (at least 10)."""
    topics = topic_count(states)
    if topics < 1:
        raise ValueError(f"a generated flow needs at least {CORE_STATES + TOPIC_STATES} states")
    faqs = states - CORE_STATES - TOPIC_STATES * topics
    menu_buttons = "\n".join(f"      - {{title: Topic {i}, goto: t{i}}}"
                             for i in range(min(topics, MAX_MENU_TOPICS)))
    menu_rules = "\n".join(f'      - keywords: ["faq {j}"]\n        goto: faq{j}'
                           for j in range(faqs))
    parts = [_fill(HEAD, n=states, topics=topics, menu_buttons=menu_buttons,
                   menu_rules=menu_rules)]
    for i in range(topics):
        kind = ASK_KINDS[i % len(ASK_KINDS)]
        children = [c if c < topics else 0 for c in (2 * i + 1, 2 * i + 2)]  # a binary tree
        parts.append(_fill(TOPIC, question=kind.question, validate=kind.validate,
                           when=kind.when, c1=children[0], c2=children[1], i=i))
    parts.extend(_fill(FAQ, j=j) for j in range(faqs))
    return "".join(parts)


def _fill(template: str, **values: Any) -> str:
    """Replace each <name> by its value (`i` last: other values may hold <i>)."""
    for name, value in values.items():
        template = template.replace(f"<{name}>", str(value))
    return template


# ==========================================================================================
# Scripted conversations
# ==========================================================================================


@dataclass(frozen=True)
class Step:
    """One visitor input and the state the bot must wait in after it."""

    text: str
    payload: str | None
    expect: str
    what: str  # the kind of turn, for the reader


@dataclass
class Script:
    """A closed conversation: it starts and ends in `home`, so it can repeat forever."""

    flow: Flow
    home: str
    steps: list[Step]
    context: engine.Context
    label: str = ""


def topic_script(flow: Flow, states: int) -> Script:
    """Script the last topic whose ask is an integer (the same turns in every flow size)."""
    topics = topic_count(states)
    k = max(i for i in range(topics) if i % len(ASK_KINDS) == 0)
    kind = ASK_KINDS[0]
    steps = [
        Step("Ask a question", "ask", f"t{k}_ask", "button click"),
        Step(kind.invalid, None, f"t{k}_ask", "invalid answer"),
        Step(kind.valid, None, f"t{k}_info", "valid answer, next with when"),
        Step("what is this even", None, f"t{k}_info", "miss -> else"),
        Step("more please", None, f"t{k}", "keyword rule"),
        Step(f"my code is T{k}-1234", None, f"t{k}_info", "regex rule"),
        Step(f"Back to topic {k}", "back", f"t{k}", "button click"),
    ]
    return Script(flow, f"t{k}", steps, engine.Context(visitor=VISITOR), f"{states:,} states")


def default_script(flow: Flow) -> Script:
    """Script flows/default.yaml: menu, hours, an order lookup (canned HTTP), misses."""
    http = CannedClient({"GET /demo/api/orders/AB123456": {
        "status": 200, "json": {"status": "shipped", "carrier": "DHL", "eta": "Friday"}}})
    steps = [
        Step("Opening hours", "hours", "anything_else", "button click"),
        Step("yes", None, "menu", "keyword rule"),
        Step("Track my order", "ask_order", "ask_order", "button click"),
        Step("it's on the box", None, "ask_order", "invalid answer"),
        Step("AB123456", None, "anything_else", "valid answer, call, next with when"),
        Step("blah blah", None, "menu", "miss -> else with goto"),
        Step("qwerty", None, "menu", "miss -> else"),
        Step("thanks", None, "anything_else", "keyword rule"),
        Step("something else", None, "menu", "keyword rule"),
    ]
    context = engine.Context(visitor=VISITOR, http=http)
    return Script(flow, "menu", steps, context, "flows/default.yaml")


class OffScript(Exception):
    """The engine did not go where the script expects."""


def run_script(script: Script, stored: dict[str, Any], timings: list[int] | None = None,
               check: bool = False) -> dict[str, Any]:
    """Play the script once from `stored`; append each reply's duration in ns to `timings`."""
    flow, context = script.flow, script.context
    clock = time.perf_counter_ns
    for step in script.steps:
        started = clock()
        turn = engine.reply(flow, stored, step.text, step.payload, context)
        elapsed = clock() - started
        if timings is not None:
            timings.append(elapsed)
        stored = turn.stored
        if check and stored["state"] != step.expect:
            raise OffScript(f"{script.label}: after {step.what} {step.text!r} the bot is in "
                            f"'{stored['state']}', the script expects '{step.expect}' "
                            f"(said: {turn.messages})")
    return stored


def home_state(script: Script) -> dict[str, Any]:
    """Start a conversation and put it in the script's home state."""
    turn = engine.start(script.flow, script.context)
    return engine.resume(script.flow, turn.stored, script.home, script.context).stored


# ==========================================================================================
# Measuring helpers
# ==========================================================================================


def percentile(sorted_values: list[int], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return float(sorted_values[index])


def rss_bytes() -> int | None:
    """Resident set size of this process now (Linux), or None."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * KIB  # KiB on Linux, bytes on macOS


@dataclass
class GcWatch:
    """Record every garbage collection's generation and pause (gc.callbacks)."""

    pauses: dict[int, list[int]] = field(default_factory=lambda: {0: [], 1: [], 2: []})
    _started: int = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.pauses[info["generation"]].append(time.perf_counter_ns() - self._started)

    @contextmanager
    def watching(self) -> Iterator[GcWatch]:
        gc.callbacks.append(self)
        try:
            yield self
        finally:
            gc.callbacks.remove(self)

    @property
    def all(self) -> list[int]:
        return [p for pauses in self.pauses.values() for p in pauses]


def median_time_ns(action: Callable[[], Any], runs: int) -> tuple[int, Any]:
    """Run `action` `runs` times after a full collection each; return the median ns, a result."""
    times = []
    result = None
    for _ in range(runs):
        result = None  # let the previous run's result go before the next one is timed
        gc.collect()
        started = time.perf_counter_ns()
        result = action()
        times.append(time.perf_counter_ns() - started)
    return int(statistics.median(times)), result


@contextmanager
def timing_phases(spent: dict[str, int]) -> Iterator[None]:
    """Time the YAML parse and the machine building inside load_flow, adding ns to `spent`.

    Wraps the names that bots.checker and bots.catalog call (their modules are not edited)
    and puts them back afterwards; the wrappers cost about a microsecond a load.
    """
    originals = {"parse": (bots.checker, "load"), "machine": (bots.catalog, "build_machine")}
    saved = {phase: getattr(module, name) for phase, (module, name) in originals.items()}

    def timed(phase: str) -> Callable[..., Any]:
        inner = saved[phase]

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[phase] = spent.get(phase, 0) + time.perf_counter_ns() - started
        return wrapper

    for phase, (module, name) in originals.items():
        setattr(module, name, timed(phase))
    try:
        yield
    finally:
        for phase, (module, name) in originals.items():
            setattr(module, name, saved[phase])


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Format a right-aligned text table."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def section(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


# ==========================================================================================
# The benchmark
# ==========================================================================================


@dataclass
class Settings:
    sizes: tuple[int, ...]
    load_runs: int = LOAD_RUNS
    load_runs_big: int = LOAD_RUNS_BIG
    turns: int = TURNS
    warmup: int = WARMUP_CYCLES
    json_rounds: int = JSON_ROUNDS
    profile: bool = False


@dataclass
class TurnFigures:
    label: str
    median_us: float
    p90_us: float
    p99_us: float
    max_us: float
    gc: GcWatch
    by_step: list[tuple[str, float]]  # (what the step is, its median us)


def check_generated(sizes: tuple[int, ...], folder: Path) -> dict[int, Path]:
    """Write each generated flow to `folder` and check it; exit 1 on any checker error."""
    section("generated flows (checked by bots.checker)")
    paths = {}
    rows = []
    failed = False
    for size in sizes:
        text = generate_flow(size)
        path = folder / f"bench_{size}.yaml"
        path.write_text(text, encoding="utf-8")
        flow, diagnostics = check_text(text, str(path))
        errors = [d for d in diagnostics if d.is_error]
        warnings = [d for d in diagnostics if not d.is_error]
        for diagnostic in (errors + warnings)[:10]:
            print(f"  {diagnostic}")
        if flow is None or errors or len(flow.states) != size:
            failed = True
            got = "none" if flow is None else len(flow.states)
            print(f"  FAILED: the generated flow of {size} states does not check "
                  f"({len(errors)} errors, {got} states)")
        paths[size] = path
        rows.append([f"{size:,}", f"{topic_count(size):,}", f"{len(text) / KIB:,.0f}",
                     f"{len(text.splitlines()):,}", str(len(errors)), str(len(warnings))])
    print(table(["states", "topics", "KiB", "lines", "errors", "warnings"], rows))
    if failed:
        sys.exit(1)
    return paths


def measure_loads(paths: dict[int, Path], settings: Settings) -> dict[int, float]:
    """Time load_flow(path) per size; print the table with a breakdown; return median s."""
    section("load time: bots.catalog.load_flow(path) = read + parse + validate + machine")
    load_flow(DEFAULT_FLOW)  # warm imports and Jinja's lexer once, outside the timings
    medians: dict[int, float] = {}
    rows = []
    for size, path in paths.items():
        runs = []  # per run: {"total", "parse", "machine", "gc"} in ns
        for _ in range(settings.load_runs if size <= BIG_FLOW_STATES else settings.load_runs_big):
            gc.collect()  # the previous run's flow is gone: every run starts alike
            spent: dict[str, int] = {}
            watch = GcWatch()
            with timing_phases(spent), watch.watching():
                started = time.perf_counter_ns()
                flow, _ = load_flow(path)
                spent["total"] = time.perf_counter_ns() - started
            assert flow is not None
            del flow
            spent["gc"] = sum(watch.all)
            runs.append(spent)
        # the run with the median total, so that its pieces add up to it
        median_run = sorted(runs, key=lambda r: r["total"])[len(runs) // 2]
        ms = {key: value / NS_PER_MS for key, value in median_run.items()}
        medians[size] = median_run["total"] / NS_PER_S
        rows.append([f"{size:,}", str(len(runs)), f"{ms['total']:,.1f}",
                     f"{ms['parse']:,.1f}", f"{ms['total'] - ms['parse'] - ms['machine']:,.1f}",
                     f"{ms['machine']:,.1f}", f"{ms['gc']:,.1f}",
                     f"{median_run['total'] / NS_PER_US / size:,.0f}"])
    print(table(["states", "runs", "load ms (median)", "YAML parse ms", "read+validate ms",
                 "machine ms", "gc pauses ms", "us/state"], rows))
    print("  (the pieces are those of the median run; each includes the gc pauses that fell "
          "in it)")
    return medians


def measure_memory(paths: dict[int, Path]) -> dict[str, float]:
    """Measure the memory a loaded 1,000-state flow holds (or the nearest size)."""
    size = min(paths, key=lambda s: abs(s - LOAD_TARGET_STATES))
    section(f"memory of a loaded {size:,}-state flow")
    path = paths[size]
    gc.collect()
    rss_before = rss_bytes()
    untraced, _ = load_flow(path)  # RSS growth, without tracemalloc's own overhead
    gc.collect()
    rss_after = rss_bytes()
    del untraced

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    text = path.read_text(encoding="utf-8")
    flow, _ = check_text(text, str(path))
    del text
    gc.collect()
    checked = tracemalloc.get_traced_memory()[0] - base
    assert flow is not None
    flow.machine = build_machine(flow)
    gc.collect()
    total, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    total -= base
    peak -= base
    del flow
    gc.collect()

    figures = {"states": size, "total_mib": total / MIB, "flow_mib": checked / MIB,
               "machine_mib": (total - checked) / MIB, "peak_mib": peak / MIB,
               "per_state_kib": total / KIB / size}
    print(f"  retained after load (tracemalloc): {total / MIB:.2f} MiB "
          f"= {total / KIB / size:.1f} KiB a state")
    print(f"    checked Flow (states, templates with their Jinja ASTs): {checked / MIB:.2f} MiB")
    print(f"    transitions machine:                                    "
          f"{(total - checked) / MIB:.2f} MiB")
    print(f"  peak while loading: {peak / MIB:.2f} MiB")
    if rss_before is not None and rss_after is not None:
        figures["rss_delta_mib"] = (rss_after - rss_before) / MIB
        print(f"  RSS growth of the process for one load: {(rss_after - rss_before) / MIB:.2f} MiB"
              f" (RSS now {rss_after / MIB:.1f} MiB)")
    return figures


def measure_turns(paths: dict[int, Path], settings: Settings) -> list[TurnFigures]:
    """Time engine.reply on every flow's script; print a table; return the figures."""
    scripts = []
    for size, path in paths.items():
        flow, _ = load_flow(path)
        assert flow is not None
        scripts.append(topic_script(flow, size))
    default, _ = load_flow(DEFAULT_FLOW)
    if default is not None:
        scripts.append(default_script(default))

    section("garbage collector with every benchmark flow loaded")
    full_ns, _ = median_time_ns(gc.collect, 3)
    print(f"  full collection (gen 2): {full_ns / NS_PER_MS:.2f} ms, "
          f"{len(gc.get_objects()):,} tracked objects")
    gc.freeze()  # what each worker does after start-up (docs/stack.md, "Collector pauses")
    frozen_ns, _ = median_time_ns(gc.collect, 3)
    print(f"  after gc.freeze():       {frozen_ns / NS_PER_MS:.2f} ms "
          f"({gc.get_freeze_count():,} objects frozen); the turns below run frozen")

    section(f"time per turn: engine.reply, {settings.turns:,} timed turns a flow "
            f"after {settings.warmup} warm-up passes")
    figures = []
    samples: list[list[dict[str, Any]]] = []  # each flow's Turn.stored of one pass, for JSON
    for script in scripts:
        stored = home_state(script)
        for _ in range(settings.warmup):  # compiles templates; checks the script is right
            stored = run_script(script, stored, check=True)
            if stored["state"] != script.home:
                raise OffScript(f"{script.label}: the script ends in '{stored['state']}', "
                                f"not in its home state '{script.home}'")
        timings: list[int] = []
        watch = GcWatch()
        with watch.watching():
            while len(timings) < settings.turns:
                stored = run_script(script, stored, timings)
                if script.context.http is not None:
                    script.context.http.requests.clear()  # CannedClient keeps a log
        count = len(script.steps)  # timings hold whole passes: turn j is step j % count
        by_step = [(step.what, statistics.median(timings[j::count]) / NS_PER_US)
                   for j, step in enumerate(script.steps)]
        samples.append(stored_samples(script, stored))
        timings.sort()
        figures.append(TurnFigures(
            script.label, percentile(timings, 0.50) / NS_PER_US,
            percentile(timings, 0.90) / NS_PER_US, percentile(timings, 0.99) / NS_PER_US,
            timings[-1] / NS_PER_US, watch, by_step))
    rows = []
    for f in figures:
        pauses = f.gc.all
        rows.append([f.label, f"{f.median_us:.1f}", f"{f.p90_us:.1f}", f"{f.p99_us:.1f}",
                     f"{f.max_us:.0f}",
                     "/".join(str(len(f.gc.pauses[g])) for g in (0, 1, 2)),
                     f"{max(pauses) / NS_PER_US:.0f}" if pauses else "-",
                     f"{sum(pauses) / NS_PER_MS:.1f}"])
    print(table(["flow", "median us", "p90 us", "p99 us", "max us", "gc runs gen0/1/2",
                 "longest gc us", "gc total ms"], rows))
    if not any(f.gc.all for f in figures):
        print("  (no collection ran: each turn frees what it allocates, so the engine alone never\n"
              "   triggers the collector; other work in the same process will, see above)")
    print("  median us of each step of the script (one pass, in order):")
    for f in figures:
        print(f"    {f.label}: " + " | ".join(f"{what} {us:.1f}" for what, us in f.by_step))

    measure_json(scripts, samples, settings)
    if settings.profile:
        profile_turns(scripts[len(paths) - 1] if paths else scripts[-1], settings)
    gc.unfreeze()
    return figures


def stored_samples(script: Script, stored: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the Turn.stored of each step of one more pass (from a long conversation)."""
    samples = []
    for step in script.steps:
        stored = engine.reply(script.flow, stored, step.text, step.payload,
                              script.context).stored
        samples.append(stored)
    return samples


def measure_json(scripts: list[Script], samples_by_script: list[list[dict[str, Any]]],
                 settings: Settings) -> None:
    """Time json.loads(json.dumps(stored)) of each Turn.stored of one script pass."""
    section("JSON round trip of Turn.stored (what the service stores after each turn)")
    rows = []
    for script, samples in zip(scripts, samples_by_script, strict=True):
        timings = []
        clock = time.perf_counter_ns
        for _ in range(settings.json_rounds):
            for sample in samples:
                started = clock()
                json.loads(json.dumps(sample))
                timings.append(clock() - started)
        timings.sort()
        sizes = [len(json.dumps(s).encode()) for s in samples]
        rows.append([script.label, f"{percentile(timings, 0.5) / NS_PER_US:.1f}",
                     f"{percentile(timings, 0.99) / NS_PER_US:.1f}",
                     f"{statistics.median(sizes):.0f}", f"{max(sizes)}"])
    print(table(["flow", "median us", "p99 us", "median bytes", "max bytes"], rows))
    print(f"  (from a conversation {settings.turns:,} turns long: `path` holds its last "
          f"{engine.MAX_PATH} states)")


def profile_turns(script: Script, settings: Settings) -> None:
    section(f"profile: turns on {script.label} (cProfile, top functions by own time, then "
            "by cumulative time)")
    stored = home_state(script)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(max(1, settings.turns // (len(script.steps) * 4))):
        stored = run_script(script, stored)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(25)


def profile_load(path: Path) -> None:
    section(f"profile: load_flow({path.name}) (cProfile, top functions by cumulative time)")
    profiler = cProfile.Profile()
    profiler.enable()
    load_flow(path)
    profiler.disable()
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(20)


def summary(loads: dict[int, float], turns: list[TurnFigures], memory: dict[str, float],
            settings: Settings, elapsed_s: float) -> None:
    section("summary")
    print(f"machine: {os.cpu_count()} cpus, {platform.platform()}, "
          f"{platform.python_implementation()} {platform.python_version()}")
    print(f"sizes: {', '.join(f'{s:,}' for s in settings.sizes)} states; "
          f"{settings.turns:,} turns a flow; benchmark ran {elapsed_s:.0f} s")

    def verdict(ok: bool | None, target: str, figure: str) -> None:
        word = "SKIP" if ok is None else "PASS" if ok else "FAIL"
        print(f"  {word}  {target:<52} {figure}")

    if LOAD_TARGET_STATES in loads:
        seconds = loads[LOAD_TARGET_STATES]
        verdict(seconds < LOAD_TARGET_S,
                f"a {LOAD_TARGET_STATES:,}-state flow loads in under {LOAD_TARGET_S:g} s",
                f"median {seconds:.3f} s")
    else:
        verdict(None, f"a {LOAD_TARGET_STATES:,}-state flow loads in under {LOAD_TARGET_S:g} s",
                f"(no {LOAD_TARGET_STATES:,}-state flow in --sizes)")
    worst = max(turns, key=lambda f: f.median_us)
    verdict(worst.median_us < TURN_TARGET_US,
            f"a turn under {TURN_TARGET_US / 1000:g} ms (median, every flow)",
            f"worst median {worst.median_us:.1f} us ({worst.label})")
    generated = [f for f in turns if f.label.endswith(" states")]
    if len(generated) >= 2:
        smallest, largest = generated[0], generated[-1]
        ratio = largest.median_us / smallest.median_us
        verdict(ratio <= GROWTH_LIMIT, "no growth of the turn with the flow's size",
                f"median {largest.label} / {smallest.label} = {ratio:.2f} "
                f"(limit {GROWTH_LIMIT:g})")
    else:
        verdict(None, "no growth of the turn with the flow's size", "(needs two sizes)")
    worst_p99 = max(turns, key=lambda f: f.p99_us)
    print(f"  info  p99 of a turn: worst {worst_p99.p99_us:.1f} us ({worst_p99.label}); "
          f"loaded {memory['states']:,}-state flow: {memory['total_mib']:.1f} MiB; "
          f"peak RSS {(peak_rss_bytes() or 0) / MIB:.0f} MiB")


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer runs and turns: a smoke run of a few seconds")
    parser.add_argument("--sizes", help="comma-separated states per generated flow "
                        f"(default {','.join(map(str, DEFAULT_SIZES))}; "
                        f"--quick: {','.join(map(str, QUICK_SIZES))}); at least "
                        f"{CORE_STATES + TOPIC_STATES} each")
    parser.add_argument("--turns", type=int, help=f"timed turns a flow (default {TURNS:,})")
    parser.add_argument("--profile", action="store_true",
                        help="also profile a load and the turns with cProfile")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    if args.sizes:
        try:
            sizes = tuple(sorted({int(s) for s in args.sizes.split(",") if s.strip()}))
        except ValueError:
            parser.error(f"--sizes must be whole numbers separated by commas, not {args.sizes!r}")
        if not sizes or min(sizes) < CORE_STATES + TOPIC_STATES:
            parser.error(f"each size must be at least {CORE_STATES + TOPIC_STATES} states")
    settings = Settings(sizes=sizes, profile=args.profile)
    if args.quick:
        settings.load_runs = QUICK["load_runs"]
        settings.load_runs_big = QUICK["load_runs_big"]
        settings.turns = QUICK["turns"]
        settings.warmup = QUICK["warmup"]
        settings.json_rounds = QUICK["json_rounds"]
    if args.turns is not None:
        if args.turns < 1:
            parser.error("--turns must be at least 1")
        settings.turns = args.turns
    return settings


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    began = time.perf_counter()
    print(f"Concierge engine benchmark: {os.cpu_count()} cpus, {platform.platform()}, "
          f"Python {platform.python_version()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="concierge-bench-") as folder:
        paths = check_generated(settings.sizes, Path(folder))
        loads = measure_loads(paths, settings)
        if settings.profile:
            profile_load(paths[min(paths, key=lambda s: abs(s - LOAD_TARGET_STATES))])
        memory = measure_memory(paths)
        try:
            turns = measure_turns(paths, settings)
        except OffScript as exc:
            print(f"\nFAILED: a scripted conversation went off script: {exc}")
            return 1
    summary(loads, turns, memory, settings, time.perf_counter() - began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
