"""Who a request is (session cookie, else API token), the logout hooks, the limiter's storage,
and the pages' policy, through Flask's test client on the real Redis."""

from __future__ import annotations

import logging
import re

import pytest
from flask import Flask
from limits.storage import storage_from_string
from redis import Redis
from redis.cluster import RedisCluster

from app import create_app
from routing.agents import Accounts, Agent
from web import auth
from web.headers import content_security_policy

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

PASSWORD = "correct horse battery"
CSRF_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(minimal_flows_dir, redis_server, redis) -> Flask:
    app = create_app({"FLOWS_DIR": minimal_flows_dir, "REDIS_URL": redis_server})
    # a stand-in for the agent socket, which asks the same question inside its request
    app.add_url_rule("/whoami", "whoami", lambda: {"agent": auth.agent_of_request()})
    Accounts(redis, "concierge:").add(Agent(id="ada", name="Ada", queues=["support"]), PASSWORD)
    return app


def log_in(client) -> None:
    token = CSRF_TOKEN.search(client.get("/login").text).group(1)
    response = client.post("/login", data={"agent_id": "ada", "password": PASSWORD,
                                           "csrf_token": token})
    assert response.status_code == 302


def log_out(client) -> None:
    token = CSRF_TOKEN.search(client.get("/console").text).group(1)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302


def test_the_agent_of_a_request_comes_from_its_session_cookie(app):
    client = app.test_client()
    assert client.get("/whoami").json == {"agent": None}
    log_in(client)
    assert client.get("/whoami").json == {"agent": "ada"}
    log_out(client)
    assert client.get("/whoami").json == {"agent": None}


def test_or_else_from_an_api_token_in_the_header_or_the_query(app, redis):
    accounts = Accounts(redis, "concierge:")
    token = accounts.new_token("ada")
    client = app.test_client()

    assert client.get("/whoami", headers={"Authorization": f"Bearer {token}"}).json == {
        "agent": "ada"}
    assert client.get("/whoami", query_string={"token": token}).json == {"agent": "ada"}
    assert client.get("/whoami", headers={"Authorization": "Bearer made-up"}).json == {
        "agent": None}
    accounts.revoke_tokens("ada")
    assert client.get("/whoami", query_string={"token": token}).json == {"agent": None}


def test_a_logout_calls_every_hook_with_the_agent_and_survives_a_failing_one(app, caplog):
    called: list[str] = []

    def failing(agent_id: str, session_id: str) -> None:
        raise RuntimeError("presence is away")

    def record(agent_id: str, session_id: str) -> None:
        called.append(agent_id)
        assert session_id.startswith(f"{agent_id}:")  # the session that ended

    auth.on_logout(app, failing)
    auth.on_logout(app, record)
    client = app.test_client()
    log_in(client)

    with caplog.at_level(logging.ERROR, logger="web.auth"):
        log_out(client)
    assert called == ["ada"]
    assert "logout hook" in caplog.text and "presence is away" in caplog.text
    assert app.extensions[auth.LOGOUT_HOOKS][-2:] == [failing, record]  # after the app's own


def test_no_hook_runs_for_a_logout_without_a_session(app):
    called: list[str] = []
    auth.on_logout(app, lambda agent_id, _session: called.append(agent_id))
    client = app.test_client()
    token = CSRF_TOKEN.search(client.get("/login").text).group(1)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert called == []


@pytest.mark.parametrize(("redis_url", "kind"), [
    ("redis://redis.internal:6379/0", Redis),
    ("rediss://:secret@redis.internal:6380", Redis),
    ("unix:///srv/var/redis/redis.sock", Redis),
    ("redis+cluster://:secret@redis-1.internal:7000,redis-2.internal:7000", RedisCluster),
])
def test_the_limiter_counts_in_our_redis_on_a_client_of_the_factory(redis_url, kind):
    # limits' storage, on the client runtime/redis_clients.py makes (nothing dials yet)
    storage = storage_from_string(auth.limiter_storage_uri(redis_url),
                                  **auth._limiter_options({"REDIS_URL": redis_url,
                                                           "REDIS_PREFIX": "acme:"}))
    assert isinstance(storage, auth._Storage) and isinstance(storage.storage, kind)
    assert storage.key_prefix == "acme:limiter"
    assert auth.limiter_storage_uri(None) == "memory://"


def test_the_limiter_keys_live_under_the_redis_prefix(minimal_flows_dir, redis_server, redis):
    app = create_app({"FLOWS_DIR": minimal_flows_dir, "REDIS_URL": redis_server,
                      "REDIS_PREFIX": "acme:"})
    client = app.test_client()
    token = CSRF_TOKEN.search(client.get("/login").text).group(1)
    client.post("/login", data={"agent_id": "ada", "password": "x", "csrf_token": token})
    assert redis.keys("*") and all(key.startswith("acme:limiter:") for key in redis.keys("*"))


@pytest.mark.parametrize(("host", "sockets"), [
    ("127.0.0.1:5000", "ws://127.0.0.1:5000 wss://127.0.0.1:5000"),
    ("[::1]:5000", "ws://[::1]:5000 wss://[::1]:5000"),
    ("console.example.com", "ws://console.example.com wss://console.example.com"),
])
def test_the_policy_lets_pages_open_sockets_to_their_own_host(host, sockets):
    assert f"connect-src 'self' {sockets};" in content_security_policy(host)


def test_a_host_header_cannot_write_into_the_policy():
    policy = content_security_policy("evil.example; script-src *")
    assert "connect-src 'self';" in policy and "evil" not in policy
