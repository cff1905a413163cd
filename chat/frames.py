"""Every WebSocket frame the server sends (docs/protocol.md) is built here.

What clients send is parsed and validated in web/incoming.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# error codes of docs/protocol.md
BAD_FRAME, UNKNOWN_TYPE, TOO_LONG, RATE_LIMITED = "bad_frame", "unknown_type", "too_long", \
    "rate_limited"
NOT_FOUND, FORBIDDEN, CONFLICT, UNAVAILABLE = "not_found", "forbidden", "conflict", "unavailable"

# close codes the server uses (docs/protocol.md)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # the server is shutting down: reconnect
CLOSE_POLICY = 1008  # refused origin or failed auth
CLOSE_TOO_BIG = 1009
CLOSE_ERROR = 1011  # an unexpected server error: reconnect
CLOSE_TRY_LATER = 1013  # overloaded, Redis unreachable, or a per-address limit reached


_second = (-1, "")  # the last whole second stamped, and its text (up to the seconds)


def now_iso() -> str:
    """Return the time as docs/protocol.md writes it: ISO 8601 UTC with milliseconds.

    The text up to the seconds is made once a second: every message is stamped, and making
    it with datetime was ~2 % of a bot turn's CPU."""
    global _second
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"


def iso(when: datetime) -> str:
    """Write a time as docs/protocol.md does."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dump(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


# --- server -> client ----------------------------------------------------------------------


def error(code: str, message: str, **about: Any) -> dict[str, Any]:
    """Build an `error`; on the agent socket `about` says what it answers (`request`, the
    frame's type, and its `conversation`)."""
    return {"type": "error", "code": code, "message": message, **about}


def welcome(token: str, conversation: str, status: str) -> dict[str, Any]:
    return {"type": "welcome", "token": token, "conversation": conversation, "status": status}


def ack(message_id: str, seq: int, conversation: str | None = None) -> dict[str, Any]:
    """Build an `ack`; an agent's names its conversation (an agent socket carries many)."""
    frame: dict[str, Any] = {"type": "ack", "id": message_id, "seq": seq}
    if conversation is not None:
        frame["conversation"] = conversation
    return frame


def status(conversation: str, value: str, **details: Any) -> dict[str, Any]:
    """Build a `status` frame: bot, queued (position, wait_s), agent (agent), closed (reason)."""
    return {"type": "status", "conversation": conversation, "status": value, **details}


def typing(conversation: str, sender: str, active: bool) -> dict[str, Any]:
    return {"type": "typing", "conversation": conversation, "from": sender, "active": active}


def pong() -> dict[str, Any]:
    return {"type": "pong"}


def message(conversation: str, sender: str, text: str, *, message_id: str, name: str | None = None,
            buttons: list[dict[str, str]] | None = None, payload: str | None = None,
            ts: str | None = None) -> dict[str, Any]:
    """Build a `message` frame without its `seq` (the store gives it one)."""
    frame: dict[str, Any] = {"type": "message", "conversation": conversation, "id": message_id,
                             "from": sender, "text": text, "ts": ts or now_iso()}
    if name:
        frame["name"] = name
    if buttons:
        frame["buttons"] = buttons
    if payload is not None:
        frame["payload"] = payload
    return frame


# --- server -> agent -----------------------------------------------------------------------
# `message`, `typing`, `status`, `ack`, `error` and `pong` are the same frames as the visitor's.


def agent_welcome(agent: dict[str, Any], presence: str, conversations: list[dict[str, Any]],
                  queue: list[dict[str, Any]]) -> dict[str, Any]:
    """Build the agent's `welcome`: who it is, its presence, its conversations, what waits."""
    return {"type": "welcome", "agent": agent, "presence": presence,
            "conversations": conversations, "queue": queue}


def presence(status: str) -> dict[str, Any]:
    """An agent's presence, as chosen (available | away): every tab of the agent shows it."""
    return {"type": "presence", "status": status}


def queue(waiting: list[dict[str, Any]]) -> dict[str, Any]:
    """Build `queue`: the conversations this agent may take (conversation, queue, priority,
    waited_s, visitor, preview), sent whenever that list changes."""
    return {"type": "queue", "waiting": waiting}


def history(conversation: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Build `history`: stored messages before the `before_seq` asked for, oldest first."""
    return {"type": "history", "conversation": conversation, "messages": messages}


def assigned(conversation: dict[str, Any]) -> dict[str, Any]:
    """Build `assigned`; here `conversation` is an object (id, visitor, vars, flow, state,
    transcript, escalation), not an id."""
    return {"type": "assigned", "conversation": conversation}


def unassigned(conversation: str, reason: str) -> dict[str, Any]:
    """Build `unassigned`: reason transferred, closed, timeout or agent_lost."""
    return {"type": "unassigned", "conversation": conversation, "reason": reason}


def team(agents: list[dict[str, Any]], queues: list[dict[str, Any]]) -> dict[str, Any]:
    """Build a lead's `team`: agents {id, name, presence, open, max_chats}, queues {name,
    waiting, longest_wait_s}."""
    return {"type": "team", "agents": agents, "queues": queues}
