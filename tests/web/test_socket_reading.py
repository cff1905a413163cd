"""A socket's frames are read by its own handler (web/transport.py, "Transport.receive"): pings
kept up across many intervals, many frames in one packet, a close from this side that wakes a
handler waiting for bytes, a flood held back by TCP instead of a buffer."""

from __future__ import annotations

import time

from wsproto.events import Ping, TextMessage

from tests.support.raw_ws import RawSocket
from tests.support.ws import RECEIVE_TIMEOUT_S, of_type
from tests.web.agent_fixtures import team_fixture  # noqa: F401 - a fixture
from tests.web.test_agent_socket import Console

# Not on_cluster: how a socket's frames are read is the same on any Redis.

PINGS = 4  # intervals a socket that answers must outlive (a timer that fired at once lost it)
BURST = 30  # messages written in one packet
CLOSE_S = 5.0  # far below the ping interval (25 s) a handler would otherwise wait


def test_a_socket_that_answers_pings_stays_open_across_many_intervals(live_server):
    url = live_server(PING_INTERVAL_S="1", WEB_CONCURRENCY="1")
    client = RawSocket(url)
    try:
        client.send({"type": "hello", "token": None})
        client.receive_until(of_type("welcome"))
        deadline = time.monotonic() + PINGS + RECEIVE_TIMEOUT_S
        while client.pings < PINGS and time.monotonic() < deadline:
            assert client.read(deadline - time.monotonic()), client.ended
        assert client.pings >= PINGS and client.ended is None
        started = time.monotonic()
        client.send({"type": "ping"})  # still read and answered
        client.receive_until(of_type("pong"))
        # Pinged once an interval, not in a loop: the pings so far fit the time they took.
        assert client.pings <= PINGS + 2 * (time.monotonic() - started + 1)
    finally:
        client.close()


def test_many_messages_in_one_packet_are_each_stored_and_acked_in_order(server, store):
    client = RawSocket(server)
    try:
        client.send({"type": "hello", "token": None})
        cid = client.receive_until(of_type("welcome"))[-1]["conversation"]
        packet = b"".join(client.ws.send(TextMessage(data=(
            f'{{"type": "message", "id": "burst-{n}", "text": "note {n}"}}')))
            for n in range(BURST))
        client.sock.sendall(packet)
        frames = client.receive_until(
            lambda f: f.get("type") == "ack" and f.get("id") == f"burst-{BURST - 1}")
        acked = [f["id"] for f in frames if f["type"] == "ack"]
        assert acked == [f"burst-{n}" for n in range(BURST)]
        texts = [m["text"] for m in store.log(cid) if m["from"] == "visitor"]
        assert texts == [f"note {n}" for n in range(BURST)]
    finally:
        client.close()


def test_a_socket_closed_from_this_side_ends_at_once_though_its_client_never_answers(
        team, server):
    """A logout closes the agent's socket while its handler waits for the client's bytes: the
    close wakes it, so the connection ends now, not when the next ping would have found it."""
    team.add("ada")
    console = Console(server, "ada")
    client = RawSocket(server, "/ws/agent", headers=console.cookie)
    try:
        client.receive_until(of_type("welcome"))
        console.log_out()
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while client.ended is None and time.monotonic() < deadline:
            client.read(deadline - time.monotonic())
        assert client.ended == "close 1000"
        # The client sends no close of its own: the server's end goes without waiting for it.
        client.sock.settimeout(CLOSE_S)
        assert client.sock.recv(4096) == b""
    finally:
        client.close()
        console.http.close()


FLOOD = 500  # frames that carry no message, in one write: far over the burst of 2 x FRAME_RATE


def flood_is_closed(url: str, frames: bytes, client: RawSocket) -> None:
    client.sock.sendall(frames)
    deadline = time.monotonic() + RECEIVE_TIMEOUT_S
    while client.ended is None and time.monotonic() < deadline:
        client.read(deadline - time.monotonic())
    assert client.ended == "close 1008"


def test_a_flood_of_pings_is_closed_with_1008_and_the_worker_serves_the_others(
        live_server, open_visitor):
    url = live_server(WEB_CONCURRENCY="1")
    bystander = open_visitor(url)
    bystander.hello(None)
    client = RawSocket(url)
    try:
        pings = b"".join(client.ws.send(Ping(payload=b"")) for _ in range(FLOOD))
        flood_is_closed(url, pings, client)
        assert client.pongs.count(b"") < FLOOD  # answered until the limit, then closed
    finally:
        client.close()
    bystander.say("still there?", message_id="after-flood")
    bystander.receive_until(lambda f: f.get("type") == "ack" and f.get("id") == "after-flood")


def test_a_message_that_never_ends_is_closed_with_1008_after_too_many_fragments(live_server):
    url = live_server(WEB_CONCURRENCY="1")
    client = RawSocket(url)
    try:
        client.send({"type": "hello", "token": None})
        client.receive_until(of_type("welcome"))
        parts = b"".join(client.ws.send(TextMessage(data="", message_finished=False))
                         for _ in range(FLOOD))
        flood_is_closed(url, parts, client)
    finally:
        client.close()
