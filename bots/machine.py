"""Compile a checked flow onto a `transitions` state machine.

One machine per flow, built once and shared by every conversation: the
machine has no model of its own (`model=None`), and each turn drives a small
`Cursor` whose `state` attribute the machine moves. An edge the flow does not
have cannot be taken: the machine refuses it, so the engine cannot wander.
(auto_transitions stay off: with them a 200-state machine took 19 MiB.)
"""

from __future__ import annotations

import logging

from transitions import Machine

from .flow import Flow
from .graph import edges

# transitions logs every state change at INFO: noise in the server's log, and work on every turn
logging.getLogger("transitions").setLevel(logging.WARNING)


def event_name(target: str) -> str:
    """Name the event that moves to `target`."""
    return f"to:{target}"


def build_machine(flow: Flow) -> Machine:
    """Build the flow's machine: one state per flow state, one event per target."""
    machine = Machine(
        model=None,
        states=list(flow.states),
        initial=flow.start,
        auto_transitions=False,
        ignore_invalid_triggers=False,
    )
    sources_by_target: dict[str, list[str]] = {}
    for source, targets in edges(flow).items():
        for target in targets:
            sources_by_target.setdefault(target, []).append(source)
    for target, sources in sources_by_target.items():
        machine.add_transition(event_name(target), source=sources, dest=target)
    return machine


class Cursor:
    """The one object a turn moves through the machine."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state
