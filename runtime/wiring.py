"""Build the live service's parts for one app: Redis, conversations, hub, bot, tokens.

Nothing here connects or spawns at build time: Redis is dialled on first use
and the hub's dispatcher starts with the first socket, inside the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import gevent.monkey
import redis as redis_lib
from flask import Flask, current_app

from bots import engine
from bots.calls import WebClient
from bots.catalog import Catalog
from chat.coalesce import Coalescer
from chat.conversations import Conversations
from chat.hub import Hub
from chat.lifecycle import Lifecycle
from chat.timers import IdleTimers
from chat.tokens import Tokens
from chat.turns import Bot, Reason
from chat.visitors import Visitors
from routing import settings as queue_settings
from routing.agents import Accounts
from routing.board import Board
from routing.desk import Desk
from routing.router import Router
from routing.sweeps import Sweeps

from . import flows

log = logging.getLogger("concierge.wiring")

EXTENSION = "concierge.live"
POOL_SIZE = 64  # Redis connections a worker may hold; a busy greenlet waits for one
POOL_WAIT_S = 5.0
SOCKET_TIMEOUT_S = 5.0
HEALTH_CHECK_S = 30


@dataclass
class Live:
    """The parts a socket handler uses, made once per app (so once per worker)."""

    redis: redis_lib.Redis
    conversations: Conversations
    hub: Hub
    lifecycle: Lifecycle
    bot: Bot
    visitors: Visitors
    timers: IdleTimers
    tokens: Tokens
    config: dict[str, Any]
    accounts: Accounts
    board: Board
    router: Router
    desk: Desk
    sweeps: Sweeps

    def start_timers(self) -> None:
        """Sweep idle deadlines and routing's timers in this worker (any number may)."""
        self.timers.start(lambda cid: self.bot.act(cid, Reason.IDLE))
        self.sweeps.start()

    def redis_answers(self) -> bool:
        try:
            return bool(self.redis.ping())
        except (redis_lib.RedisError, OSError):
            return False


class PoolExhausted(redis_lib.ConnectionError):
    """Every Redis connection of the worker stayed busy for POOL_WAIT_S: the worker is overloaded.

    Not Redis being away: the socket that met it stays open and is told to send again
    (docs/operating.md, "Overload").
    """


class _Pool(redis_lib.BlockingConnectionPool):
    """A blocking pool whose running dry is told apart from Redis being unreachable."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)
        except redis_lib.ConnectionError as exc:
            # redis-py raises a plain ConnectionError with this text when its queue stays empty
            if str(exc) == "No connection available.":
                raise PoolExhausted(f"no Redis connection free within {POOL_WAIT_S:g} s") from exc
            raise


def _pool(url: str, size: int, **options: Any) -> redis_lib.BlockingConnectionPool:
    # The default pool raises past 100 connections, at once under gevent: block and wait instead.
    # TCP keepalive notices a half-open connection (docs/stack.md, "Half-open Redis connections")
    if not url.startswith("unix://"):
        options.update(socket_keepalive=True, socket_connect_timeout=SOCKET_TIMEOUT_S)
    return _Pool.from_url(
        url, max_connections=size, timeout=POOL_WAIT_S, decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S, health_check_interval=HEALTH_CHECK_S, **options)


def pubsub_redis(url: str) -> redis_lib.Redis:
    """Return the client of the worker's one pub/sub connection (and a spare)."""
    # RESP2: under RESP3, redis-py 8 mangles a subscribed connection's PONG into a message
    # ({'type': 'P', ...}), so heartbeats looked unanswered and the hub kept reconnecting.
    return redis_lib.Redis(connection_pool=_pool(url, 2, protocol=2))


def init_app(app: Flask) -> None:
    """Make the live parts for `app`; with no REDIS_URL (a `flask` command) there are none."""
    config = app.config
    url = config.get("REDIS_URL")
    catalog = app.extensions.get(flows.EXTENSION)
    if not url or catalog is None:
        app.extensions[EXTENSION] = None
        return
    client = redis_lib.Redis(connection_pool=_pool(url, POOL_SIZE))
    app.extensions[EXTENSION] = build(client, pubsub_redis(url), catalog, config)


def build(client: redis_lib.Redis, pubsub_client: redis_lib.Redis, catalog: Catalog,
          config: Mapping[str, Any]) -> Live:
    """Make the live parts on these Redis clients, with `config`'s settings (Flask keys)."""
    retention_s = int(config["RETENTION_DAYS"]) * 24 * 3600
    prefix = config["REDIS_PREFIX"]
    # Shared round trips need gevent's greenlets: a worker that is not patched (a `flask`
    # command, a test calling in) has one caller at a time and gains nothing.
    shared = Coalescer(client) if gevent.monkey.is_module_patched("socket") else None
    conversations = Conversations(client, prefix, retention_s,
                                  int(config["MAX_CONVERSATION_MESSAGES"]), shared)
    http = WebClient(config["SELF_URL"])
    secrets = dict(config.get("FLOW_SECRETS", {}))

    def context(visitor: dict[str, Any]) -> engine.Context:
        return engine.Context(visitor=visitor, http=http, secrets=secrets)

    timers = IdleTimers(client, prefix)
    lifecycle = Lifecycle(conversations, timers)
    board = Board(client, prefix)
    router = Router(board, queue_book(config), conversations, lifecycle)
    bot = Bot(conversations, lifecycle, catalog, context, timers, router.anybody_there,
              reload_flows=config["CONCIERGE_ENV"] == "development")

    def no_agents(cid: str, why: str = "no_agents") -> None:
        # Nobody took a queued conversation (or it waited too long): the flow goes on at its
        # no_agents state, as a turn of its own once the turn that queued it let go of the lock.
        gevent.spawn(bot.act, cid, Reason.NO_AGENTS, why=why)

    lifecycle.hand_over = router.hand_over
    lifecycle.released = router.released
    lifecycle.nobody_took = no_agents
    router.no_agents = no_agents
    bot.not_taken = router.not_taken
    accounts = Accounts(client, prefix)
    desk = Desk(board, router, accounts, conversations, catalog,
                lambda cid, state: gevent.spawn(bot.act, cid, Reason.RESUME, state=state))
    return Live(
        redis=client,
        conversations=conversations,
        hub=Hub(lambda: pubsub_client.pubsub(ignore_subscribe_messages=False),
                prefix),
        lifecycle=lifecycle,
        bot=bot,
        visitors=Visitors(conversations, lifecycle, bot, config["DEFAULT_FLOW"],
                          router.leave_queue, router.queue_status),
        timers=timers,
        tokens=Tokens(config["SECRET_KEY"], retention_s),
        config=dict(config),
        accounts=accounts,
        board=board,
        router=router,
        desk=desk,
        sweeps=Sweeps(board, router, float(config.get("AGENT_GRACE_S", 60)), no_agents),
    )


def queue_book(config: Mapping[str, Any]) -> queue_settings.QueueBook:
    """Read QUEUES_FILE; a bad one is refused before the server starts (gunicorn.conf.py), so
    here it only leaves the defaults in place, said in the log."""
    path = config.get("QUEUES_FILE")
    if not path:
        return queue_settings.QueueBook()
    try:
        return queue_settings.load(Path(path))
    except queue_settings.QueueFileError as exc:
        log.error("%s; using the default settings for every queue", exc)
        return queue_settings.QueueBook()


def current_live() -> Live | None:
    return current_app.extensions.get(EXTENSION)
