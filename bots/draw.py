"""Draw a flow as a graph: Graphviz DOT text, and SVG through the `dot` program."""

from __future__ import annotations

import shutil
import subprocess

from .flow import Flow, State

INSTALL_HINT = ("drawing needs Graphviz's 'dot' program, which is not installed. Install it "
                "with 'sudo apt-get install graphviz' (Debian, Ubuntu), 'brew install graphviz' "
                "(macOS) or from https://graphviz.org/download/, or use --format dot to get "
                "the graph as text")
DOT_TIMEOUT_S = 60  # a 1,000-state flow lays out in a few seconds


class DrawError(Exception):
    """The drawing could not be made; the message says what to do."""


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _clip(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _label(state: State) -> str:
    lines = [state.name]
    first = state.say[0].source if state.say else state.ask.source if state.ask else ""
    if first:
        lines.append(_clip(first))
    if state.call:
        lines.append(f"{state.call.method} {_clip(state.call.url.source, 36)}")
    if state.escalate:
        lines.append(f"→ person ({state.escalate.queue})")
    return "\n".join(lines)


def to_dot(flow: Flow) -> str:
    """Return the flow as Graphviz DOT: states, buttons, rules, intents and escalations."""
    out = [f"digraph {_quote(flow.id)} {{",
           '  graph [rankdir=LR, fontname="Helvetica", labelloc=t, '
           f"label={_quote(flow.description or flow.id)}];",
           '  node [shape=box, style="rounded,filled", fillcolor="#f4f6fb", '
           'fontname="Helvetica", fontsize=11];',
           '  edge [fontname="Helvetica", fontsize=9, color="#5b6475"];',
           '  "(start)" [shape=circle, label="", width=0.25, style=filled, fillcolor=black];',
           f"  \"(start)\" -> {_quote(flow.start)};"]
    for name, state in flow.states.items():
        style = ""
        if state.escalate:
            style = ', shape=hexagon, fillcolor="#ffe8cc"'
        elif state.end:
            style = ', peripheries=2, fillcolor="#e3f5e1"'
        elif state.call:
            style = ', shape=component, fillcolor="#e8f0ff"'
        out.append(f"  {_quote(name)} [label={_quote(_label(state))}{style}];")
        for target, label in state.exits():
            dashed = ", style=dashed" if label in ("invalid", "error", "no agents", "else") else ""
            out.append(f"  {_quote(name)} -> {_quote(target)} "
                       f"[label={_quote(_clip(label, 30))}{dashed}];")
    globals_ = [(r.goto, r.describe()) for r in flow.intents]
    if flow.settings.fallback_to:
        globals_.append((flow.settings.fallback_to, f"{flow.settings.max_fallbacks} misses"))
    if flow.settings.on_idle:
        globals_.append((flow.settings.on_idle, f"idle {flow.settings.idle_timeout}s"))
    if globals_:
        out.append('  "(any waiting state)" [shape=note, fillcolor="#fff8d6"];')
        for target, label in globals_:
            out.append(f"  \"(any waiting state)\" -> {_quote(target)} "
                       f"[label={_quote(_clip(label, 30))}, style=dotted];")
    out.append("}")
    return "\n".join(out) + "\n"


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
