"""What a visitor does to a conversation: begin or resume it, speak, end, rate, leave the queue.

The visitor socket (web/visitor.py) parses frames and answers them; every
decision about the conversation is made here: which conversation a hello
continues (the shared-browser rule for verified visitors), whether the bot
answers a message (the append that stores it also begins the bot's turn when
the conversation is with the bot), and what ending or leaving the queue does.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import redis as redis_lib

from . import frames, lifecycle
from .conversations import (
    BOT,
    CLOSED,
    QUEUED,
    TURN_LOCK_TTL_MS,
    VISITOR_ID,
    Appended,
    Conversation,
    Conversations,
    NotFound,
)
from .turns import Bot, Reason

log = logging.getLogger("concierge.visitors")

# After a lost reply to a message's store: past the turn lock it may have taken (5 s), so the
# turn finds the lock free, or its holder's answer stored.
LOST_REPLY_LOOK_S = TURN_LOCK_TTL_MS / 1000 + 0.5
END_ID = "s:end"  # the client id of the visitor's `end`: of two tabs ending at once, one closes it


class NotClosed(Exception):
    """A rating came before the conversation closed."""


class NotQueued(Exception):
    """The visitor is not waiting for a person."""


@dataclass
class Started:
    cid: str
    flow: str  # the flow it talks to
    unknown_flow: bool  # the flow asked for does not exist: the default one took its place
    status: str  # the conversation's status once greeted (BOT unless the greeting moved it on)
    greeting: list[str]  # the messages its first turn stored, as stored (JSON), seq 1 on


class Visitors:
    """The visitor's side of conversations; one per worker."""

    def __init__(self, conversations: Conversations, lifecycle_: lifecycle.Lifecycle, bot: Bot,
                 default_flow: str, unqueue: Callable[[str], bool] = lambda _cid: True,
                 queue_details: Callable[[str, str], dict[str, Any]] = lambda _c, _q: {}
                 ) -> None:
        self.conversations = conversations
        self.unqueue = unqueue  # cid -> whether it still waited (routing takes it out)
        self.queue_details = queue_details  # (cid, queue) -> position and wait_s, from routing
        self.lifecycle = lifecycle_
        self.bot = bot
        self.default_flow = default_flow

    # --- hello ---------------------------------------------------------------------------

    def find(self, visitor: dict[str, Any], token_cid: str | None) -> tuple[str | None, bool]:
        """Find the conversation a hello continues: (its id or None, whether a named one is gone).

        A verified visitor resumes its open conversation from any device; a token resumes its
        conversation, but never another verified person's (a shared browser). The stored visitor
        is updated from the hello (page, locale; a verified identity is kept over an anonymous one).
        """
        indexed = None
        if visitor.get("verified"):
            indexed = self.conversations.verified_conversation(visitor["user_id"])
        cid = indexed or token_cid
        if cid is None:
            return None, False
        try:
            conversation = self.conversations.get(cid)
        except NotFound:
            return None, True
        if cid == indexed and conversation.status == CLOSED:
            # The index names a verified visitor's open conversation, and may still name one
            # that closed a moment ago (its close forgets it in a step of its own, just after
            # storing; on a cluster in another slot): not one to resume from the index. Forget
            # it, and go on as if it had been forgotten.
            self.conversations.forget_visitor(cid, visitor["user_id"])
            if token_cid is None:
                return None, False
            if token_cid != cid:  # (its own token resumes it, closed, as any token does)
                cid = token_cid
                try:
                    conversation = self.conversations.get(cid)
                except NotFound:
                    return None, True
        known = conversation.visitor
        if known.get("verified") and visitor.get("verified") and \
                known.get("user_id") != visitor.get("user_id"):
            return None, False  # another signed-in person on a shared browser: never theirs
        if not visitor.get("verified") and known.get("verified"):
            visitor = {**known, **{k: v for k, v in visitor.items() if k not in
                                   ("verified", "user_id", "name", "email")}}
        self.conversations.update(cid, visitor={**known, **visitor})
        return cid, False

    def start(self, wanted_flow: str | None, visitor: dict[str, Any]) -> Started:
        """Start a conversation with the bot, which greets the visitor before this returns."""
        wanted = wanted_flow or self.default_flow
        flow = self.bot.flow(wanted)
        unknown = flow is None
        if flow is None:
            flow = self.bot.flow(self.default_flow) or next(iter(self.bot.catalog.flows.values()))
        began = self.conversations.create_and_begin(flow.id, visitor, secrets.token_hex(8))
        began.stored = []
        self.bot.act(began.conversation.id, Reason.START, began=began)
        # the turn keeps the status it stored (a greeting that escalates or ends moves it on)
        return Started(began.conversation.id, flow.id, unknown, began.conversation.status,
                       began.stored)

    def started_status(self, started: Started) -> dict[str, Any] | None:
        """The `status` frame of a conversation just started, when no read of it is needed."""
        return frames.status(started.cid, BOT) if started.status == BOT else None

    def status(self, cid: str) -> dict[str, Any]:
        """The `status` frame of the conversation now: a waiting one with its place in line."""
        frame = lifecycle.current_status(self.conversations.get(cid))
        if frame["status"] == QUEUED and frame.get("queue"):
            frame.update(self.queue_details(cid, frame["queue"]))
        return frame

    def resumed(self, conversation: Conversation) -> None:
        """After a resume (`conversation` as the hello read it): answer a message a turn cut
        short (a worker died, Redis went away); with none, the next message may be answered
        at once from what the record said (chat/at_once.py)."""
        if conversation.status != BOT:
            return
        if self.conversations.unanswered(conversation.id):
            gevent.spawn(self._act, conversation.id, Reason.MESSAGE)
        else:
            self.bot.remember(conversation)

    # --- frames after hello --------------------------------------------------------------

    def say(self, cid: str, text: str, message_id: str, name: str | None = None,
            payload: str | None = None) -> Appended:
        """Store what the visitor said. The bot answers if it has them.

        Raises Closed (the conversation is closed) and Full (it holds all it may); a repeated
        id is not stored again, and its first seq comes back. A plain answer may be stored
        with the message (chat/at_once.py): then it is the result's `answered`, for the
        sender's socket to send with the ack.
        """
        token = secrets.token_hex(8)
        frame = frames.message(cid, "visitor", text, message_id=message_id, name=name,
                               payload=payload)
        client_id = VISITOR_ID.format(message_id)
        answer = self.bot.answer_at_once(cid, text, payload)
        try:
            if answer is None:
                appended = self.conversations.append_and_begin(cid, frame, client_id, token)
            else:  # one round trip, if what the answer was computed from still holds
                appended = self.conversations.say_and_answer(
                    cid, frame, client_id, token, answer.known, answer.messages, answer.fields,
                    also=() if answer.deadline is None else
                    (self.bot.timers.arm_command(cid, answer.deadline),))
        except (redis_lib.ConnectionError, redis_lib.TimeoutError):
            # Redis may have stored it and begun its turn, and the reply was lost: look again
            # once that turn's lock can have run out, whether or not the visitor sends it again.
            self.bot.known.forget(cid)
            self.bot.look_again(cid, LOST_REPLY_LOOK_S)
            raise
        if not appended.new and appended.status == BOT:
            # A message sent again: its first store may have lost its reply, and the turn it
            # began with it; answering again answers only what the bot has not seen.
            gevent.spawn(self._act, cid, Reason.MESSAGE)
        if answer is not None:
            if appended.new:
                self.bot.answered_at_once(
                    cid, answer, None if appended.answered is None else
                    appended.seq + len(appended.answered))
        if appended.new and appended.status == BOT and appended.answered is None:
            # In a greenlet: the socket goes on reading (and acking) while the bot works.
            gevent.spawn(self._act, cid, Reason.MESSAGE, appended.began)
        return appended

    def _act(self, cid: str, reason: Reason, began: Any = None, **options: Any) -> None:
        try:
            self.bot.act(cid, reason, began=began, **options)
        except Exception:  # noqa: BLE001 - the message is stored; the next one retries
            log.exception("the bot failed to act (%s) in %s", reason, cid)

    def typing(self, cid: str, active: bool) -> None:
        self.conversations.publish(cid, frames.typing(cid, "visitor", active))

    def end(self, cid: str) -> None:
        """Close the conversation for the visitor (once, however many tabs end it)."""
        visitor = self.conversations.get(cid).visitor
        self.lifecycle.apply(cid, lifecycle.closing(cid, "visitor", visitor, client_id=END_ID),
                             leaving=lifecycle.OPEN)

    def rate(self, cid: str, score: int, comment: str | None) -> None:
        """Keep the visitor's rating of a closed conversation; raise NotClosed before that."""
        if self.conversations.status(cid) != CLOSED:
            raise NotClosed(cid)
        rating = {"score": score, "at": frames.now_iso()}
        if comment:
            rating["comment"] = comment
        self.conversations.update(cid, rating=rating)

    def leave_queue(self, cid: str) -> None:
        """Stop waiting for a person: the flow goes on at its `no_agents` state."""
        if self.conversations.status(cid) != QUEUED or not self.unqueue(cid):
            raise NotQueued(cid)  # never waited, or a person took it a moment ago
        gevent.spawn(self._act, cid, Reason.NO_AGENTS, why="left_queue")
