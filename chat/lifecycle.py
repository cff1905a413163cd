"""Every status change of a conversation: decided here, stored in one fenced step, then told.

A conversation is with the bot, `queued` for a person, with an `agent`, or
`closed`. Each change is one atomic Redis step that writes the record's new
status (and the fields that go with it) and appends a `system` message to the
log — `{"from": "system", "event": "closed", "status": "closed", "reason":
"visitor", "text": "The visitor ended the conversation."}` — published like any
message. So replay and resync carry status changes, the transcript shows them,
and every socket derives its `status` frame from the system message
(`status_frame`), right after it (docs/protocol.md, "`status` and system messages").

The step is fenced: a bot turn commits its change with its own messages under
its turn lock (`Conversations.store_turn`); anyone else (the visitor's `end`,
later an agent) commits it only while the conversation is in a status the
change may leave (`Lifecycle.apply`). Closing also forgets the verified
visitor's open conversation in the same step. What follows a change (idle
timers, handing a queued conversation to routing) runs after it is stored.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import frames
from .conversations import AGENT, BOT, CLOSED, QUEUED, Conversation, Conversations
from .timers import IdleTimers

log = logging.getLogger("concierge.lifecycle")

# The events of system messages (docs/protocol.md); each names the status it leads to.
QUEUED_EVENT, ASSIGNED, TRANSFERRED, TO_BOT, CLOSED_EVENT = (
    "queued", "assigned", "transferred", "to_bot", "closed")
OPEN = (BOT, QUEUED, AGENT)  # the statuses a conversation can be closed from

# Why a conversation closed (`closed_reason`, the `status` frame's `reason`), as the log says it.
CLOSED_TEXTS = {
    "visitor": "The visitor ended the conversation.",
    "bot": "The conversation has ended.",
    "agent": "The conversation was closed.",
    "flow_removed": "This conversation was closed: its flow is no longer available.",
}
# Why a conversation went back to the bot.
TO_BOT_TEXTS = {
    "no_agents": "Nobody can join right now; back with the assistant.",
    "left_queue": "You left the queue; back with the assistant.",
    "max_wait": "Nobody could join in time; back with the assistant.",
    "agent": "The assistant takes over again.",
}
QUEUED_TEXT = "Waiting for a person to join."
REQUEUED_TEXT = "{name} is no longer available; you are back at the front of the queue."
ASSIGNED_TEXT = "{name} joined the conversation."
TRANSFERRED_TEXT = "{name} took over the conversation."
TO_QUEUE_TEXT = "You are being passed on; waiting for a person to join."


@dataclass(frozen=True)
class Change:
    """One status change: the record's new fields and the system message that tells of it."""

    status: str
    message: dict[str, Any]  # the system message frame, without its seq
    fields: dict[str, Any] = field(default_factory=dict)  # record fields besides `status`
    client_id: str | None = None  # makes the change idempotent: a repeat stores nothing
    forget_verified: str | None = None  # a verified user_id whose open conversation this was

    def record_fields(self) -> dict[str, Any]:
        return {"status": self.status, **self.fields}


def _system(cid: str, event: str, status: str, text: str, **details: Any) -> dict[str, Any]:
    message = frames.message(cid, "system", text, message_id="s_" + secrets.token_hex(8))
    message.update(event=event, status=status, **details)
    return message


def closing(cid: str, reason: str, visitor: dict[str, Any], client_id: str | None = None
            ) -> Change:
    """Close a conversation (`reason`: visitor, bot, agent, flow_removed)."""
    verified = visitor.get("user_id") if visitor.get("verified") else None
    return Change(CLOSED, _system(cid, CLOSED_EVENT, CLOSED, CLOSED_TEXTS.get(
                      reason, CLOSED_TEXTS["agent"]), reason=reason),
                  {"closed_reason": reason, "closed_at": frames.now_iso(), "idle_at": ""},
                  client_id=client_id, forget_verified=verified)


def queueing(cid: str, escalation: dict[str, Any]) -> Change:
    """Put a conversation in its queue, waiting for a person."""
    return Change(QUEUED, _system(cid, QUEUED_EVENT, QUEUED, QUEUED_TEXT,
                                  queue=escalation["queue"]),
                  {"escalation": escalation, "queued_at": frames.now_iso(), "idle_at": ""})


