"""How conversations sit in Redis: prefixed keys with one hash tag each, kept RETENTION_DAYS."""

from __future__ import annotations

import re

import pytest

from tests.conftest import CONFIGURED_PREFIX, CONFIGURED_RETENTION_DAYS
from tests.support.ws import bot_says, closed_status

DAY_S = 24 * 3600
TTL_SLACK_S = 600  # a TTL read at most this long after the last write (the test takes seconds)


def conversation_keys(redis, prefix: str, cid: str) -> set[str]:
    """Name the conversation's stored keys (not the bot's turn lock, which may still be held)."""
    return {key for key in redis.scan_iter(f"{prefix}*")
            if cid in key and not key.endswith(":turn")}


def hash_tag(key: str) -> str:
    """Return what Redis Cluster hashes a key by: the part in its first {…}."""
    return re.search(r"\{([^}]*)\}", key).group(1)


@pytest.mark.parametrize(("which", "prefix"), [("default", "concierge:"),
                                               ("configured", CONFIGURED_PREFIX)])
def test_conversation_keys_carry_the_prefix_and_one_hash_tag(request, redis, open_visitor,
                                                             which, prefix):
    url = request.getfixturevalue("server" if which == "default" else "configured_server")
    tab = open_visitor(url)
    cid = tab.hello(None).conversation
    tab.talk("opening hours", until=bot_says("anything else"))

    keys = conversation_keys(redis, prefix, cid)
    record = f"{prefix}conv:{{{cid}}}"
    assert keys == {record, f"{record}:log", f"{record}:ids"}
    assert {hash_tag(key) for key in keys} == {cid}
    assert re.fullmatch(r"c_[A-Za-z0-9_-]{16,}", cid)
    assert all(key.startswith(prefix) for key in redis.scan_iter("*")), list(redis.scan_iter())


@pytest.mark.parametrize(("which", "prefix", "days"), [
    ("default", "concierge:", 30),
    ("configured", CONFIGURED_PREFIX, CONFIGURED_RETENTION_DAYS),
])
def test_a_closed_conversation_is_kept_for_retention_days(request, redis, open_visitor, which,
                                                          prefix, days):
    url = request.getfixturevalue("server" if which == "default" else "configured_server")
    tab = open_visitor(url)
    cid = tab.hello(None).conversation
    tab.talk("bye", until=closed_status)

    keys = conversation_keys(redis, prefix, cid)
    assert len(keys) == 3
    for key in keys:
        ttl = redis.ttl(key)
        assert days * DAY_S - TTL_SLACK_S < ttl <= days * DAY_S, (key, ttl)


def test_a_rating_keeps_the_closed_conversation_retention_days_from_then(server, redis,
                                                                          open_visitor):
    tab = open_visitor(server)
    cid = tab.hello(None).conversation
    tab.talk("bye", until=closed_status)
    keys = conversation_keys(redis, "concierge:", cid)
    for key in keys:
        redis.expire(key, DAY_S)  # as if 29 of the 30 days had passed

    tab.send({"type": "rating", "score": 5})
    tab.send({"type": "ping"})
    assert tab.receive() == {"type": "pong"}
    assert all(redis.ttl(key) > 30 * DAY_S - TTL_SLACK_S for key in keys), \
        {key: redis.ttl(key) for key in keys}
