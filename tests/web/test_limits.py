"""Limits per client address: sockets in a worker (1013 past it), and new conversations."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, RejectConnection, Request

from runtime.config import Config, ConfigError
from tests.support.process import poll_until
from tests.support.ws import RECEIVE_TIMEOUT_S, SocketClosed, VisitorSocket
from web.limits import NEW_CONVERSATION_WINDOW_S, AddressLimits

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

MAX_SOCKETS = 2
LIMITED = {"MAX_SOCKETS_PER_ADDRESS": str(MAX_SOCKETS),
           "WEB_CONCURRENCY": "1"}  # one worker: the count is per worker, so all in one place
CLIENT = "203.0.113.7"  # what a proxy in front would put in X-Forwarded-For
RELEASE_TIMEOUT_S = 10.0  # for the server to notice a socket closed by its client


@pytest.fixture(scope="module")
def limited_server(live_server) -> str:
    return live_server(**LIMITED)


@pytest.fixture(scope="module")
def proxied_server(live_server) -> str:
    """Return the limited app behind one trusted proxy (as on a PaaS)."""
    return live_server(**LIMITED, TRUSTED_PROXY_HOPS="1")


def close_without_a_word(base_url: str, headers: dict[str, str] | None = None
                         ) -> tuple[int, str]:
    """Open a visitor socket, send nothing, and return the code and reason the server closes
    it with; fail if it is not closed within RECEIVE_TIMEOUT_S."""
    parts = urlsplit(base_url)
    ws = WSConnection(ConnectionType.CLIENT)
    extra = [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=RECEIVE_TIMEOUT_S) as sock:
        sock.sendall(ws.send(Request(host=parts.netloc, target="/ws/visitor",
                                     extra_headers=extra)))
        accepted = False
        while True:
            data = sock.recv(65536)  # a timeout here fails the test: the socket stayed open
            assert data, "the server hung up without a close frame"
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, RejectConnection):
                    raise AssertionError(f"upgrade refused with {event.status_code}")
                accepted = accepted or isinstance(event, AcceptConnection)
                if isinstance(event, CloseConnection):
                    assert accepted
                    return event.code, event.reason


def talking(tab: VisitorSocket) -> VisitorSocket:
    """Say hello on `tab`: once the server answers, its handler holds the socket's place."""
    assert tab.hello(None).errors == []
    return tab


def answers_ping(tab: VisitorSocket) -> bool:
    tab.send({"type": "ping"})
    return tab.receive() == {"type": "pong"}


def fill(base_url: str, open_visitor, headers: dict[str, str] | None = None
         ) -> list[VisitorSocket]:
    """Hold every place of an address: MAX_SOCKETS talking sockets. Sockets an earlier test
    closed may hold places until the server has seen them go, so a refused one is tried again."""
    held: list[VisitorSocket] = []

    def one_more() -> bool:
        tab = open_visitor(base_url, headers=headers)
        try:
            held.append(talking(tab))
        except SocketClosed:  # 1013: a place is still taken by a socket on its way out
            return False
        return len(held) == MAX_SOCKETS

    assert poll_until(one_more, RELEASE_TIMEOUT_S), f"only {len(held)} sockets admitted"
    return held


# --- sockets -------------------------------------------------------------------------------------


def test_a_socket_past_the_limit_is_closed_with_1013_and_why(limited_server, open_visitor):
    fill(limited_server, open_visitor)
    assert close_without_a_word(limited_server) == (1013, "too many sockets from your address")


def test_a_socket_closed_by_its_client_frees_its_place(limited_server, open_visitor):
    tabs = fill(limited_server, open_visitor)
    tabs[0].close()

    def admitted() -> bool:
        try:
            return answers_ping(open_visitor(limited_server))
        except SocketClosed:  # 1013: the server has not seen the close yet
            return False

    assert poll_until(admitted, RELEASE_TIMEOUT_S)
    assert answers_ping(tabs[1])  # the socket that kept its place was never disturbed


def test_without_trusted_proxies_x_forwarded_for_is_ignored(limited_server, open_visitor):
    fill(limited_server, open_visitor)
    spoofed = {"X-Forwarded-For": CLIENT}
    assert close_without_a_word(limited_server, spoofed)[0] == 1013


