"""Build the live service's parts for one app: Redis, conversations, hub, bot, tokens.

Nothing here connects or spawns at build time: Redis is dialled on first use
and the hub's dispatcher starts with the first socket, inside the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis as redis_lib
from flask import Flask, current_app

from bots import engine
from bots.calls import WebClient
from chat.conversations import Conversations
from chat.hub import Hub
from chat.timers import IdleTimers
from chat.tokens import Tokens
from chat.turns import Bot

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
    bot: Bot
    timers: IdleTimers
    tokens: Tokens
    config: dict[str, Any]

    def start_timers(self) -> None:
        """Sweep idle deadlines in this worker (any number of workers may)."""
        self.timers.start(self.bot.idle)

    def redis_answers(self) -> bool:
        try:
            return bool(self.redis.ping())
        except (redis_lib.RedisError, OSError):
            return False


def _pool(url: str, size: int, **options: Any) -> redis_lib.BlockingConnectionPool:
    # The default pool raises past 100 connections, at once under gevent: block and wait instead.
    if not url.startswith("unix://"):  # TCP keepalive notices a half-open connection (PITFALLS 13)
        options.update(socket_keepalive=True, socket_connect_timeout=SOCKET_TIMEOUT_S)
    return redis_lib.BlockingConnectionPool.from_url(
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
    pubsub_client = pubsub_redis(url)
    retention_s = int(config["RETENTION_DAYS"]) * 24 * 3600
    conversations = Conversations(client, config["REDIS_PREFIX"], retention_s)
    http = WebClient(config["SELF_URL"])
    secrets = dict(config.get("FLOW_SECRETS", {}))

    def context(visitor: dict[str, Any]) -> engine.Context:
        return engine.Context(visitor=visitor, http=http, secrets=secrets)

    timers = IdleTimers(client, config["REDIS_PREFIX"])
    app.extensions[EXTENSION] = Live(
        redis=client,
        conversations=conversations,
        hub=Hub(lambda: pubsub_client.pubsub(ignore_subscribe_messages=False),
                conversations.channel, conversations.channel_conversation),
        bot=Bot(conversations, catalog, context, timers,
                reload_flows=config["CONCIERGE_ENV"] == "development"),
        timers=timers,
        tokens=Tokens(config["SECRET_KEY"], retention_s),
        config=dict(config),
    )


def current_live() -> Live | None:
    return current_app.extensions.get(EXTENSION)
