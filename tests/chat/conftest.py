"""Fixtures for the domain behind the socket, built as a worker builds them, on the real Redis.

`live` is runtime.wiring.build's parts (conversations, lifecycle, bot, visitors, timers) on the
session's Redis (tests/conftest.py) with the default settings but a key prefix of its own, and the
shipped flows; `parts_store` reads what they stored; the other
fixtures are its parts. Greenlets the parts spawn (a bot turn answering a message) run when the
test waits for them with `settle()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gevent
import pytest
import redis as redis_lib

from bots.catalog import load_catalog
from chat import frames
from chat.conversations import Conversations
from chat.timers import IdleTimers
from chat.turns import Bot
from runtime import wiring
from runtime.config import Config
from tests.conftest import Store
from tests.support.gunicorn_server import ROOT

# Not the default prefix: the suite's gunicorn servers sweep `concierge:timers:idle` every second,
# and would take the wake-ups these in-process tests arm and read.
PREFIX = "domain-test:"
SETTLE_S = 5.0  # for greenlets the parts spawn; they finish in milliseconds
ANONYMOUS = {"verified": False}


@pytest.fixture
def live(redis, redis_server) -> Iterator[wiring.Live]:
    config = {**Config().as_flask(), "REDIS_URL": redis_server, "REDIS_PREFIX": PREFIX}
    parts = wiring.build(redis_lib.Redis.from_url(redis_server, decode_responses=True),
                         redis_lib.Redis.from_url(redis_server, decode_responses=True, protocol=2),
                         load_catalog(ROOT / "flows"), config)
    yield parts
    parts.redis.close()


@pytest.fixture
def parts_store(redis) -> Store:
    """Read what the in-process parts stored, under their own prefix."""
    return Store(redis, PREFIX)


@pytest.fixture
def conversations(live) -> Conversations:
    return live.conversations


@pytest.fixture
def timers(live) -> IdleTimers:
    return live.timers


@pytest.fixture
def bot(live) -> Bot:
    """Return the bot of the shipped flows, with the visitor's identity in each turn's context."""
    return live.bot


def settle() -> None:
    """Let the greenlets the parts spawned run to their end."""
    gevent.wait(timeout=SETTLE_S)


def started(live: wiring.Live, visitor: dict[str, Any] = ANONYMOUS) -> str:
    """Start a conversation with the default flow, greeted by the bot; return its id."""
    return live.visitors.start("default", visitor).cid


def ungreeted(conversations: Conversations, visitor: dict[str, Any] = ANONYMOUS) -> str:
    """Make a conversation with the default flow that the bot has not greeted, its lock free."""
    began = conversations.create_and_begin("default", visitor, "creator")
    conversations.end_turn(began.conversation.id, "creator")
    return began.conversation.id


def visitor_says(conversations: Conversations, cid: str, text: str, message_id: str,
                 token: str = "tok"):
    """Store a visitor message as the socket does; with `token`, begin the bot's turn with it."""
    return conversations.append_and_begin(
        cid, frames.message(cid, "visitor", text, message_id=message_id), f"v:{message_id}",
        token)


def seat(live: wiring.Live, agent_id: str, *, queues: tuple[str, ...] = ("support",),
         max_chats: int = 3, presence: str = "available", role: str = "agent") -> Any:
    """Make an agent account and give it a live socket on the board, with `presence`."""
    from routing.agents import Agent  # noqa: PLC0415 - only the routing tests need it

    agent = Agent(id=agent_id, name=agent_id.title(), queues=list(queues), max_chats=max_chats,
                  role=role)
    if live.accounts.get(agent_id) is None:
        live.accounts.add(agent, "a-long-enough-password")
    live.desk.connect(agent, f"socket-of-{agent_id}", 60)
    live.desk.set_presence(agent, presence)
    return agent


def manual(live: wiring.Live, *queues: str) -> None:
    """Make `queues` manual (never assigned by routing): conversations wait with agents there."""
    from routing.settings import MANUAL, QueueBook, QueueSettings  # noqa: PLC0415

    live.router.book = QueueBook({q: QueueSettings(q, MANUAL) for q in queues})
