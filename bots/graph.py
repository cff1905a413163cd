"""Analyse a flow as a graph of states: where each state leads, and what can never work.

Pure functions of a built Flow. The checker turns what they find into
diagnostics (unreachable states, states with no way to a person or an end,
loops and over-long chains of states that move on at once); the machine
compiles `edges` into its transitions.
"""

from __future__ import annotations

from collections.abc import Iterable

from .flow import Flow

MAX_STEPS_PER_TURN = 50  # states one turn may enter; the engine stops a runaway turn there


def edges(flow: Flow) -> dict[str, set[str]]:
    """Map each state to the states it can lead to, intents and settings included."""
    found: dict[str, set[str]] = {}
    global_targets = {rule.goto for rule in flow.intents}
    for extra in (flow.settings.fallback_to, flow.settings.on_idle):
        if extra:
            global_targets.add(extra)
    for name, state in flow.states.items():
        targets = {target for target, _ in state.exits()}
        if state.waits:
            targets |= global_targets
        found[name] = {t for t in targets if t in flow.states}
    return found


def reachable(starts: Iterable[str], graph: dict[str, set[str]]) -> set[str]:
    """Return every state that one of `starts` leads to in `graph`, the starts included."""
    seen: set[str] = set()
    todo = [s for s in starts if s in graph]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(graph.get(name, ()))
    return seen


def unreached(flow: Flow, graph: dict[str, set[str]]) -> list[str]:
    """List the states that the start never leads to, in file order."""
    reached = reachable([flow.start], graph)
    return [name for name in flow.states if name not in reached]


def stuck(flow: Flow, graph: dict[str, set[str]]) -> list[str]:
    """List the reachable states from which no way leads to a person or an end, in file order."""
    reached = reachable([flow.start], graph)
    backwards: dict[str, set[str]] = {name: set() for name in flow.states}
    for source, targets in graph.items():
        for target in targets:
            backwards[target].add(source)
    finishing = reachable([s.name for s in flow.states.values() if s.end or s.escalate],
                          backwards)
    return [name for name in flow.states if name in reached and name not in finishing]


def instant_loops(flow: Flow) -> list[list[str]]:
    """Return loops of states that move on without waiting for the visitor.

    One loop per group of such states: no state is in two of the loops returned.
    """
    reported: set[str] = set()
    loops = []
    for cycle in _cycles(_moving(flow)):
        if reported.isdisjoint(cycle):
            reported.update(cycle)
            loops.append(cycle)
    return loops


def overlong_chain(flow: Flow) -> tuple[str, int] | None:
    """Return the first state (in file order) whose chain is too long for one turn, and its length.

    The length counts the states from there that move on at once; with the state that
    waits at its end, one turn would enter one more. None when every chain fits, and
    for a flow with instant loops (`instant_loops` reports those).
    """
    graph = _moving(flow)
    if _cycles(graph):
        return None
    longest: dict[str, int] = {}  # states from here until one that waits, ends or escalates
    for root in graph:
        stack = [(root, False)]
        while stack:
            name, expanded = stack.pop()
            if name in longest:
                continue
            if expanded:
                longest[name] = 1 + max((longest[t] for t in graph[name]), default=0)
                continue
            stack.append((name, True))
            stack.extend((t, False) for t in graph[name] if t not in longest)
    for name in graph:
        if longest[name] + 1 > MAX_STEPS_PER_TURN:  # + the state that waits at the end
            return name, longest[name]
    return None


def _moving(flow: Flow) -> dict[str, list[str]]:
    """Map each state that moves on at once to the states of that kind it leads to."""
    moving = [name for name, state in flow.states.items()  # in file order: stable output
              if not state.waits and not state.end]
    kept = set(moving)
    return {name: [t for t, _ in flow.states[name].exits() if t in kept] for name in moving}


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Return one cycle through each group of states that loop (iterative DFS)."""
    colour: dict[str, int] = {}
    found: list[list[str]] = []
    for root in graph:
        if root in colour:
            continue
        stack: list[tuple[str, Iterable[str]]] = [(root, iter(graph[root]))]
        path = [root]
        colour[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                colour[node] = 2
            elif colour.get(child) == 1:
                found.append(path[path.index(child):])
            elif child not in colour:
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(graph[child])))
    return found
