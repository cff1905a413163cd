"""A bot turn in one round trip: the answer computed first, stored with the visitor's message.

Most visitor messages get a plain answer: the bot says something and waits for the next one,
with no call to a site's API, no escalation, no end. For those the lock protocol of
chat/turns.py (append and take the lock, run the engine, store and free the lock) costs a
second round trip to Redis, a greenlet and the doorbell rung twice. So a worker remembers, for
each conversation whose last bot turn it stored, what that turn left (`Known`: the last seq, the
bot's state and the visitor, exactly as stored). When the visitor's next message comes, the
worker runs the engine on what it remembers first, and sends the message and the answer in one
script (chat/lua/say_and_answer.lua), which stores both only if nothing changed since: the
conversation is with the bot, its seq, bot state and visitor are the remembered ones, and no
turn holds its lock. If anything did change (another worker's turn, a second tab's hello with
another locale, a person taking over), the script stores the message alone and begins the turn
as ever, and the answer computed here is dropped: the engine has no side effects, so nothing
happened twice.

A turn that would make an HTTP call, escalate or end is never answered here: the engine is
stopped at the call (a client that refuses), and outputs other than messages send it back to
the lock protocol. docs/operating.md, "A bot turn in one round trip", has the figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from bots import engine
from bots.flow import Flow

from . import decisions
from .conversations import BOT, Conversation, Known

MAX_KNOWN = 20_000  # conversations remembered per worker; the oldest is forgotten first


class _WouldCall(Exception):
    """The turn reached a `call`: it is the lock protocol's to make."""


class _NoCalls:
    """An HTTP client that refuses every request (not a CallError: the turn stops there)."""

    def request(self, *_args: Any, **_kwargs: Any) -> Any:
        raise _WouldCall


NO_CALLS = _NoCalls()


@dataclass
class Answer:
    """A bot turn computed ahead of its store."""

    known: Known  # what it was computed from, for the script to check
    messages: list[dict[str, Any]]
    fields: dict[str, Any]
    deadline: float | None  # the idle wake-up to arm with the store
    bot: str  # the new `bot` field, as it will be stored


class KnownBook:
    """What this worker knows of the conversations whose last bot turn it stored."""

    def __init__(self, limit: int = MAX_KNOWN) -> None:
        self.limit = limit
        self._known: dict[str, Known] = {}  # insertion order: the oldest first

    def get(self, cid: str) -> Known | None:
        return self._known.get(cid)

    def remember(self, cid: str, known: Known) -> None:
        self._known.pop(cid, None)
        self._known[cid] = known
        if len(self._known) > self.limit:
            del self._known[next(iter(self._known))]

    def forget(self, cid: str) -> None:
        self._known.pop(cid, None)

    def __len__(self) -> int:
        return len(self._known)


def answer(flow: Flow, known: Known, cid: str, text: str, payload: str | None,
           context: Callable[[dict[str, Any]], engine.Context]) -> Answer | None:
    """Compute the bot's answer to a visitor's message from `known`; None when the turn is not
    a plain one (a call, an escalation, an end, an engine error: the lock protocol's)."""
    try:
        visitor = json.loads(known.visitor) if known.visitor else {}
        turn = engine.reply(flow, json.loads(known.bot), text, payload,
                            replace(context(visitor), http=NO_CALLS))
    except Exception:  # noqa: BLE001 - the locked turn meets it again, and says why
        return None
    if any(output["type"] != "message" for output in turn.outputs):
        return None
    decision = decisions.decide(Conversation(id=cid, status=BOT, visitor=visitor), flow, turn,
                                now=time.time())
    if decision.changes or decision.status != BOT:
        return None
    bot = json.dumps(turn.stored)
    decision.fields["bot"] = bot
    return Answer(known, decision.messages, decision.fields, decision.deadline, bot)


def after(known: Known, answer_: Answer, last_seq: int) -> Known:
    """What the worker knows once `answer_` is stored, its last message at `last_seq`."""
    return Known(seq=last_seq, bot=answer_.bot, visitor=known.visitor, flow=known.flow)
