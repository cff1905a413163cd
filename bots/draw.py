"""Draw a flow as a graph: Graphviz DOT text, and SVG through the `dot` program."""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap

from .flow import Flow, State

INSTALL_HINT = ("drawing needs Graphviz's 'dot' program, which is not installed. Install it "
                "with 'sudo apt-get install graphviz' (Debian, Ubuntu), 'brew install graphviz' "
                "(macOS) or from https://graphviz.org/download/, or use --format dot to get "
                "the graph as text")
DOT_TIMEOUT_S = 60  # a 1,000-state flow lays out in a few seconds


class DrawError(Exception):
    """The drawing could not be made; the message says what to do."""


LABEL_WIDTH = 22  # characters per line of a label: about 150 pt, so several fit side by side
STATE_TEXT_LINES = 3  # of a state's first message; the rest is cut with "…"
EDGE_LINES = 2  # of a button title or keywords; conditions (when, regex) are shown whole
TOPIC_SEPARATORS = re.compile(r"[_.-]")
MIN_TOPIC_STATES = 3  # two states that start alike (ask_order, ask_message) are rarely a topic


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _wrap(text: str, lines: int | None = None) -> str:
    """Break text into lines of at most LABEL_WIDTH characters, `lines` of them at most."""
    wrapped = textwrap.wrap(" ".join(text.split()), LABEL_WIDTH, break_long_words=False,
                            break_on_hyphens=False) or [""]
    if lines is not None and len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: LABEL_WIDTH - 1] + "…"
    return "\n".join(wrapped)


def placeholders(source: str) -> str:
    """Show a template as text with a ‹name› for each value, as a reader would picture it.

    `{{ vars.order_id | upper }}` becomes ‹order_id›, `{{ visitor.name or 'there' }}`
    ‹name›; the branches of `{% if %}...{% else %}...` are kept, separated by " / ".
    """
    def value(found: re.Match[str]) -> str:
        inside = found.group(1)
        named = re.search(r"\b(?:vars|visitor)\.(\w+)|\b(input)\b|\bmatch\[(\d+)\]", inside)
        if named is None:
            return "‹…›"
        name, typed, group = named.groups()
        return f"‹{name or typed or 'match ' + group}›"

    text = re.sub(r"\{#.*?#\}", "", source, flags=re.S)
    text = re.sub(r"\{%-?\s*(?:else|elif\b.*?)\s*-?%\}", " / ", text, flags=re.S)
    text = re.sub(r"\{%.*?%\}", "", text, flags=re.S)
    return re.sub(r"\{\{(.*?)\}\}", value, text, flags=re.S)


def topic(name: str) -> str:
    """The topic a state's name gives it: the part before its first _, . or -."""
    return TOPIC_SEPARATORS.split(name, maxsplit=1)[0]


def topics(flow: Flow) -> dict[str, list[str]]:
    """Group the states that share a topic (three or more), in file order."""
    found: dict[str, list[str]] = {}
    for name in flow.states:
        found.setdefault(topic(name), []).append(name)
    return {key: names for key, names in found.items() if len(names) >= MIN_TOPIC_STATES}


def _label(state: State) -> str:
    lines = [state.name]
    first = state.say[0].source if state.say else state.ask.source if state.ask else ""
    if first:
        lines.append(_wrap(placeholders(first), STATE_TEXT_LINES))
    if state.call:
        lines.append(_wrap(f"{state.call.method} {placeholders(state.call.url.source)}"))
    if state.escalate:
        lines.append(f"→ person ({state.escalate.queue})")
    return "\n".join(lines)


def _edge_label(label: str) -> str:
    whole = label.startswith(("when ", "regex: "))
    return _wrap(label, None if whole else EDGE_LINES)


def to_dot(flow: Flow) -> str:
    """Return the flow as Graphviz DOT: states, buttons, rules, intents and escalations.

    Top to bottom, so the page grows in length rather than width; states of one topic
    (the start of their names: booking_date, booking_confirm) are drawn in one box.
    """
    out = [f"digraph {_quote(flow.id)} {{",
           '  graph [rankdir=TB, fontname="Helvetica", labelloc=t, nodesep=0.15, ranksep=0.3, '
           f"newrank=true, label={_quote(flow.description or flow.id)}];",
           '  node [shape=box, style="rounded,filled", fillcolor="#f4f6fb", '
           'fontname="Helvetica", fontsize=11];',
           '  edge [fontname="Helvetica", fontsize=9, color="#5b6475"];',
           '  "(start)" [shape=circle, label="", width=0.25, style=filled, fillcolor=black];',
           f"  \"(start)\" -> {_quote(flow.start)};"]
    grouped = topics(flow)
    members = {name: key for key, names in grouped.items() for name in names}
    for key, names in grouped.items():
        out.append(f"  subgraph {_quote('cluster_' + key)} {{")
        out.append(f'    graph [label={_quote(key)}, style="rounded,dashed", color="#9aa3b5", '
                   'fontsize=12];')
        out += [f"    {_node(flow.states[name])}" for name in names]
        out.append("  }")
    for name, state in flow.states.items():
        if name not in members:
            out.append(f"  {_node(state)}")
    # Each topic below the one before it, not beside it: the page grows down, not across.
    boxes = list(grouped.values())
    for above, below in zip(boxes, boxes[1:], strict=False):
        out += [f"  {_quote(name)} -> {_quote(below[0])} [style=invis, weight=10];"
                for name in above]
    for name, state in flow.states.items():
        for target, label in state.exits():
            dashed = ", style=dashed" if label in ("invalid", "error", "no agents", "else") else ""
            text = "" if label == "next" else _edge_label(label)  # a plain arrow is next
            out.append(f"  {_quote(name)} -> {_quote(target)} [label={_quote(text)}{dashed}];")
    globals_ = [(r.goto, r.describe()) for r in flow.intents]
    if flow.settings.fallback_to:
        globals_.append((flow.settings.fallback_to, f"{flow.settings.max_fallbacks} misses"))
    if flow.settings.on_idle:
        globals_.append((flow.settings.on_idle, f"idle {flow.settings.idle_timeout}s"))
    if globals_:
        out.append('  "(any waiting state)" [shape=note, fillcolor="#fff8d6"];')
        for target, label in globals_:
            out.append(f"  \"(any waiting state)\" -> {_quote(target)} "
                       f"[label={_quote(_edge_label(label))}, style=dotted];")
    out.append("}")
    return "\n".join(out) + "\n"


def _node(state: State) -> str:
    style = ""
    if state.escalate:
        style = ', shape=hexagon, fillcolor="#ffe8cc"'
    elif state.end:
        style = ', peripheries=2, fillcolor="#e3f5e1"'
    elif state.call:
        style = ', shape=component, fillcolor="#e8f0ff"'
    return f"{_quote(state.name)} [label={_quote(_label(state))}{style}];"


def to_svg(dot_text: str) -> bytes:
    """Lay the graph out with Graphviz's `dot`; raise DrawError if it is missing or fails."""
    program = shutil.which("dot")
    if program is None:
        raise DrawError(INSTALL_HINT)
    try:
        done = subprocess.run([program, "-Tsvg"], input=dot_text.encode(), capture_output=True,
                              timeout=DOT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DrawError(f"Graphviz took longer than {DOT_TIMEOUT_S} s to lay out the flow") \
            from exc
    if done.returncode != 0:
        raise DrawError(f"Graphviz failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
