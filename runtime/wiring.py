"""Build the live service's parts for one app: Redis, conversations, hub, bot, tokens.

Nothing here connects or spawns at build time: Redis is dialled on first use
and the hub's dispatcher starts with the first socket, inside the worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gevent
import redis as redis_lib
from flask import Flask, current_app

from bots import engine
from bots.calls import WebClient
from bots.catalog import Catalog
from chat.conversations import Conversations
from chat.hub import Hub
from chat.lifecycle import Lifecycle
from chat.timers import IdleTimers
from chat.tokens import Tokens
from chat.turns import Bot, Reason
from chat.visitors import Visitors
from routing.queues import Queues

from . import flows

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

    def start_timers(self) -> None:
        """Sweep idle deadlines in this worker (any number of workers may)."""
        self.timers.start(lambda cid: self.bot.act(cid, Reason.IDLE))

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
    conversations = Conversations(client, prefix, retention_s,
                                  int(config["MAX_CONVERSATION_MESSAGES"]))
    http = WebClient(config["SELF_URL"])
    secrets = dict(config.get("FLOW_SECRETS", {}))

    def context(visitor: dict[str, Any]) -> engine.Context:
        return engine.Context(visitor=visitor, http=http, secrets=secrets)

    timers = IdleTimers(client, prefix)
    queues = Queues(client, prefix)
    lifecycle = Lifecycle(conversations, timers, queues.hand_over)
    bot = Bot(conversations, lifecycle, catalog, context, timers, queues.anybody_there,
              reload_flows=config["CONCIERGE_ENV"] == "development")
    # Routing found nobody for a queued conversation: the flow goes on at its no_agents state,
    # as a turn of its own once the turn that queued it has let go of the lock.
    lifecycle.nobody_took = lambda cid: gevent.spawn(bot.act, cid, Reason.NO_AGENTS)
    return Live(
        redis=client,
        conversations=conversations,
        hub=Hub(lambda: pubsub_client.pubsub(ignore_subscribe_messages=False),
                prefix),
        lifecycle=lifecycle,
        bot=bot,
        visitors=Visitors(conversations, lifecycle, bot, config["DEFAULT_FLOW"]),
        timers=timers,
        tokens=Tokens(config["SECRET_KEY"], retention_s),
        config=dict(config),
    )


def current_live() -> Live | None:
    return current_app.extensions.get(EXTENSION)
