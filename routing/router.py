"""Where an escalated conversation goes, and every chance to assign one.

The bot asks `anybody_there` while it decides a turn (a read: an agent of the
queue is available, busy or not, and the queue is open); once the turn's store
has put the conversation in its queue, the lifecycle calls `hand_over`, which
adds it to the board and assigns what can be assigned in the same step
(routing/board.py). Assignment happens at every chance, never by polling
alone: an escalation, an agent turning available, a freed slot (close,
transfer, back to the bot), a reconnect, a conversation back from an agent
whose grace ran out.

An assignment made on the board is then announced: the conversation's record
becomes `agent` (a system message the visitor sees, stored once however often
it is announced) and the agent's sockets are rung. A worker that dies between
the two leaves it in the board's `unannounced` set, which the sweeps
(routing/sweeps.py) announce again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from chat import frames, lifecycle
from chat.conversations import AGENT, QUEUED, VISITOR_MARK, Conversations, NotFound

from .board import Assignment, Board, now_ms
from .settings import LONGEST_IDLE, MANUAL, QueueBook

log = logging.getLogger("concierge.routing")

AGENT_TOPIC = "agent:{agent}"  # rings an agent's sockets: assigned, unassigned, presence
QUEUE_TOPIC = "queue:{queue}"  # rings when a queue's waiting list changes
TEAM_TOPIC = "team"  # rings when any agent's presence or load, or any queue, changes
PREVIEW_CHARS = 140  # of the visitor's last message, in the waiting list
PREVIEW_FROM = 20  # messages looked back at for it
# Why a conversation never reached a person, as "Missed" lists it: nobody of the queue was there,
# the queue was closed, the visitor left the queue or ended the conversation while waiting, or it
# waited longer than max_wait.
MISSED_REASONS = ("no_agents", "closed_hours", "left_queue", "ended_waiting", "max_wait")


def _preview(recent: list[str]) -> str:
    """The visitor's last words before the escalation."""
    for raw in reversed(recent):
        if VISITOR_MARK in raw:
            return json.loads(raw).get("text", "")[:PREVIEW_CHARS]
    return ""


