"""Limits per client address: sockets open in this worker, and new conversations (in Redis).

Sockets are counted in the worker's memory. A socket lives in one worker, so counting there
costs no round trip on connect, and a count dies with its worker instead of leaking in Redis
when the worker is killed. The price: the limit is per worker, so one address may hold up to
WEB_CONCURRENCY times MAX_SOCKETS_PER_ADDRESS sockets on an instance, which still keeps any one
address from filling a worker, the limit's purpose. New conversations are counted in Redis (a
fixed window a key), since each costs storage that outlives its socket and its worker.

The client address is REMOTE_ADDR; behind TRUSTED_PROXY_HOPS proxies the app factory applies
werkzeug's ProxyFix, which puts there the address the outermost trusted proxy saw the client
connect from. docs/protocol.md ("Sockets per address", "Limits") says all this for clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis as redis_lib
from flask import current_app

EXTENSION = "concierge.limits"
NEW_CONVERSATIONS_KEY = "{prefix}limit:new:{address}"  # a counter, for one window
NEW_CONVERSATION_WINDOW_S = 10 * 60  # NEW_CONVERSATIONS_PER_ADDRESS counts per 10 minutes
TOO_MANY_SOCKETS = "too many sockets from your address"


class AddressLimits:
    """What one client address may do: open sockets here, start conversations anywhere."""

    def __init__(self, redis: redis_lib.Redis, prefix: str, *, max_sockets: int,
                 new_conversations: int, window_s: int = NEW_CONVERSATION_WINDOW_S) -> None:
        self.redis = redis
        self.prefix = prefix
        self.max_sockets = max_sockets
        self.new_conversations = new_conversations
        self.window_s = window_s
        self.sockets: dict[str, int] = {}  # address -> sockets open in this worker

    @contextmanager
    def socket(self, address: str) -> Iterator[bool]:
        """Hold one socket of `address` while the block runs; yield whether it is allowed."""
        held = self.sockets.get(address, 0)
        if held >= self.max_sockets:
            yield False
            return
        self.sockets[address] = held + 1  # no switch under gevent between the read and here
        try:
            yield True
        finally:
            left = self.sockets[address] - 1
            if left:
                self.sockets[address] = left
            else:
                del self.sockets[address]  # so the dict holds only addresses with sockets

    def allow_new_conversation(self, address: str) -> bool:
        """Count a new conversation of `address`; tell whether it is within the limit."""
        key = NEW_CONVERSATIONS_KEY.format(prefix=self.prefix, address=address)
        # One round trip, atomic: the window starts with the first conversation and is never
        # extended by later ones (SET NX EX, then INCR keeps the expiry). EXPIRE NX would do
        # as well, but needs Redis 7 and the embedded Redis is 6.2.
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(key, 0, ex=self.window_s, nx=True)
            pipe.incr(key)
            _created, count = pipe.execute()
        return int(count) <= self.new_conversations


def current() -> AddressLimits | None:
    """Return the app's limits; None when it has no Redis (and so serves no sockets)."""
    return current_app.extensions.get(EXTENSION)
