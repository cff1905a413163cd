"""Run the bot's turns for live conversations, one at a time per conversation.

Visitor messages are stored first; the bot then answers every stored visitor
message it has not answered yet, in `seq` order, under the conversation's turn
lock. A worker that finds the lock taken leaves its message to the holder,
which looks again for unanswered messages after it lets go, so nothing is left
unanswered and two turns of one conversation never interleave, whichever
workers or instances the messages arrived on.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import gevent
import redis as redis_lib

from bots import engine
from bots.catalog import Catalog
from bots.flow import Flow
from routing import queues as routing

from . import frames
from .conversations import (
    BOT,
    CLOSED,
    TURN_LOCK_RENEW_S,
    VISITOR_MARK,
    Began,
    Closed,
    Conversation,
    Conversations,
    LockLost,
    NotFound,
)
from .timers import IdleTimers

log = logging.getLogger("concierge.turns")

MAX_ROUNDS = 100  # lock rounds in one call: more means a visitor is flooding, and the rest waits
REDIS_RETRIES = 5  # after 1, 2, 4, 8, 16 s: half a minute of Redis being away
REDIS_RETRY_FIRST_S = 1.0
LOCK_RETRIES = 3  # looks again after a busy lock runs out, in case its holder died
LOCK_RETRY_MARGIN_S = 0.05
IDLE_RETRY_S = 1.0  # when an idle deadline meets a running turn
RELOAD_CHECK_S = 1.0  # in development, how often a turn looks for edited flow files
FLOW_GONE = "Sorry, this conversation can't go on here. Please start a new one."


class Bot:
    """Answer visitors of live conversations with the flows of a catalog."""

    def __init__(self, conversations: Conversations, catalog: Catalog,
                 context: Callable[[dict[str, Any]], engine.Context], timers: IdleTimers,
                 reload_flows: bool = False) -> None:
        self.conversations = conversations
        self.catalog = catalog
        self.context = context  # visitor -> what a turn may use (HTTP client, secrets)
        self.timers = timers
        self.reload_flows = reload_flows
        self._next_reload_check = 0.0

    def flow(self, flow_id: str) -> Flow | None:
        if self.reload_flows and time.monotonic() >= self._next_reload_check:
            # stats every flow file: once a second is enough to see an edit
            self._next_reload_check = time.monotonic() + RELOAD_CHECK_S
            for changed in self.catalog.reload_changed():
                log.info("reloaded flow %s", changed)
        return self.catalog.get(flow_id)

    def start(self, cid: str, flow: Flow, visitor: dict[str, Any]) -> None:
        """Greet a new conversation: run the start state and store what it said."""
        token = self.conversations.lock_turn(cid)
        if token is None:
            return  # a conversation just made: nobody else can hold its lock
        try:
            turn = engine.start(flow, self.context(visitor))
            self._apply(cid, token, flow, visitor, turn, bot_seq=0)
        finally:
            self.conversations.unlock_turn(cid, token)

    def answer(self, cid: str, attempt: int = 0, began: Began | None = None) -> None:
        """Answer every visitor message the bot has not answered yet.

        `began` is a turn already begun for this conversation (see
        `Conversations.append_and_begin`); without it, the first round begins its own.
        """
        try:
            self._answer(cid, attempt, began)
        except (redis_lib.RedisError, OSError) as exc:
            # Redis went away mid-turn: what was acked is stored, so try again when it may be
            # back (the socket may stay open, so no resume would ask for it).
            if attempt < REDIS_RETRIES:
                delay_s = REDIS_RETRY_FIRST_S * 2 ** attempt
                log.warning("turn of %s failed (%s); trying again in %g s", cid, exc, delay_s)
                gevent.spawn_later(delay_s, self._answer_quietly, cid, attempt + 1)
            else:
                log.error("turn of %s failed (%s); the next message tries again", cid, exc)

    def _answer(self, cid: str, attempt: int, began: Began | None) -> None:
        for _ in range(MAX_ROUNDS):
            if began is None:
                began = self.conversations.begin_turn(cid, secrets.token_hex(8))
            if began is None:
                # The holder answers our message when it looks again, unless it died or lost
                # Redis mid-turn: then its lock runs out, and we look again just after that.
                if attempt < LOCK_RETRIES:
                    wait_s = self.conversations.turn_lock_left_ms(cid) / 1000 + LOCK_RETRY_MARGIN_S
                    gevent.spawn_later(wait_s, self._answer_quietly, cid, attempt + 1)
                return
            conversation, more = began.conversation, None
            # Scheduled, not started: most turns end first, and cancelling costs nothing.
            renewing = gevent.spawn_later(TURN_LOCK_RENEW_S, self._renew, cid, began.token)
            try:
                conversation, more = self._answer_unseen(began)
            except (LockLost, Closed):
                pass  # end_turn frees the lock if still ours, and sees what is left to answer
            finally:
                renewing.kill()
            if more is None:  # the last store did not end the turn
                more = self.conversations.end_turn(cid, began.token, conversation.bot_seq)
            if not more:
                return
            began = None

    def _answer_quietly(self, cid: str, attempt: int) -> None:
        try:
            self.answer(cid, attempt)
        except Exception:  # noqa: BLE001 - a later message or a resume tries again
            log.warning("answering %s later failed", cid, exc_info=True)

    def _renew(self, cid: str, token: str) -> None:
        while True:
            try:
                if not self.conversations.extend_turn(cid, token):
                    log.warning("lost the turn lock of %s mid-turn", cid)
                    return
            except (redis_lib.RedisError, OSError):
                pass  # Redis is away; the turn will fail on its own writes
            gevent.sleep(TURN_LOCK_RENEW_S)

    def idle(self, cid: str) -> None:
        """Move a conversation whose visitor went quiet to its flow's `on_idle` state."""
        token = secrets.token_hex(8)
        try:
            began = self.conversations.begin_turn(cid, token)
        except NotFound:
            return
        if began is None:  # a turn is running: it re-arms the timer, or this retry fires
            self.timers.arm(cid, IDLE_RETRY_S, only_if_unarmed=True)
            return
        more = False
        try:
            self._idle_turn(cid, began)
        except (LockLost, Closed):
            pass
        finally:  # a visitor message that came meanwhile found the lock taken: answer it now
            more = self.conversations.end_turn(cid, token, began.conversation.bot_seq)
        if more:
            self.answer(cid)

    def _idle_turn(self, cid: str, began: Began) -> None:
        conversation = began.conversation
        if conversation.idle_at is None:
            return  # disarmed: a stale wake-up
        if conversation.idle_at > time.time():  # the visitor spoke after it was taken
            self.timers.arm_at(cid, conversation.idle_at, only_if_unarmed=True)
            return
        if any(VISITOR_MARK in raw for raw in began.unseen):
            return  # the visitor spoke; its answer sets the deadline again
        flow = self.flow(conversation.flow)
        if conversation.status != BOT or flow is None or not conversation.bot:
            return
        turn = engine.idle(flow, conversation.bot, self.context(conversation.visitor))
        if turn.outputs:  # once per silence: the visitor's next message sets it again
            self._apply(cid, began.token, flow, conversation.visitor, turn,
                        conversation.bot_seq, arm_idle=False)

    def _answer_unseen(self, began: Began) -> tuple[Conversation, bool | None]:
        """Take one turn for each visitor message among those the bot has not seen.

        Returns the conversation as it is now and, if the last turn's store also ended the
        turn (freed the lock), whether a visitor message still waits; None if the lock is
        still held.
        """
        conversation, token = began.conversation, began.token
        if conversation.status != BOT:
            return conversation, None
        flow = self.flow(conversation.flow)
        messages = [message for message in map(json.loads, began.unseen)
                    if message.get("from") == "visitor"]
        for index, message in enumerate(messages):
            if flow is None:
                self._flow_gone(conversation.id, token, conversation, int(message["seq"]))
                return conversation, None
            conversation, more = self._turn(conversation, flow, message, token,
                                            last=index == len(messages) - 1)
            if more is not None or conversation.status != BOT:
                return conversation, more
        return conversation, None

    def _turn(self, conversation: Conversation, flow: Flow, message: dict[str, Any],
              token: str, last: bool) -> tuple[Conversation, bool | None]:
        """Answer one visitor message; the store of the `last` one may end the turn."""
        seq = int(message["seq"])
        stored = conversation.bot or engine.new_stored(flow)
        try:
            turn = engine.reply(flow, stored, message.get("text", ""), message.get("payload"),
                                self.context(conversation.visitor))
        except engine.TurnError as exc:
            log.info("conversation %s: message %d not for the bot (%s)", conversation.id, seq,
                     exc)
        except Exception:  # noqa: BLE001 - skip the message rather than fail on it forever
            log.exception("conversation %s: the bot failed on message %d", conversation.id, seq)
        else:
            return self._apply(conversation.id, token, flow, conversation.visitor, turn,
                               bot_seq=seq, end=last)
        more = self.conversations.store_turn(conversation.id, token, [], {"bot_seq": seq},
                                             release=last)
        conversation.bot_seq = seq
        return conversation, (more if last else None)

    def _apply(self, cid: str, token: str, flow: Flow, visitor: dict[str, Any],
               turn: engine.Turn, bot_seq: int, arm_idle: bool = True, end: bool = False
               ) -> tuple[Conversation, bool | None]:
        """Store a turn's messages and state in one round trip; route an escalation.

        With `end`, a turn that leaves the conversation with the bot also ends the bot's turn
        in that round trip: the second value is then whether a visitor message still waits,
        else None (the lock is still held: closing and escalating finish under it).
        """
        said: list[dict[str, Any]] = []
        fields: dict[str, Any] = {}
        status = BOT
        while True:
            follow = None
            for output in turn.outputs:
                if output["type"] == "message":
                    said.append(self._message(cid, output["text"], output.get("buttons")))
                elif output["type"] == "escalate":
                    escalation = {key: output[key]
                                  for key in ("queue", "priority", "reason", "path")}
                    escalation["at"] = frames.now_iso()
                    outcome = routing.escalate(self.conversations.redis, cid, escalation)
                    fields["escalation"] = {**escalation, "outcome": outcome}
                    if outcome == routing.NO_AGENTS:  # the flow goes on; `say` is not sent
                        follow = engine.no_agents(flow, turn.stored, self.context(visitor))
                        break
                    said += [self._message(cid, text) for text in output["say"]]
                    status = routing.QUEUED if outcome == routing.QUEUED else "agent"
                elif output["type"] == "end":
                    status = CLOSED
            if follow is None:
                break
            turn = follow
        fields.update(bot=turn.stored, bot_seq=bot_seq)
        if status not in (BOT, CLOSED):
            fields["status"] = status
        timeout = flow.settings.idle_timeout
        deadline = None
        if timeout:  # the deadline is stored with the turn, so only the lock's holder moves it
            if arm_idle and status == BOT and turn.stored.get("wait") == engine.WAIT_INPUT:
                deadline = time.time() + timeout
            fields["idle_at"] = f"{deadline:.3f}" if deadline else ""
        end = end and status == BOT
        # Its wake-up goes in the same round trip; one queued by a turn that turns out to have
        # lost its lock does nothing, as `idle` finds no due deadline in the record.
        try:
            more = self.conversations.store_turn(
                cid, token, said, fields, release=end,
                also=None if deadline is None else
                lambda pipe: self.timers.arm_at(cid, deadline, pipe=pipe))
        except LockLost:
            if deadline is not None:  # our wake-up replaced the holder's: put its back
                self._restore_wake_up(cid)
            raise
        if timeout and status != BOT:  # the lock is still held: no turn can arm it meanwhile
            self.timers.disarm(cid)
        if status == CLOSED:
            self.conversations.close(cid, "bot")
            self.conversations.publish(cid, frames.status(cid, CLOSED, reason="bot"))
        return (Conversation(id=cid, status=status, flow=flow.id, bot=turn.stored,
                             bot_seq=bot_seq, visitor=visitor), more if end else None)

    def _restore_wake_up(self, cid: str) -> None:
        try:
            at = self.conversations.get(cid).idle_at
        except NotFound:
            return
        if at:  # should the holder set another meanwhile, the earlier wake-up finds it and waits
            self.timers.arm_at(cid, at)

    @staticmethod
    def _message(cid: str, text: str, buttons: list[dict[str, str]] | None = None
                 ) -> dict[str, Any]:
        return frames.message(cid, "bot", text, message_id="m_" + secrets.token_hex(8),
                              buttons=buttons)

    def _flow_gone(self, cid: str, token: str, conversation: Conversation, seq: int) -> None:
        log.error("conversation %s: flow %r is gone; closing it", cid, conversation.flow)
        self.conversations.store_turn(cid, token, [self._message(cid, FLOW_GONE)],
                                      {"bot_seq": seq})
        self.conversations.close(cid, "flow_removed")
        self.conversations.publish(cid, frames.status(cid, CLOSED, reason="flow_removed"))