class Router:
    """Route escalated conversations to agents; one per worker."""

    def __init__(self, board: Board, book: QueueBook, conversations: Conversations,
                 lifecycle_: lifecycle.Lifecycle,
                 clock: Callable[[], float] = time.time) -> None:
        self.board = board
        self.book = book
        self.conversations = conversations
        self.lifecycle = lifecycle_
        self.clock = clock  # tests fix it to try opening hours
        # set by the wiring: (cid, why) -> None, the flow goes on at no_agents
        self.no_agents: Callable[[str, str], None] = lambda _cid, _why: None

    # --- the bot's seam ----------------------------------------------------------------------

    def is_open(self, queue: str) -> bool:
        return self.book.get(queue).open_at(datetime.fromtimestamp(self.clock(), UTC))

    def anybody_there(self, escalation: dict[str, Any]) -> bool:
        """Tell whether a person could take a conversation escalated to this queue now."""
        queue = escalation["queue"]
        return self.is_open(queue) and self.board.anybody_present(queue)

    def hand_over(self, cid: str, escalation: dict[str, Any]) -> bool:
        """Queue a conversation the bot escalated, assigning it at once if someone is free.

        Idempotent. False when nobody of the queue is there (or it closed meanwhile): the
        flow goes on at no_agents.
        """
        queue = escalation["queue"]
        if not self.is_open(queue):
            return False
        settings = self.book.get(queue)
        front = bool(escalation.get("front"))  # back from an agent whose grace ran out
        outcome, _position, made = self.board.enqueue(
            cid, queue, settings.strategy, self.entry_for(cid, escalation), settings.max_wait_s,
            only_if_present=not front)
        if outcome == 0:
            return False
        self.announce_all(made)  # a position, if it waits, was told by the same step
        return True

    def entry_for(self, cid: str, escalation: dict[str, Any]) -> dict[str, Any]:
        """What the waiting list shows of a conversation, and how to queue it again."""
        conversation, recent = self.conversations.get_with_recent(cid, PREVIEW_FROM)
        visitor = conversation.visitor
        return {"queue": escalation["queue"], "priority": int(escalation.get("priority") or 0),
                "queued_ms": now_ms(), "reason": escalation.get("reason", "flow"),
                "front": bool(escalation.get("front")),
                "max_wait_ms": self.book.get(escalation["queue"]).max_wait_s * 1000,
                "visitor": {key: visitor[key] for key in ("name", "email", "verified")
                            if key in visitor},
                "preview": _preview(recent)}

    def released(self, cid: str, change: lifecycle.Change) -> None:
        """The conversation left the humans (closed, back to the bot): free its holder, who is
        told and given what waits for it, in one step.

        One that never reached a person is listed as missed: it went back to the bot because
        nobody took it (`no_agents`, `max_wait`, `left_queue`), or its visitor ended it waiting.
        """
        former, waited, entry = self.release(
            cid, "closed" if change.status == "closed" else "transferred")
        if former is not None:
            return
        why = change.message.get("reason")
        if change.status == "closed" and waited:
            why = "ended_waiting"
        if why not in MISSED_REASONS:
            return
        if entry is None:  # routing found nobody at the hand-over: nothing was on the board
            escalation = self.conversations.get(cid).escalation
            if not escalation or not escalation.get("queue"):
                return
            entry = self.entry_for(cid, escalation)
        self.miss(cid, entry["queue"], why, entry)

    def release(self, cid: str, why: str, held_by: str = ""
                ) -> tuple[str | None, bool, dict[str, Any] | None]:
        """Take a conversation out of routing; its holder is told `why` and given what waits.

        Returns (the former holder, whether it waited, its entry). With `held_by`, only while
        that agent holds it (raises NotHolder).
        """
        former, waited, entry, made = self.board.release(cid, why, LONGEST_IDLE,
                                                         self.named_strategies(), held_by)
        self.announce_all(made)
        return former, waited, entry

    def miss(self, cid: str, queue: str, why: str, entry: dict[str, Any] | None = None) -> None:
        """List a conversation that never reached a person in its queue's "Missed"."""
        entry = entry or self.entry_for(cid, {"queue": queue})
        self.board.miss(cid, queue, {"queue": queue, "why": why, "at_ms": now_ms(),
                                     "visitor": entry.get("visitor", {}),
                                     "preview": entry.get("preview", ""),
                                     "reason": entry.get("reason", "flow")})

    def not_taken(self, cid: str, escalation: dict[str, Any]) -> None:
        """The bot found nobody at escalation time: the flow went on at no_agents."""
        queue = escalation["queue"]
        self.miss(cid, queue, "no_agents" if self.is_open(queue) else "closed_hours",
                  self.entry_for(cid, escalation))

    def leave_queue(self, cid: str) -> bool:
        """The visitor stops waiting; False if a person took it meanwhile (or it never waited)."""
        return self.board.leave_queue(cid)

    # --- assignment --------------------------------------------------------------------------

    def strategies(self, queues: list[str]) -> list[tuple[str, str]]:
        return [(queue, self.book.get(queue).strategy) for queue in queues
                if self.book.get(queue).strategy != MANUAL]

    def named_strategies(self) -> list[tuple[str, str]]:
        return [(name, queue.strategy) for name, queue in self.book.named.items()]

    def refill(self, agent: str) -> None:
        """Give an agent that may take more what waits in its queues."""
        seat = self.board.seat_of(agent)
        if seat is None or not seat.online or seat.presence != "available" or \
                seat.load >= seat.max_chats:
            return
        self.announce_all(self.board.match(self.strategies(seat.queues)))

    def announce_all(self, made: list[Assignment]) -> None:
        for assignment in made:
            try:
                self.announce(assignment)
            except Exception:  # noqa: BLE001 - the sweeps announce it again
                log.exception("announcing %s to %s failed; the sweeps try again",
                              assignment.cid, assignment.agent)

    def announce_again(self, cid: str) -> None:
        """Announce an assignment a worker made but did not announce (it died, say)."""
        agent, at_ms = self.board.holder(cid), self.board.assigned_ms(cid)
        if agent is None or at_ms is None:
            return
        seat = self.board.seat_of(agent)
        self.announce(Assignment(cid, agent, seat.name if seat else agent, at_ms))

    def announce(self, assignment: Assignment, transfer: bool = False,
                 escalation: dict[str, Any] | None = None) -> None:
        """Make the record say what the board did (the visitor is told), then ring the agent."""
        cid = assignment.cid
        change = lifecycle.assigning(cid, {"id": assignment.agent, "name": assignment.name},
                                     f"s:assigned:{assignment.at_ms}:{assignment.agent}",
                                     transfer=transfer, escalation=escalation)
        try:
            stored = self.lifecycle.apply(cid, change, leaving=(QUEUED, AGENT))
        except NotFound:
            stored = False
        if not stored and self.conversations_status(cid) not in (QUEUED, AGENT):
            # It closed, or went back to the bot, under the assignment: undo it.
            self.released(cid, lifecycle.closing(cid, "visitor", {}))
            return
        self.board.announced(assignment)

    def conversations_status(self, cid: str) -> str | None:
        try:
            return self.conversations.status(cid)
        except NotFound:
            return None

    def ring_agent(self, agent: str, frame: dict[str, Any]) -> None:
        self.board.publish(AGENT_TOPIC.format(agent=agent), frames.dump(frame))

    # --- queue positions ---------------------------------------------------------------------

    def queue_status(self, cid: str, queue: str) -> dict[str, Any]:
        """The `status` details of a waiting conversation: queue, position, wait_s."""
        position, wait_s = self.board.place(cid, queue)
        details: dict[str, Any] = {"queue": queue}
        if position is not None:
            details.update(position=position, wait_s=wait_s)
        return details

    def tell_positions(self, queue: str) -> int:
        """Tell every conversation waiting in `queue` its position and wait; return how many."""
        return self.board.tell_positions(queue)
