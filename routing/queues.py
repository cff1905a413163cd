"""Where an escalation goes: the seam that queues and agent routing plug into.

Until human agents exist, nobody is ever available, so every escalation goes
on at its flow's `no_agents` state, exactly as PROTOCOL.md's routing rules say.
The conversation's record already carries what routing will need: its status
and the escalation (queue, priority, reason, the bot's path).
"""

from __future__ import annotations

from typing import Any

QUEUED, ASSIGNED, NO_AGENTS = "queued", "assigned", "no_agents"


def escalate(redis: Any, cid: str, escalation: dict[str, Any]) -> str:
    """Try to hand a conversation to a person of its queue; say what happened."""
    return NO_AGENTS
