"""The bot's turns: one entry point for every reason the bot acts, one lock protocol.

`Bot.act(cid, reason)` is how the bot ever acts on a live conversation:
START (greet a new one), MESSAGE (answer the visitor messages it has not
answered), IDLE (the visitor went quiet), NO_AGENTS (nobody took it from the
queue: after the visitor left the queue, `max_wait`, or routing finding no one)
and RESUME (a person hands it back at a state). Every turn goes the same way:

1. begin: take the conversation's turn lock and read its record and the
   messages the bot has not seen, in one step (for a visitor's message, the
   append that stores it does this too, saving a round trip);
2. decide: run the engine, fold its escalations (bots/handoff.py) and turn the
   outputs into messages, status changes and fields (chat/decisions.py, pure);
3. commit: one fenced store of all of it, which also frees the lock and says
   whether a visitor message arrived meanwhile (then the bot goes again);
4. what follows a status change (chat/lifecycle.py: routing, timers).

A worker that finds the lock taken leaves visitor messages to the holder, which
looks again after it lets go; so nothing is left unanswered and two turns of
one conversation never interleave, whichever workers the messages arrived on.

A little over ~300 lines: the entry point, its retries and the lock protocol are one
concept, and the pure part of a turn already lives apart (chat/decisions.py).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import gevent
import redis as redis_lib

from bots import engine, handoff
from bots.catalog import Catalog
from bots.flow import Flow

from . import at_once, decisions, lifecycle
from .conversations import (
    AGENT,
    BOT,
    QUEUED,
    TURN_LOCK_RENEW_S,
    VISITOR_MARK,
    Began,
    Conversation,
    Conversations,
    Known,
    LockLost,
    Moved,
    NotFound,
)
from .timers import IdleTimers

log = logging.getLogger("concierge.turns")

MAX_ROUNDS = 100  # lock rounds in one call: more means a visitor is flooding, and the rest waits
REDIS_RETRIES = 5  # after 1, 2, 4, 8, 16 s: half a minute of Redis being away
REDIS_RETRY_FIRST_S = 1.0
LOCK_RETRIES = 3  # looks again after a busy lock runs out, in case its holder died
LOCK_RETRY_MARGIN_S = 0.05
# A no_agents or resume turn is nobody else's to take: it waits for a busy lock up to 60 times,
# each as long as the lock has left (at most its 5 s), about five minutes in all.
HANDOVER_LOCK_RETRIES = 60
IDLE_RETRY_S = 1.0  # when an idle deadline meets a running turn
RELOAD_CHECK_S = 1.0  # in development, how often a turn looks for edited flow files
FLOW_GONE = "Sorry, this conversation can't go on here. Please start a new one."


class Reason(StrEnum):
    """Why the bot acts."""

    START = "start"
    MESSAGE = "message"
    IDLE = "idle"
    NO_AGENTS = "no_agents"
    RESUME = "resume"


# The status a turn of each reason needs; a turn that finds another does nothing.
NEEDS = {Reason.START: BOT, Reason.MESSAGE: BOT, Reason.IDLE: BOT, Reason.NO_AGENTS: QUEUED,
         Reason.RESUME: AGENT}


class Bot:
    """Run the flows of a catalog for live conversations."""

    def __init__(self, conversations: Conversations, lifecycle_: lifecycle.Lifecycle,
                 catalog: Catalog, context: Callable[[dict[str, Any]], engine.Context],
                 timers: IdleTimers, anybody_there: Callable[[dict[str, Any]], bool],
                 reload_flows: bool = False) -> None:
        self.conversations = conversations
        self.lifecycle = lifecycle_
        self.catalog = catalog
        self.context = context  # visitor -> what a turn may use (HTTP client, secrets)
        self.timers = timers
        self.anybody_there = anybody_there  # escalate output -> can a person take it now?
        self.reload_flows = reload_flows
        # (cid, escalate output) -> None: an escalation nobody could take (routing lists it as
        # missed). Set by the wiring.
        self.not_taken: Callable[[str, dict[str, Any]], None] = lambda _cid, _output: None
        self._next_reload_check = 0.0
        self._retrying: set[tuple[str, Reason]] = set()  # one pending retry per turn, not a pile
        self._looking: set[str] = set()  # conversations a look_again waits for
        self.known = at_once.KnownBook()  # for turns in one round trip (chat/at_once.py)

    def flow(self, flow_id: str) -> Flow | None:
        if self.reload_flows and time.monotonic() >= self._next_reload_check:
            # stats every flow file: once a second is enough to see an edit
            self._next_reload_check = time.monotonic() + RELOAD_CHECK_S
            for changed in self.catalog.reload_changed():
                log.info("reloaded flow %s", changed)
        return self.catalog.get(flow_id)

    # --- the one entry point -------------------------------------------------------------

    def act(self, cid: str, reason: Reason, *, began: Began | None = None,
            why: str = "no_agents", state: str = "", attempt: int = 0) -> None:
        """Take the bot's turn on a conversation, for `reason`.

        `began` is a turn already begun (the lock held: a new conversation, or a visitor
        message whose append took it); `why` says why nobody took it (NO_AGENTS: no_agents,
        left_queue, max_wait); `state` is where a RESUME goes on. A turn that Redis cuts short
        is tried again later, once per conversation and reason however many fail.
        """
        try:
            self._rounds(cid, reason, began, why, state, attempt)
        except NotFound:
            return
        except (redis_lib.RedisError, OSError) as exc:
            # What was acked is stored: try again when Redis may be back (the socket may stay
            # open, so no resume would ask for it).
            self._retry_later(cid, reason, why, state, attempt, f"failed ({exc})")

    def _retry_later(self, cid: str, reason: Reason, why: str, state: str, attempt: int,
                     what: str) -> None:
        if attempt >= REDIS_RETRIES:
            log.error("turn of %s %s; the next message tries again", cid, what)
            return
        if (cid, reason) in self._retrying:
            return  # one retry already waits for this turn
        delay_s = REDIS_RETRY_FIRST_S * 2 ** attempt
        log.warning("turn of %s %s; trying again in %g s", cid, what, delay_s)
        self._retrying.add((cid, reason))
        gevent.spawn_later(delay_s, self._retry, cid, reason, why, state, attempt + 1)

    def _retry(self, cid: str, reason: Reason, why: str, state: str, attempt: int) -> None:
        self._retrying.discard((cid, reason))
        try:
            self.act(cid, reason, why=why, state=state, attempt=attempt)
        except Exception:  # noqa: BLE001 - a later message or a resume tries again
            log.warning("turn of %s failed again", cid, exc_info=True)

    def _rounds(self, cid: str, reason: Reason, began: Began | None, why: str, state: str,
                attempt: int) -> None:
        for _ in range(MAX_ROUNDS):
            if began is None:
                began = self.conversations.begin_turn(cid, secrets.token_hex(8))
            if began is None:
                self._lock_busy(cid, reason, why, state, attempt)
                return
            # Scheduled, not started: most turns end first, and cancelling costs nothing.
            renewing = gevent.spawn_later(TURN_LOCK_RENEW_S, self._renew, cid, began.token)
            more = None
            try:
                more = self._turn(began, reason, why, state)
            except (LockLost, Moved):
                pass  # end_turn frees the lock if still ours, and sees what is left to answer
            finally:
                renewing.kill()
            if more is None:  # the last store did not end the turn
                more = self.conversations.end_turn(cid, began.token)
            if not more:
                return
            began, reason = None, Reason.MESSAGE  # a visitor message came meanwhile

    def look_again(self, cid: str, after_s: float) -> None:
        """Take a MESSAGE turn of `cid` in `after_s` seconds (it answers only what the bot has
        not seen): one waits per conversation, however many ask for it."""
        if cid in self._looking:
            return
        self._looking.add(cid)

        def look() -> None:
            self._looking.discard(cid)
            try:
                self.act(cid, Reason.MESSAGE)
            except Exception:  # noqa: BLE001 - the next message or a resume tries again
                log.warning("turn of %s failed", cid, exc_info=True)

        gevent.spawn_later(after_s, look)

    def _lock_busy(self, cid: str, reason: Reason, why: str, state: str, attempt: int) -> None:
        """Leave the turn to the lock's holder, or come back when its lock has run out."""
        if reason == Reason.IDLE:  # the running turn re-arms the deadline, or this retry fires
            self.timers.arm(cid, IDLE_RETRY_S, only_if_unarmed=True)
            return
        # The holder answers visitor messages when it looks again, unless it died or lost Redis
        # mid-turn: then its lock runs out, and we look again just after that. Other reasons
        # are no visitor message the holder would see, so they come back for much longer.
        if attempt < (LOCK_RETRIES if reason == Reason.MESSAGE else HANDOVER_LOCK_RETRIES):
            wait_s = self.conversations.turn_lock_left_ms(cid) / 1000 + LOCK_RETRY_MARGIN_S
            gevent.spawn_later(wait_s, self._retry, cid, reason, why, state, attempt + 1)

    def _renew(self, cid: str, token: str) -> None:
        while True:
            try:
                if not self.conversations.extend_turn(cid, token):
                    log.warning("lost the turn lock of %s mid-turn", cid)
                    return
            except (redis_lib.RedisError, OSError):
                pass  # Redis is away; the turn will fail on its own writes
            gevent.sleep(TURN_LOCK_RENEW_S)

    # --- a turn in one round trip (chat/at_once.py) ------------------------------------------

    def answer_at_once(self, cid: str, text: str, payload: str | None) -> at_once.Answer | None:
        """The answer to a visitor's message computed from what this worker knows, if it can
        be; the caller stores it with the message (Conversations.say_and_answer)."""
        known = self.known.get(cid)
        if known is None:
            return None
        flow = self.flow(known.flow)
        if flow is None:
            return None
        return at_once.answer(flow, known, cid, text, payload, self.context)

    def remember(self, conversation: Conversation) -> None:
        """Remember a conversation as a record read says it is (a resume on this worker), so
        its next message may be answered at once; the store checks that it still is."""
        if conversation.bot_raw:
            self.known.remember(conversation.id, Known(
                seq=conversation.seq, bot=conversation.bot_raw,
                visitor=conversation.visitor_raw, flow=conversation.flow))

    def answered_at_once(self, cid: str, answer: at_once.Answer, last_seq: int | None) -> None:
        """Note how say_and_answer went: stored at `last_seq`, or not (None: the turn under the
        lock takes the message, and remembers what it leaves)."""
        if last_seq is None:
            self.known.forget(cid)
        else:
            self.known.remember(cid, at_once.after(answer.known, answer, last_seq))

    # --- one turn, under the lock ----------------------------------------------------------

    def _turn(self, began: Began, reason: Reason, why: str, state: str) -> bool | None:
        """Run one locked turn; return whether a visitor message waits, None if the lock is held."""
        conversation = began.conversation
        if conversation.status != NEEDS[reason]:
            return None  # stale: the conversation moved on (a person has it, it closed)
        flow = self.flow(conversation.flow)
        if reason == Reason.MESSAGE:
            return self._answer(began, flow)
        if flow is None:
            return None  # a visitor message finds that out, and closes the conversation
        context = self.context(conversation.visitor)
        before = None
        if reason == Reason.START:
            if conversation.bot:
                return None  # greeted already
            turn = engine.start(flow, context)
        elif reason == Reason.IDLE:
            if not self._idle_due(began):
                return None
            turn = engine.idle(flow, conversation.bot, context)
            if not turn.outputs:
                return None  # once per silence: the visitor's next message sets it again
        else:
            before = lifecycle.back_to_bot(conversation.id,
                                           why if reason == Reason.NO_AGENTS else "agent")
            turn = (engine.no_agents(flow, conversation.bot, context, why)
                    if reason == Reason.NO_AGENTS else
                    engine.resume(flow, conversation.bot, state, context))
        # Visitor messages sent while a person was awaited are not answers to the bot.
        bot_seq = conversation.seq if before is not None else None
        return self._commit(began, flow, turn, bot_seq=bot_seq, before=before,
                            arm_idle=reason != Reason.IDLE, release=True)

    def _idle_due(self, began: Began) -> bool:
        conversation = began.conversation
        if conversation.idle_at is None:
            return False  # disarmed: a stale wake-up
        if conversation.idle_at > time.time():  # the visitor spoke after it was taken
            self.timers.arm_at(conversation.id, conversation.idle_at, only_if_unarmed=True)
            return False
        # The visitor spoke; its answer sets the deadline again.
        return bool(conversation.bot) and not any(VISITOR_MARK in raw for raw in began.unseen)

    def _answer(self, began: Began, flow: Flow | None) -> bool | None:
        """Answer each visitor message the bot has not seen, one engine turn each."""
        conversation = began.conversation
        messages = [message for message in map(json.loads, began.unseen)
                    if message.get("from") == "visitor"]
        for index, message in enumerate(messages):
            seq, last = int(message["seq"]), index == len(messages) - 1
            if flow is None:
                log.error("conversation %s: flow %r is gone; closing it", conversation.id,
                          conversation.flow)
                return self._store(began, decisions.flow_gone(conversation, FLOW_GONE, seq),
                                   release=True)
            stored = conversation.bot or engine.new_stored(flow)
            try:
                turn = engine.reply(flow, stored, message.get("text", ""),
                                    message.get("payload"), self.context(conversation.visitor))
            except engine.TurnError as exc:
                log.info("conversation %s: message %d not for the bot (%s)", conversation.id,
                         seq, exc)
            except Exception:  # noqa: BLE001 - skip the message rather than fail on it forever
                log.exception("conversation %s: the bot failed on message %d", conversation.id,
                              seq)
            else:
                more = self._commit(began, flow, turn, bot_seq=seq, release=last)
                conversation.bot, conversation.bot_seq = turn.stored, seq
                if conversation.status != BOT:
                    return more  # a person or the end takes the rest
                if last:
                    return more
                continue
            more = self._store(began, decisions.Decision(status=conversation.status,
                                                         fields={"bot_seq": seq}),
                               release=last)
            conversation.bot_seq = seq
            if last:
                return more
        return None

    def _commit(self, began: Began, flow: Flow, turn: engine.Turn, *, bot_seq: int | None,
                release: bool, arm_idle: bool = True,
                before: lifecycle.Change | None = None) -> bool | None:
        """Settle, decide and store one engine turn; then do what its status changes ask."""
        conversation = began.conversation
        settled = handoff.settle(flow, turn, self.context(conversation.visitor),
                                 self.anybody_there)
        decision = decisions.decide(conversation, flow, settled, now=time.time(),
                                    bot_seq=bot_seq, arm_idle=arm_idle, before=before)
        # A turn that hands the conversation on frees the lock with its store: no later turn of
        # this round is the bot's, and what follows the change must find the lock free.
        decision.fields["bot"] = bot = json.dumps(settled.stored)  # as stored, to remember
        more = self._store(began, decision, release=release or decision.status != BOT)
        conversation.status = decision.status
        if more is False and decision.status == BOT and not decision.changes:
            # released with nothing left to answer: the next message may be answered at once
            self.known.remember(conversation.id, Known(
                seq=decision.stored_seq, bot=bot, visitor=conversation.visitor_raw,
                flow=flow.id))
        else:
            self.known.forget(conversation.id)
        for output in settled.outputs:
            if output["type"] == "escalate" and not output["taken"]:
                try:
                    self.not_taken(conversation.id, output)
                except (redis_lib.RedisError, OSError) as exc:  # the turn itself is stored
                    log.warning("could not list %s as missed (%s)", conversation.id, exc)
        return more

    def _store(self, began: Began, decision: decisions.Decision, release: bool) -> bool | None:
        """Commit a decision in one fenced round trip; None when the lock is still held."""
        cid, deadline = began.conversation.id, decision.deadline
        try:
            # The wake-up goes in the same round trip; one queued by a turn that turns out to
            # have lost its lock does nothing, as `idle` finds no due deadline in the record.
            more, decision.stored_seq = self.conversations.stored_turn(
                cid, began.token, decision.messages, decision.fields,
                status=began.conversation.status, release=release,
                forget_verified=decision.forget_verified,
                also=() if deadline is None else (self.timers.arm_command(cid, deadline),),
                keep=began.stored)
        except LockLost:
            if deadline is not None:  # our wake-up replaced the holder's: put its back
                self._restore_wake_up(cid)
            raise
        for change in decision.changes:
            self.lifecycle.after(cid, change)
        return more if release else None

    def _restore_wake_up(self, cid: str) -> None:
        try:
            at = self.conversations.get(cid).idle_at
        except NotFound:
            return
        if at:  # should the holder set another meanwhile, the earlier wake-up finds it and waits
            self.timers.arm_at(cid, at)
