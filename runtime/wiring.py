"""Build the live service's parts for one app: Redis, conversations, hub, bot, tokens.

Nothing here connects or spawns at build time: Redis is dialled on first use
and the hub's dispatcher starts with the first socket, inside the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.monkey
import gevent.pool
import redis as redis_lib
from flask import Flask, current_app

from bots import engine
from bots.calls import WebClient
from bots.catalog import Catalog
from chat.coalesce import Coalescer
from chat.conversations import Conversations
from chat.hub import Channels, Hub, ShardedHub
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

from . import flows, redis_clients

log = logging.getLogger("concierge.wiring")

EXTENSION = "concierge.live"
# The clients' settings live with the factory (runtime/redis_clients.py); named here too, as
# the rest of the code and the benchmarks know them.
POOL_SIZE = redis_clients.POOL_SIZE
POOL_WAIT_S = redis_clients.POOL_WAIT_S
SOCKET_TIMEOUT_S = redis_clients.SOCKET_TIMEOUT_S
HEALTH_CHECK_S = redis_clients.HEALTH_CHECK_S
PoolExhausted = redis_clients.PoolExhausted
_pool = redis_clients.pool
pubsub_redis = redis_clients.pubsub_client


@dataclass
class Live:
    """The parts a socket handler uses, made once per app (so once per worker)."""

    redis: redis_clients.Client  # one Redis, or a Redis Cluster
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
    # The visitor sockets' sessions, each on a greenlet of its own (web/sockets.py); gunicorn
    # bounds it by worker_connections and waits for it at exit (gunicorn.conf.py).
    sessions: gevent.pool.Group = field(default_factory=gevent.pool.Group)

    def start_timers(self) -> None:
        """Sweep idle deadlines and routing's timers in this worker (any number may)."""
        self.timers.start(lambda cid: self.bot.act(cid, Reason.IDLE))
        self.sweeps.start()

    def redis_answers(self) -> bool:
        """Tell whether Redis answers: its pub/sub connection here was read lately without a
        failure, or it answers a PING (on a cluster: the client's default node)."""
        if self.hub.connection_live():
            return True  # no round trip (a PING was ~6 % of a visitor socket's opening)
        try:
            return bool(self.redis.ping())
        except (redis_lib.RedisError, OSError):
            return False

    def redis_unready_reason(self) -> str | None:
        """Say why Redis cannot serve (for /readyz); on a cluster, whether it is usable."""
        return redis_clients.unready_reason(self.redis)


def init_app(app: Flask) -> None:
    """Make the live parts for `app`; with no REDIS_URL (a `flask` command) there are none."""
    config = app.config
    url = config.get("REDIS_URL")
    catalog = app.extensions.get(flows.EXTENSION)
    if not url or catalog is None:
        app.extensions[EXTENSION] = None
        return
    # Neither client dials yet, a cluster's neither: the worker boots with Redis away.
    client = redis_clients.connect(url, POOL_SIZE)
    app.extensions[EXTENSION] = build(client, redis_clients.pubsub_client(url), catalog, config)


def build(client: redis_clients.Client, pubsub_client: redis_clients.Client, catalog: Catalog,
          config: Mapping[str, Any]) -> Live:
    """Make the live parts on these Redis clients, with `config`'s settings (Flask keys)."""
    retention_s = int(config["RETENTION_DAYS"]) * 24 * 3600
    prefix = config["REDIS_PREFIX"]
    # Classic or sharded pub/sub, once for the process: every publisher names its channels
    # and loads its scripts by it, and the hub subscribes so (chat/hub.py).
    channels = Channels(prefix, sharded=redis_clients.sharded_pubsub(client))
    # Shared round trips need gevent's greenlets: a worker that is not patched (a `flask`
    # command, a test calling in) has one caller at a time and gains nothing.
    shared = Coalescer(client, int(config.get("REDIS_WAIT_REPLICAS", 0)),
                       int(config.get("REDIS_WAIT_MS", 100))) \
        if gevent.monkey.is_module_patched("socket") else None
    conversations = Conversations(client, prefix, retention_s,
                                  int(config["MAX_CONVERSATION_MESSAGES"]), shared, channels)
    http = WebClient(config["SELF_URL"])
    secrets = dict(config.get("FLOW_SECRETS", {}))

    def context(visitor: dict[str, Any]) -> engine.Context:
        return engine.Context(visitor=visitor, http=http, secrets=secrets)

    timers = IdleTimers(client, prefix)
    lifecycle = Lifecycle(conversations, timers)
    board = Board(client, prefix, channels, conversations.tell_places)
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
        hub=ShardedHub(redis_clients.ClusterShards(pubsub_client), channels)
        if channels.sharded else Hub(redis_clients.pubsub_maker(pubsub_client), prefix, channels),
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
