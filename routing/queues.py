"""Where an escalated conversation goes: the seam that presence, queues and assignment fill.

Until human agents exist nobody is ever there, so every escalation goes on at
its flow's `no_agents` state, exactly as the routing rules say (docs/protocol.md).
The bot asks `anybody_there` while it decides a turn (a read, never a write:
nothing is queued before the turn's fenced store); once the store has put the
conversation in its queue, the lifecycle calls `hand_over`, which must be
idempotent (a retried hand-over of the same conversation assigns it once).
"""

from __future__ import annotations

from typing import Any


class Queues:
    """Answer the bot and the lifecycle about a queue; one per worker."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def anybody_there(self, escalation: dict[str, Any]) -> bool:
        """Tell whether a person could take a conversation escalated to this queue now."""
        return False  # no agents yet: the flow goes on at no_agents

    def hand_over(self, cid: str, escalation: dict[str, Any]) -> bool:
        """Offer a queued conversation to its queue's agents; False if nobody can take it."""
        return False
