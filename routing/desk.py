"""What an agent does: be there, take, speak, pass on, close, read back; and who may see what.

The agent socket (web/agent.py) parses frames and answers them; every decision
is made here. An agent sees only the conversations it holds (or held, for
`history`) and the waiting ones of its own queues; a lead also sees every
queue and the team, and may transfer any open conversation. Anything else is
`not_found` (the id might as well not exist) or, for a lead-only act, `forbidden`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bots.catalog import Catalog
from chat import frames, lifecycle
from chat.conversations import (
    AGENT,
    CLOSED,
    Appended,
    Closed,
    Conversations,
    Full,
    NotFound,
    NotHeld,
)

from .agents import Accounts, Agent
from .board import Board, NotHolder
from .router import AGENT_TOPIC, Router
from .settings import QueueBook

AVAILABLE, AWAY, OFFLINE = "available", "away", "offline"
TEAM = "team"  # the team view's name among the doorbells a worker's caches follow
HISTORY_PAGE = 100  # messages a `history` frame carries at most (and TRANSCRIPT_BYTES)
# An `assigned` conversation's transcript: its last messages, at most this many and this many
# bytes (always the last one); the older ones come a page at a time by `history`. A welcome
# shares WELCOME_TRANSCRIPTS_BYTES among the conversations it carries. Every frame stays far
# below what a socket may leave unread (2 MiB) before it is cut off: a visitor who wrote a
# near-limit transcript must not make the conversation impossible to hand to anyone.
TRANSCRIPT_MESSAGES = 100
TRANSCRIPT_BYTES = 256 * 1024
WELCOME_TRANSCRIPTS_BYTES = 768 * 1024
WAITING_FRESH_S = 0.2  # a worker reads a queue's waiting list at most this often
TEAM_FRESH_S = 1.0  # and the team view (the leads' `team` frame: at most once a second)


def _fitting(raws: list[str], budget: int) -> int:
    """How many of the last messages fit `budget` bytes (at least the last one, if any)."""
    kept, size = 0, 0
    for raw in reversed(raws):
        size += len(raw.encode())
        if kept and size > budget:
            break
        kept += 1
    return kept


def _iso(ms: Any) -> str | None:
    if not ms:
        return None
    return frames.iso(datetime.fromtimestamp(float(ms) / 1000, UTC))


class DeskError(Exception):
    """An agent's frame cannot be done; `code` is the error frame's (docs/protocol.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _not_found(cid: str) -> DeskError:
    return DeskError(frames.NOT_FOUND, f"no conversation {cid!r} that you may see")


class Desk:
    """The agent's side of conversations; one per worker."""

    def __init__(self, board: Board, router: Router, accounts: Accounts,
                 conversations: Conversations, catalog: Catalog,
                 resume: Callable[[str, str], Any]) -> None:
        self.board = board
        self.router = router
        self.accounts = accounts
        self.conversations = conversations
        self.catalog = catalog
        self.resume = resume  # (cid, state) -> the bot goes on at that state
        # Per worker: each queue's list and the team view, read at most this often, and never
        # reused once a doorbell said they changed (`rung`).
        self._waiting: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._team: tuple[float, dict[str, Any]] | None = None
        self._rung: dict[str, float] = {}  # queue name, or TEAM -> when its doorbell last rang

    @property
    def book(self) -> QueueBook:
        return self.router.book

    @staticmethod
    def topic(agent_id: str) -> str:
        return AGENT_TOPIC.format(agent=agent_id)

    # --- presence ----------------------------------------------------------------------------

    def connect(self, agent: Agent, socket: str, live_s: float) -> str:
        """A socket of the agent is live; return its presence. Assigns if it may take more."""
        presence, _load, _graced = self.board.seat(agent, socket, live_s)
        if presence == AVAILABLE:
            self.router.refill(agent.id)
        return presence

    def heartbeat(self, agent: Agent, socket: str, live_s: float) -> None:
        self.board.seat(agent, socket, live_s)

    def disconnect(self, agent_id: str, socket: str, grace_s: float) -> None:
        self.board.leave(agent_id, socket, grace_s)

    def logged_out(self, agent_id: str, session_id: str) -> None:
        """A console session ended: the agent's sockets of that session close at once (the last
        one closing takes the agent offline)."""
        self.router.ring_agent(agent_id, {"type": "ring", "event": "logout",
                                          "session": session_id})

    def set_presence(self, agent: Agent, presence: str) -> None:
        """Record the agent's choice for all its tabs; an available agent gets what waits."""
        self.board.set_presence(agent.id, presence)
        self.router.ring_agent(agent.id, frames.presence(presence))
        if presence == AVAILABLE:
            self.router.refill(agent.id)

    # --- what an agent sees ------------------------------------------------------------------

    def queues_of(self, agent: Agent) -> list[str]:
        """The queues whose waiting lists the agent sees: its own; a lead's, every one."""
        if agent.role != "lead":
            return list(agent.queues)
        return sorted({*agent.queues, *self.book.named, *self.board.queue_names()})

    def _holds(self, agent: Agent, cid: str) -> bool:
        return self.board.holder(cid) == agent.id

    def _visible(self, agent: Agent, cid: str) -> None:
        """Raise not_found unless the agent holds, held or (a lead) may see the conversation."""
        if self._holds(agent, cid) or self.board.had(agent.id, cid):
            return
        if agent.role == "lead":
            return
        # waiting (an entry nobody holds: it stays while a conversation is held), or missed
        entry = (self.board.entry(cid) if self.board.holder(cid) is None else None) or \
            self.board.missed_info(cid)
        if entry is not None and entry.get("queue") in agent.queues:
            return
        if not self._past_of_held(agent, cid):
            raise _not_found(cid)

    def _past_of_held(self, agent: Agent, cid: str) -> bool:
        """Tell whether `cid` is a past conversation of a verified visitor the agent now has."""
        for held in self.conversations.get_many(self.board.held(agent.id)):
            visitor = held.visitor if held is not None else {}
            if visitor.get("verified") and visitor.get("user_id") and \
                    cid in self.conversations.past_of(visitor["user_id"]):
                return True
        return False

    def held(self, agent: Agent) -> list[str]:
        return self.board.held(agent.id)

    def assigned_view(self, cid: str, budget: int = TRANSCRIPT_BYTES) -> tuple[dict[str, Any],
                                                                               int]:
        """The `assigned` frame's conversation object, and the last seq its transcript holds.

        The transcript is the last messages that fit `budget` bytes (at most
        TRANSCRIPT_MESSAGES, and always the last one); `earlier` says whether older ones exist.
        """
        conversation = self.conversations.get(cid)
        raws = self.conversations.messages(cid, max(0, conversation.seq - TRANSCRIPT_MESSAGES))
        transcript = [json.loads(raw) for raw in raws[len(raws) - _fitting(raws, budget):]]
        bot = conversation.bot or {}
        escalation = dict(conversation.escalation or {})
        view = {"id": cid, "status": conversation.status, "visitor": conversation.visitor,
                "vars": bot.get("vars", {}), "flow": conversation.flow,
                "state": bot.get("state"), "transcript": transcript,
                "earlier": bool(transcript) and int(transcript[0]["seq"]) > 1,
                "escalation": {"queue": escalation.get("queue"),
                               "reason": escalation.get("reason", "flow"),
                               "path": escalation.get("path", []),
                               **({"note": escalation["note"]} if escalation.get("note")
                                  else {})},
                "agent": {"id": conversation.agent_id, "name": conversation.agent_name},
                "past": self._past(conversation)}
        return view, transcript[-1]["seq"] if transcript else 0

    def _past(self, conversation: Any) -> list[dict[str, Any]]:
        """The same verified visitor's other conversations, newest first (a visitor's own word
        for who they are links nothing: only a signed identity does)."""
        visitor = conversation.visitor
        if not visitor.get("verified") or not visitor.get("user_id"):
            return []
        others = [cid for cid in self.conversations.past_of(visitor["user_id"])
                  if cid != conversation.id]
        return [{"id": other.id, "created": other.created, "status": other.status,
                 "closed_reason": other.closed_reason, "agent": other.agent_name or None}
                for other in self.conversations.get_many(others) if other is not None]

    def rung(self, topic: str) -> None:
        """A queue's list (or, with TEAM, the team) changed: what this worker read is stale."""
        self._rung[topic] = time.monotonic()

    def _fresh(self, topic: str, made: float, now: float, for_s: float) -> bool:
        return now - made <= for_s and made > self._rung.get(topic, 0.0)

    def waiting_for(self, agent: Agent) -> list[dict[str, Any]]:
        """The `queue` frame's list: what waits in the agent's queues, in service order."""
        now = time.monotonic()
        stale = [q for q in self.queues_of(agent) if q not in self._waiting or
                 not self._fresh(q, self._waiting[q][0], now, WAITING_FRESH_S)]
        if stale:
            now_ms = time.time() * 1000
            for queue, listed in self.board.waiting(stale).items():
                self._waiting[queue] = (now, [{
                    "conversation": cid, "queue": queue,
                    "priority": entry.get("priority", 0),
                    "waited_s": max(0, round((now_ms - float(entry.get("queued_ms") or now_ms))
                                             / 1000)),
                    "visitor": entry.get("visitor", {}), "preview": entry.get("preview", ""),
                    "reason": entry.get("reason", "flow"),
                    "manual": self.book.get(queue).strategy == "manual"}
                    for cid, _score, entry in listed])
        items = [item for q in self.queues_of(agent) for item in self._waiting[q][1]]
        return sorted(items, key=lambda item: (-item["priority"], -item["waited_s"]))

    def team(self, fresh: bool = False) -> dict[str, Any]:
        """The leads' `team` frame: every agent's presence and load, every queue's line
        (`fresh`: read now, as for a lead who asks, never what this worker read lately)."""
        now = time.monotonic()
        if not fresh and self._team is not None and \
                self._fresh(TEAM, self._team[0], now, TEAM_FRESH_S):
            return self._team[1]
        agents = [{"id": seat.agent, "name": seat.name,
                   "presence": (seat.presence if seat.online else OFFLINE),
                   "open": seat.load, "max_chats": seat.max_chats}
                  for seat in self.board.seats()]
        queues = sorted({*self.book.named, *self.board.queue_names()})
        now_ms = time.time() * 1000
        lines = [{"name": queue, "waiting": size,
                  "longest_wait_s": round((now_ms - oldest) / 1000) if oldest else 0,
                  "open": self.router.is_open(queue)}
                 for queue, (size, oldest) in self.board.counts(queues).items()]
        frame = frames.team(agents, lines)
        self._team = (now, frame)
        return frame

    def missed(self, agent: Agent) -> list[dict[str, Any]]:
        """The `missed` frame's list: conversations of the agent's queues that never reached a
        person, newest first, with the visitor and what the flow collected."""
        listed = self.board.missed(self.queues_of(agent))
        records = self.conversations.get_many([cid for cid, _info in listed])
        items = []
        for (cid, info), record in zip(listed, records, strict=True):
            if record is None:
                continue  # expired
            items.append({"conversation": cid, "queue": info.get("queue"),
                          "why": info.get("why"), "reason": info.get("reason", "flow"),
                          "at": _iso(info.get("at_ms")), "seq": record.seq,
                          "visitor": record.visitor, "vars": (record.bot or {}).get("vars", {}),
                          "preview": info.get("preview", ""), "status": record.status,
                          "followed_up": info.get("followed")})
        return items

    def follow_up(self, agent: Agent, cid: str) -> None:
        """Mark a missed conversation of one's queues as followed up."""
        info = self.board.missed_info(cid)
        if info is None or info.get("queue") not in self.queues_of(agent):
            raise _not_found(cid)
        self.board.follow_up(cid, {"id": agent.id, "name": agent.name, "at": frames.now_iso()})

    def colleagues(self, agent: Agent) -> list[dict[str, Any]]:
        """Who the agent may transfer to now: other agents online, available, with room."""
        return [{"id": seat.agent, "name": seat.name, "queues": seat.queues}
                for seat in self.board.seats()
                if seat.agent != agent.id and seat.online and seat.presence == AVAILABLE
                and seat.load < seat.max_chats]

    def require_lead(self, agent: Agent, what: str) -> None:
        if agent.role != "lead":
            raise DeskError(frames.FORBIDDEN, f"only a lead may {what}")

    def history(self, agent: Agent, cid: str, before_seq: int) -> list[dict[str, Any]]:
        """Up to HISTORY_PAGE messages before `before_seq` (past the end: the last ones)."""
        self._visible(agent, cid)
        before_seq = min(before_seq, self.conversations.get(cid).seq + 1)
        first = max(0, before_seq - 1 - HISTORY_PAGE)
        raws = self.conversations.messages(cid, first, max(0, before_seq - 1))
        return [json.loads(raw) for raw in raws[len(raws) - _fitting(raws, TRANSCRIPT_BYTES):]]

    # --- what an agent does ------------------------------------------------------------------

    def accept(self, agent: Agent, cid: str) -> None:
        """Take a waiting conversation of one's own queues (a lead: any); the first wins."""
        if self._holds(agent, cid):
            return  # a repeat: it is ours already
        entry = self.board.entry(cid)
        if entry is None or (entry.get("queue") not in agent.queues and agent.role != "lead"):
            raise _not_found(cid)
        outcome, assignment = self.board.accept(cid, agent.id, any_queue=agent.role == "lead")
        if assignment is not None:
            self.router.announce(assignment)
            return
        if outcome == -1:
            raise DeskError(frames.CONFLICT, "Someone else took this conversation first.")
        if outcome == -2:
            raise DeskError(frames.CONFLICT, "This conversation is not waiting any more.")
        seat = self.board.seat_of(agent.id)
        if seat is not None and seat.presence != AVAILABLE:
            raise DeskError(frames.CONFLICT, "You are away: set yourself available to take "
                                             "conversations.")
        if entry.get("queue") not in agent.queues:
            raise DeskError(frames.FORBIDDEN, "That conversation waits in a queue you do not "
                                               "serve.")
        limit = "1 conversation" if agent.max_chats == 1 else f"{agent.max_chats} conversations"
        raise DeskError(frames.CONFLICT, f"You already have {limit} open, as many as you may "
                                         "hold at once; close one first.")

    def say(self, agent: Agent, cid: str, text: str, message_id: str) -> Appended:
        """Store the agent's message. Only the holder may speak."""
        frame = frames.message(cid, "agent", text, message_id=message_id, name=agent.name)
        try:
            return self.conversations.append_agent(cid, frame, f"a:{message_id}", agent.id)
        except (NotHeld, NotFound) as exc:
            raise _not_found(cid) from exc
        except Closed as exc:
            raise DeskError(frames.CONFLICT, "this conversation is closed") from exc
        except Full as exc:
            raise DeskError(frames.TOO_LONG, "this conversation holds as many messages as it "
                                             "may") from exc

    def typing(self, agent: Agent, cid: str, active: bool) -> None:
        if not self._holds(agent, cid):
            raise _not_found(cid)
        self.conversations.publish(cid, frames.typing(cid, "agent", active))

    def _may_pass_on(self, agent: Agent, cid: str) -> str:
        """Return '' (a lead: any holder) or the agent's id; raise unless it may pass it on."""
        if self._holds(agent, cid):
            return agent.id
        if agent.role == "lead" and self.board.holder(cid):
            return ""
        raise _not_found(cid)

    def transfer(self, agent: Agent, cid: str, to: dict[str, str], note: str | None) -> None:
        """Pass a conversation to an available agent, an open queue, or the bot at a state."""
        by = self._may_pass_on(agent, cid)
        note = (note or "").strip() or None  # its length is checked by the socket's parser
        conversation = self.conversations.get(cid)
        escalation = {**(conversation.escalation or {}), "reason": "transfer",
                      "from": agent.name, "note": note, "front": False}
        if "bot" in to:
            self._to_bot(cid, by, conversation.flow, to["bot"])
            return
        if "queue" in to:
            escalation["queue"] = to["queue"]
        # The record says why first: the board rings the new agent in the same step that moves
        # the conversation, and the `assigned` that agent's socket builds reads the record.
        self.conversations.update(cid, escalation=escalation)
        try:
            if "agent" in to:
                self._to_agent(cid, by, to["agent"], escalation)
            else:
                self._to_queue(cid, by, to["queue"], escalation)
        except DeskError:
            self.conversations.update(cid, escalation=conversation.escalation)  # it stays
            raise

    def _to_agent(self, cid: str, by: str, target: str, escalation: dict[str, Any]) -> None:
        # An unknown id has no seat on the board, so it gets the same answer as an agent who is
        # away: which ids exist is not told to whoever probes.
        outcome, former, assignment = self.board.transfer_to_agent(cid, by, target)
        if outcome == -3:
            raise DeskError(frames.CONFLICT, f"{target} is not available or has no free slot; "
                                             "choose another agent or a queue")
        if outcome == -4:
            raise DeskError(frames.CONFLICT, f"{target} holds this conversation already")
        if assignment is None or former is None:
            raise _not_found(cid)
        self.router.announce(assignment, transfer=True, escalation=escalation)
        self.router.refill(former)

    def _to_queue(self, cid: str, by: str, queue: str, escalation: dict[str, Any]) -> None:
        if not self.router.is_open(queue):
            raise DeskError(frames.CONFLICT, f"queue {queue!r} is closed now (its opening "
                                             "hours); choose another")
        settings = self.book.get(queue)
        entry = self.router.entry_for(cid, escalation)
        outcome, former, _position, made = self.board.transfer_to_queue(
            cid, by, queue, settings.strategy, entry, settings.max_wait_s)
        if outcome == -3:
            raise DeskError(frames.CONFLICT, f"nobody of queue {queue!r} is available; choose "
                                             "another queue or an agent")
        if outcome != 1 or former is None:
            raise _not_found(cid)
        self.router.lifecycle.apply(cid, lifecycle.requeueing(cid, escalation, "transferred"),
                                    leaving=(AGENT,))
        self.router.announce_all(made)
        self.router.refill(former)

    def _to_bot(self, cid: str, by: str, flow_id: str, state: str) -> None:
        flow = self.catalog.get(flow_id)
        if flow is None or state not in flow.states:
            raise DeskError(frames.NOT_FOUND, f"flow {flow_id!r} has no state {state!r}")
        try:  # the former holder is told, and refilled
            self.router.release(cid, "transferred", held_by=by)
        except NotHolder as exc:
            raise _not_found(cid) from exc
        self.resume(cid, state)

    def close(self, agent: Agent, cid: str, tags: list[str] | None) -> None:
        """End a conversation the agent holds (a lead: any held one); the visitor is told."""
        by = self._may_pass_on(agent, cid)
        conversation = self.conversations.get(cid)
        if conversation.status == CLOSED:
            return
        try:  # first off the board, only while it is ours (another tab may have passed it on)
            self.router.release(cid, "closed", held_by=by)
        except NotHolder as exc:
            raise _not_found(cid) from exc
        change = lifecycle.closing(cid, "agent", conversation.visitor)
        if tags:  # checked by the socket's parser (web/incoming.py)
            change.fields["tags"] = [tag.strip() for tag in tags]
        self.router.lifecycle.apply(cid, change, leaving=(AGENT,) if conversation.status ==
                                    AGENT else lifecycle.OPEN)
