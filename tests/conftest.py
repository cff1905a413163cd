"""Fixtures for the whole suite: a real Redis, and the app served by real gunicorn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from tests.support.flows import MINIMAL_FLOW, write_flows
from tests.support.gunicorn_server import GunicornServer
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start one real redis-server for the session; yield its URL."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis(redis_server: str) -> Iterator[Redis]:
    """Return a client (str replies) of the session's Redis, emptied before the test."""
    client = Redis.from_url(redis_server, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def minimal_flows_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a FLOWS_DIR holding one valid flow, `default`, that greets and ends."""
    return write_flows(tmp_path_factory.mktemp("flows"), default=MINIMAL_FLOW)


class LiveServers:
    """Start the app under gunicorn on demand; one server per distinct set of settings."""

    def __init__(self, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.redis_url = redis_url
        self.tmp_path_factory = tmp_path_factory
        self.servers: dict[tuple, GunicornServer] = {}

    def __call__(self, flows_dir: str | Path | None = None, **env: str) -> str:
        """Return the base URL of gunicorn serving the app with `flows_dir` and `env` settings."""
        env = {"REDIS_URL": self.redis_url, "FLOWS_DIR": str(flows_dir or "flows"), **env}
        key = tuple(sorted(env.items()))
        if key not in self.servers:
            server = GunicornServer(self.tmp_path_factory.mktemp("gunicorn"), env)
            server.start()
            self.servers[key] = server
        return self.servers[key].url

    def stderr(self, url: str) -> str:
        """Return what the server at `url` has written to stderr so far."""
        return next(s for s in self.servers.values() if s.url == url).stderr()

    def stop_all(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture(scope="session")
def live_server(
    redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServers]:
    """Yield a factory: `live_server(flows_dir=None, **env) -> base URL` of the app under gunicorn.

    Each server runs 2 gevent workers on 127.0.0.1 with REDIS_URL set to the session's Redis and
    FLOWS_DIR to `flows_dir` (default: the shipped flows/); it is started on first use and shared by
    every later call with the same settings, and stopped at the end of the session.
    """
    servers = LiveServers(redis_server, tmp_path_factory)
    yield servers
    servers.stop_all()
