"""Fold a turn's escalations: where nobody could take the conversation, go on at `no_agents`.

An `escalate` output ends the bot's turn. Whoever runs the bot (the live
service, `flask flows chat`, `flask flows test`) then asks whether anybody can
take the conversation; when nobody can, the flow goes on at the escalating
state's `no_agents` state, and that turn may escalate again. `settle` runs that
loop once for all three, so they cannot drift apart.

The outputs of a settled turn are the outputs of every turn in it, in order.
Each `escalate` output gains `taken`: False where nobody could take it (its
`say` is then not said, and the `no_agents` turn's outputs follow), True for
the one escalation that stands (always the last output).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import engine
from .flow import Flow
from .graph import MAX_STEPS_PER_TURN

# escalate -> no_agents -> escalate …: the checker rejects loops through no_agents and longer
# chains of states, so a checked flow never folds this often; one that does is stopped here.
MAX_FOLDS = MAX_STEPS_PER_TURN


def settle(flow: Flow, turn: engine.Turn, context: engine.Context | None,
           anybody_there: Callable[[dict[str, Any]], bool]) -> engine.Turn:
    """Return `turn` with every escalation nobody could take folded into its `no_agents` turn.

    `anybody_there(escalate_output)` tells whether a person could take the conversation
    (for the live service: an agent of the queue is present and the queue is open).
    """
    outputs: list[dict[str, Any]] = []
    for folds in range(MAX_FOLDS + 1):
        follow = None
        for output in turn.outputs:
            if output["type"] != "escalate":
                outputs.append(output)
                continue
            taken = anybody_there(output)
            outputs.append({**output, "taken": taken})
            if not taken and folds < MAX_FOLDS:  # past the cap the last escalation stays
                follow = engine.no_agents(flow, turn.stored, context)
            break  # an escalation ends the turn's outputs
        if follow is None:
            break
        turn = follow
    return engine.Turn(stored=turn.stored, outputs=outputs)


def standing_escalation(turn: engine.Turn) -> dict[str, Any] | None:
    """Return the escalation a settled turn leaves standing (someone can take it), if any."""
    last = turn.outputs[-1] if turn.outputs else None
    if last is not None and last["type"] == "escalate" and last.get("taken"):
        return last
    return None