def assigning(cid: str, agent: dict[str, Any], client_id: str, *, transfer: bool = False,
              escalation: dict[str, Any] | None = None) -> Change:
    """Give a conversation to an agent (`agent`: id, name), or pass it to another one.

    `client_id` names the assignment (the board's), so announcing it twice stores it once.
    """
    event, text = (TRANSFERRED, TRANSFERRED_TEXT) if transfer else (ASSIGNED, ASSIGNED_TEXT)
    fields: dict[str, Any] = {"agent_id": agent["id"], "agent_name": agent["name"],
                              "assigned_at": frames.now_iso()}
    if escalation is not None:
        fields["escalation"] = escalation
    return Change(AGENT, _system(cid, event, AGENT, text.format(name=agent["name"]),
                                 agent={"name": agent["name"]}),
                  fields, client_id=client_id)


def requeueing(cid: str, escalation: dict[str, Any], why: str, agent_name: str = "",
               client_id: str | None = None) -> Change:
    """Put a conversation an agent held back in a queue (`why`: agent_lost, transferred)."""
    text = REQUEUED_TEXT.format(name=agent_name or "The person") if why == "agent_lost" \
        else TO_QUEUE_TEXT
    event = QUEUED_EVENT if why == "agent_lost" else TRANSFERRED
    return Change(QUEUED, _system(cid, event, QUEUED, text, queue=escalation["queue"],
                                  reason=why),
                  {"escalation": escalation, "agent_id": "", "agent_name": "",
                   "queued_at": frames.now_iso()}, client_id=client_id)


def back_to_bot(cid: str, reason: str) -> Change:
    """Hand a conversation back to the bot (`reason`: no_agents, left_queue, max_wait, agent)."""
    return Change(BOT, _system(cid, TO_BOT, BOT, TO_BOT_TEXTS.get(reason, TO_BOT_TEXTS["agent"]),
                               reason=reason), {"agent_id": "", "agent_name": ""})


def status_frame(message: dict[str, Any]) -> dict[str, Any] | None:
    """Return the `status` frame a system message of a status change leads to, else None."""
    status = message.get("status")
    if message.get("from") != "system" or not isinstance(status, str):
        return None
    details = {key: message[key] for key in ("reason", "agent", "queue", "position", "wait_s")
               if key in message and (key != "reason" or status in (CLOSED, QUEUED))}
    return frames.status(message.get("conversation", ""), status, **details)


def current_status(conversation: Conversation) -> dict[str, Any]:
    """Return the `status` frame of a conversation as its record has it now."""
    details: dict[str, Any] = {}
    if conversation.status == CLOSED:
        details["reason"] = conversation.closed_reason
    elif conversation.status == QUEUED and conversation.escalation:
        details["queue"] = conversation.escalation.get("queue")
    elif conversation.status == AGENT and conversation.agent_name:
        details["agent"] = {"name": conversation.agent_name}
    return frames.status(conversation.id, conversation.status, **details)


class Lifecycle:
    """Apply status changes that no bot turn makes, and run what follows any change."""

    def __init__(self, conversations: Conversations, timers: IdleTimers,
                 hand_over: Callable[[str, dict[str, Any]], bool] | None = None) -> None:
        self.conversations = conversations
        self.timers = timers
        # (cid, escalation) -> whether routing took it; False sends the flow to `no_agents`
        self.hand_over = hand_over or (lambda _cid, _escalation: False)
        self.nobody_took: Callable[[str], None] = lambda _cid: None  # set by the wiring
        # (cid, change) -> None: the conversation left the humans (closed, back to the bot);
        # routing frees whoever held it. Set by the wiring.
        self.released: Callable[[str, Change], None] = lambda _cid, _change: None

    def apply(self, cid: str, change: Change, leaving: tuple[str, ...]) -> bool:
        """Store `change` if the conversation's status is one of `leaving`; say if it was stored.

        Raises NotFound. A repeat of an idempotent change (same `client_id`) stores nothing.
        """
        stored = self.conversations.change_status(cid, change, leaving)
        if stored:
            self.after(cid, change)
        return stored

    def after(self, cid: str, change: Change) -> None:
        """Do what follows a stored change: timers, and routing for a queued conversation."""
        if change.status in (QUEUED, CLOSED):
            # The record's deadline is cleared already; this is tidying. (A change to an agent
            # comes from `queued` or another agent: nothing is armed then.)
            self.timers.disarm(cid)
        if change.status in (BOT, CLOSED):
            self.released(cid, change)
        if change.status == QUEUED and not self.hand_over(cid, change.fields["escalation"]):
            self.nobody_took(cid)