def test_behind_a_trusted_proxy_each_forwarded_address_has_its_own_limit(proxied_server,
                                                                        open_visitor):
    fill(proxied_server, open_visitor, {"X-Forwarded-For": CLIENT})
    assert close_without_a_word(proxied_server, {"X-Forwarded-For": CLIENT})[0] == 1013
    # The proxy appends the address it saw; what the client wrote before it counts for nothing.
    assert close_without_a_word(proxied_server,
                                {"X-Forwarded-For": f"198.51.100.1, {CLIENT}"})[0] == 1013
    talking(open_visitor(proxied_server, headers={"X-Forwarded-For": "203.0.113.8"}))
    talking(open_visitor(proxied_server, headers={"X-Forwarded-For": f"{CLIENT}, 203.0.113.9"}))


# --- new conversations ---------------------------------------------------------------------------


def limits(redis, new_conversations: int = 3) -> AddressLimits:
    return AddressLimits(redis, "concierge:", max_sockets=1, new_conversations=new_conversations)


def test_new_conversations_past_the_limit_are_refused_for_that_address_only(redis):
    address = limits(redis)
    assert [address.allow_new_conversation(CLIENT) for _ in range(5)] == [True] * 3 + [False] * 2
    assert address.allow_new_conversation("203.0.113.8")
    assert address.allow_new_conversation("2001:db8::1")


def test_the_window_starts_with_the_first_conversation_and_later_ones_do_not_extend_it(redis):
    address = limits(redis)
    key = f"concierge:limit:new:{CLIENT}"
    address.allow_new_conversation(CLIENT)
    assert 0 < redis.ttl(key) <= NEW_CONVERSATION_WINDOW_S
    redis.expire(key, 5)  # as if the window were nearly over
    address.allow_new_conversation(CLIENT)
    assert 0 < redis.ttl(key) <= 5 and redis.get(key) == "2"


def test_a_new_window_allows_new_conversations_again(redis):
    address = limits(redis, new_conversations=1)
    assert address.allow_new_conversation(CLIENT)
    assert not address.allow_new_conversation(CLIENT)
    redis.delete(f"concierge:limit:new:{CLIENT}")  # what the window's expiry does
    assert address.allow_new_conversation(CLIENT)
    assert redis.ttl(f"concierge:limit:new:{CLIENT}") > 0


NEW_LIMIT = 2  # new conversations a server started with it allows an address per window


def test_a_hello_past_the_new_conversation_limit_is_refused_and_a_resume_is_not(
        live_server, open_visitor, redis):
    server = live_server(NEW_CONVERSATIONS_PER_ADDRESS=str(NEW_LIMIT))
    redis.delete("concierge:limit:new:127.0.0.1")  # a window of this test's own
    greetings = [open_visitor(server).hello(None) for _ in range(NEW_LIMIT)]

    refused = open_visitor(server)
    refused.send({"type": "hello", "token": None})
    assert refused.wait_closed() == 1013
    assert [(f["type"], f["code"]) for f in refused.frames] == [("error", "rate_limited")]
    assert "too many new conversations" in refused.frames[0]["message"]
    # The conversations this address has go on: a resume starts nothing new.
    again = open_visitor(server).hello(greetings[0].token)
    assert again.conversation == greetings[0].conversation and not again.errors


# --- settings ------------------------------------------------------------------------------------


def test_the_limits_default_to_100_sockets_60_conversations_and_no_proxy():
    config = Config.from_env({})
    assert (config.max_sockets_per_address, config.new_conversations_per_address,
            config.trusted_proxy_hops) == (100, 60, 0)
    assert Config.from_env({"TRUSTED_PROXY_HOPS": "1"}).as_flask()["TRUSTED_PROXY_HOPS"] == 1


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("MAX_SOCKETS_PER_ADDRESS", "0", "MAX_SOCKETS_PER_ADDRESS='0' must be at least 1"),
    ("NEW_CONVERSATIONS_PER_ADDRESS", "many",
     "NEW_CONVERSATIONS_PER_ADDRESS='many' is not a whole number"),
    ("TRUSTED_PROXY_HOPS", "-1", "TRUSTED_PROXY_HOPS='-1' must be at least 0"),
])
def test_a_bad_limit_setting_stops_the_server_naming_it(name, value, problem):
    with pytest.raises(ConfigError) as bad:
        Config.from_env({name: value})
    assert bad.value.problems == [problem]
