"""What a bot turn leads to: from the engine's settled outputs to what its one store writes.

No Redis and no I/O: the idle deadline comes from the `now` passed in (the messages
and the escalation are stamped with the wall clock as frames are). `decide` turns a settled
turn (bots/handoff.py) into the bot's messages, the status changes it makes
(chat/lifecycle.py: queued for a person, closed) and the record's new fields,
idle deadline included; chat/turns.py then commits all of it in one fenced step.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from bots import engine
from bots.flow import Flow

from . import frames, lifecycle
from .conversations import BOT, CLOSED, QUEUED, Conversation


@dataclass
class Decision:
    """What one bot turn stores: messages (system ones included), fields, status changes."""

    status: str  # the status the conversation is left in
    messages: list[dict[str, Any]] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    changes: list[lifecycle.Change] = field(default_factory=list)
    deadline: float | None = None  # the idle wake-up to arm with the store, if any
    stored_seq: int = 0  # the last seq once stored

    def change(self, change: lifecycle.Change) -> None:
        """Add a status change: its system message follows what was said before it."""
        self.changes.append(change)
        self.messages.append(change.message)
        self.fields.update(change.record_fields())
        self.status = change.status

    @property
    def forget_verified(self) -> str | None:
        return next((c.forget_verified for c in self.changes if c.forget_verified), None)


def bot_message(cid: str, text: str, buttons: list[dict[str, str]] | None = None
                ) -> dict[str, Any]:
    return frames.message(cid, "bot", text, message_id="m_" + secrets.token_hex(8),
                          buttons=buttons)


def decide(conversation: Conversation, flow: Flow, turn: engine.Turn, *, now: float,
           bot_seq: int | None = None, arm_idle: bool = True,
           before: lifecycle.Change | None = None) -> Decision:
    """Decide what a settled turn stores.

    `bot_seq` is the visitor message it answered (None: it answered none); `before` is a
    status change that comes before the turn's messages (back to the bot, for `no_agents`).
    """
    cid = conversation.id
    decision = Decision(status=conversation.status)
    if before is not None:
        decision.change(before)
    for output in turn.outputs:
        if output["type"] == "message":
            decision.messages.append(bot_message(cid, output["text"], output.get("buttons")))
        elif output["type"] == "escalate":
            escalation = {key: output[key] for key in ("queue", "priority", "reason", "path")}
            if output.get("note"):  # the flow's note for the agent (bots/engine.py)
                escalation["note"] = output["note"]
            escalation["at"] = frames.now_iso()
            if not output["taken"]:  # the flow went on at no_agents; `say` is not sent
                decision.fields["escalation"] = {**escalation, "outcome": "no_agents"}
                continue
            decision.messages += [bot_message(cid, text) for text in output["say"]]
            decision.change(lifecycle.queueing(cid, {**escalation, "outcome": QUEUED}))
        elif output["type"] == "end":
            decision.change(lifecycle.closing(cid, "bot", conversation.visitor))
    decision.fields["bot"] = turn.stored
    if bot_seq is not None:
        decision.fields["bot_seq"] = bot_seq
    timeout = flow.settings.idle_timeout
    if timeout and decision.status != CLOSED:  # closing clears the deadline itself
        # The deadline is stored with the turn, so only the lock's holder moves it.
        if arm_idle and decision.status == BOT and turn.stored.get("wait") == engine.WAIT_INPUT:
            decision.deadline = now + timeout
        decision.fields["idle_at"] = f"{decision.deadline:.3f}" if decision.deadline else ""
    return decision


def flow_gone(conversation: Conversation, text: str, bot_seq: int) -> Decision:
    """Close a conversation whose flow was removed, telling the visitor why."""
    decision = Decision(status=conversation.status,
                        messages=[bot_message(conversation.id, text)],
                        fields={"bot_seq": bot_seq})
    decision.change(lifecycle.closing(conversation.id, "flow_removed", conversation.visitor))
    return decision
