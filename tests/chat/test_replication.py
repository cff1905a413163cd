"""Acks that wait for a replica (REDIS_WAIT_REPLICAS): one WAIT per shared round trip, and what
was acked survives the master's death once its replica is promoted (a real master and replica)."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator

import gevent
import pytest
import redis as redis_lib

from chat.coalesce import Coalescer
from tests.support.process import poll_until
from tests.support.redis_server import RedisServer

STORE = "redis.call('RPUSH', KEYS[1], ARGV[1]) return ARGV[1]"
LINK_UP_S = 20.0
HELD_WAIT_MS = 300


def client_of(server: RedisServer) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(server.url, decode_responses=True)


def link_up(replica: redis_lib.Redis) -> bool:
    return replica.info("replication").get("master_link_status") == "up"


@pytest.fixture
def pair(tmp_path) -> Iterator[tuple[RedisServer, RedisServer]]:
    (tmp_path / "master").mkdir()
    (tmp_path / "replica").mkdir()
    master = RedisServer(tmp_path / "master")
    master.start()
    replica = RedisServer(tmp_path / "replica",
                          extra_args=("--replicaof", "127.0.0.1", str(master.port)))
    try:
        replica.start()
        assert poll_until(lambda: link_up(client_of(replica)), LINK_UP_S)
        yield master, replica
    finally:
        for server in (replica, master):
            if server.process is not None and server.process.poll() is None:
                os.kill(server.process.pid, signal.SIGCONT)  # a test may have paused it
            server.stop()


def store_all(coalescer: Coalescer, script, items: list[str]) -> list[object]:
    """Store each item from a greenlet of its own, at once; each one's reply."""
    callers = [gevent.spawn(coalescer.call, script, ["stored"], [item]) for item in items]
    gevent.joinall(callers, timeout=30, raise_error=True)
    return [caller.value for caller in callers]


def waits(client: redis_lib.Redis) -> int:
    return client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)


def test_without_wait_replicas_no_wait_is_sent(pair):
    master, _replica = pair
    client = client_of(master)
    coalescer = Coalescer(client)

    assert store_all(coalescer, client.register_script(STORE), ["a", "b"]) == ["a", "b"]
    assert waits(client) == 0


def test_a_batch_waits_once_for_the_replica_and_then_every_call_is_answered(pair):
    master, replica = pair
    client = client_of(master)
    coalescer = Coalescer(client, wait_replicas=1, wait_ms=5_000)
    items = [f"m{n}" for n in range(50)]

    assert store_all(coalescer, client.register_script(STORE), items) == items

    assert waits(client) == coalescer.batches  # one WAIT a write, not one a call
    # answered only after the replica had them all: it holds them as the callers hear back
    assert client_of(replica).lrange("stored", 0, -1) == client.lrange("stored", 0, -1)
    assert sorted(client_of(replica).lrange("stored", 0, -1)) == sorted(items)


def test_with_the_replica_stalled_calls_are_answered_after_the_wait_and_it_is_logged(
        pair, caplog):
    master, replica = pair
    client = client_of(master)
    coalescer = Coalescer(client, wait_replicas=1, wait_ms=HELD_WAIT_MS)
    script = client.register_script(STORE)
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.WARNING, logger="concierge.coalesce"):
            started = time.monotonic()
            assert store_all(coalescer, script, ["held"]) == ["held"]
            took = time.monotonic() - started
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)

    assert took >= HELD_WAIT_MS / 1000  # WAIT held it for its whole timeout
    assert "acked with 0 of 1 replica(s)" in caplog.text
    assert client.lrange("stored", 0, -1) == ["held"]  # the master took it all the same


def test_what_was_acked_survives_the_masters_death_when_its_replica_is_promoted(pair):
    master, replica = pair
    client = client_of(master)
    coalescer = Coalescer(client, wait_replicas=1, wait_ms=5_000)
    items = [f"m{n}" for n in range(300)]

    acked = store_all(coalescer, client.register_script(STORE), items)
    os.kill(master.process.pid, signal.SIGKILL)  # right after the last ack
    master.process.wait(timeout=10)
    promoted = client_of(replica)
    promoted.replicaof("NO", "ONE")

    assert acked == items
    assert sorted(promoted.lrange("stored", 0, -1)) == sorted(items)
