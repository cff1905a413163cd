"""Clients that read slowly or not at all, and what everyone else on their worker sees meanwhile.

Such clients are plain sockets (tests/support/raw_ws.py) that read only when the test says so.
Long texts are emoji: 4,000 characters (the most a message may have) are 16 KB in UTF-8, so a
few hundred messages are enough to fill what the kernel buffers for a client that does not read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.process import poll_until
from tests.support.raw_ws import RawSocket, server_side
from tests.support.ws import (
    RECEIVE_TIMEOUT_S,
    Frame,
    Greeting,
    bot_says,
    closed_status,
    of_type,
)

# on_cluster by test: those about the doorbell and the log; the rest are about the socket alone.

MAX_TEXT_CHARS = 4_000
ASKS = "opening hours "  # the default flow answers it from any state, and never ends
LONG_TEXT = ASKS + "\N{GRINNING FACE}" * (MAX_TEXT_CHARS - len(ASKS))  # 4,000 chars, ~16 KB
LONG_TEXT_BYTES = len(LONG_TEXT.encode())


def most_the_kernel_buffers() -> int:
    """The most a TCP socket's send buffer grows to (tcp_wmem's maximum; 4 MiB by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * 1024 * 1024


# Echoes for a tab that reads nothing: more than the kernel holds for it (300: ~4.8 MB).
FLOOD_MESSAGES = max(300, int(1.1 * most_the_kernel_buffers() / LONG_TEXT_BYTES))
TAB_RATE = 15  # messages a second from each sending tab: inside FRAME_RATE (20)
PROBE_EVERY = 50  # messages of the flood between two questions of the other visitor
CUT_OFF_WAIT_S = 30  # the server gives up on a write after 10 s (WRITE_TIMEOUT_S)
BLOCKED_QUEUE_BYTES = 1_000_000


@pytest.fixture(scope="module")
def one_worker_server(live_server) -> str:
    """Return the app with one worker: every socket shares its dispatcher."""
    return live_server(WEB_CONCURRENCY="1")


def send_long(tab, message_id: str) -> None:
    # As a browser sends it: UTF-8, not \u escapes (which would triple the size of the frame).
    tab.send_text(json.dumps({"type": "message", "id": message_id, "text": LONG_TEXT},
                             ensure_ascii=False))


def writes_blocked(client: RawSocket) -> Callable[[], bool]:
    """A condition: the server's send queue to `client` is full and has stopped moving."""
    seen: list[int] = []

    def check() -> bool:
        end = server_side(client)
        seen.append(end.tx_queue if end else -1)
        return seen[-1] > BLOCKED_QUEUE_BYTES and seen[-5:] == [seen[-1]] * 5

    return check


def seed(redis, store, greeting: Greeting, upto: int, text: str) -> int:
    """Make the conversation `upto` messages long, laid out as the server stores them."""
    cid = greeting.conversation
    template = greeting.messages[0]
    log = f"{store.record_key(cid)}:log"
    for start in range(greeting.last_seq + 1, upto + 1, 200):
        with redis.pipeline() as pipe:
            for seq in range(start, min(start + 200, upto + 1)):
                pipe.rpush(log, json.dumps({**template, "seq": seq, "id": f"m_{seq}",
                                            "text": text}, ensure_ascii=False,
                                           separators=(",", ":")))
            pipe.execute()
    redis.hset(store.record_key(cid), "seq", upto)
    return upto


def check_replay(frames: list[Frame], cid: str, upto: int) -> list[Frame]:
    """Frames begin with welcome and the whole replay, 1 … upto; return the frames after it."""
    assert frames[0]["type"] == "welcome" and frames[0]["conversation"] == cid, frames[:2]
    replay = frames[1:upto + 1]
    assert [f.get("seq") for f in replay] == list(range(1, upto + 1)), \
        [(i, f["type"]) for i, f in enumerate(frames) if f["type"] != "message"]
    return frames[upto + 1:]


# --- a client that stops reading ---------------------------------------------------------------


def test_a_client_that_stops_reading_is_cut_off_and_the_worker_goes_on(
        one_worker_server, open_visitor):
    url = one_worker_server
    tabs = [open_visitor(url)]
    hello = tabs[0].hello(None)
    tabs.append(open_visitor(url))
    tabs[1].hello(hello.token, last_seq=2)
    deaf = RawSocket(url, rcvbuf=4096)  # a third tab of the conversation, that stops reading
    try:
        deaf.send({"type": "hello", "token": hello.token, "last_seq": 2})
        deaf.receive_until(of_type("status"))
        other = open_visitor(url)  # another visitor, on the same worker
        other.hello(None)

        # The two reading tabs send long messages, within the rate limit; the bot answers each.
        started = time.monotonic()
        for n in range(FLOOD_MESSAGES):
            send_long(tabs[n % 2], f"long-{n}")
            time.sleep(max(0.0, started + (n + 1) / (2 * TAB_RATE) - time.monotonic()))
            if (n + 1) % PROBE_EVERY == 0:
                other.talk("opening hours", message_id=f"probe-{n}",
                           until=bot_says("anything else"))

        # The deaf tab is cut off: the server ends its side of the connection...
        assert poll_until(lambda: (end := server_side(deaf)) is None
                          or end.state != "ESTABLISHED", CUT_OFF_WAIT_S), server_side(deaf)
        # ... and the worker goes on: the other visitor and the conversation's tabs get answers.
        other.talk("opening hours", message_id="after", until=bot_says("anything else"))
        echo = tabs[0].talk("opening hours", message_id="tab-after",
                            until=lambda f: f["type"] == "message" and f["id"] == "tab-after")
        tabs[0].receive_until(lambda f: f["type"] == "message" and f["from"] == "bot"
                              and f["seq"] > echo[-1]["seq"])

        # What the deaf tab finds when it reads again: what was queued, then the end.
        assert deaf.read_to_end(timeout=RECEIVE_TIMEOUT_S) in ("eof", "reset", "close 1013")
        echoes = [f for f in deaf.frames if f.get("id", "").startswith("long-")]
        assert len(echoes) < FLOOD_MESSAGES  # it was not sent the whole flood
    finally:
        deaf.close()


# --- a client that reads slowly while it resumes ------------------------------------------------


@pytest.mark.on_cluster
def test_a_status_never_overtakes_the_replay_and_the_last_one_is_current(
        server, open_visitor, redis, store):
    tab_b = open_visitor(server)
    greeting = tab_b.hello(None)
    cid = greeting.conversation
    upto = seed(redis, store, greeting, 1_200, LONG_TEXT)  # ~19 MB to replay

    tab_a = RawSocket(server)
    try:
        tab_a.send({"type": "hello", "token": greeting.token, "last_seq": 0})
        tab_a.receive_until(of_type("welcome"))
        # Tab A reads nothing for now: the server's writes to it block, its replay half done...
        assert poll_until(writes_blocked(tab_a), RECEIVE_TIMEOUT_S), server_side(tab_a)
        tab_b.send({"type": "end"})  # ... when tab B ends the conversation.
        tab_b.receive_until(closed_status)

        tab_a.send({"type": "ping"})  # answered once its hello is done: all before it came
        frames = tab_a.receive_until(of_type("pong"), timeout=2 * RECEIVE_TIMEOUT_S)
    finally:
        tab_a.close()
    after = check_replay(frames, cid, upto + 1)  # welcome, then the replay: no status between
    assert frames[upto + 1]["from"] == "system"
    assert frames[upto + 1]["text"] == "The visitor ended the conversation."
    assert after[-1] == {"type": "pong"}
    statuses = after[:-1]
    assert statuses and all(f["type"] == "status" for f in statuses), after
    assert statuses[-1] == {"type": "status", "conversation": cid, "status": "closed",
                            "reason": "visitor"}, statuses


@pytest.mark.on_cluster
def test_a_status_never_overtakes_the_messages_a_tab_catches_up_on(
        server, open_visitor, redis, store):
    tab_b = open_visitor(server)
    greeting = tab_b.hello(None)
    cid = greeting.conversation
    tab_a = RawSocket(server)
    try:
        tab_a.send({"type": "hello", "token": greeting.token, "last_seq": greeting.last_seq})
        tab_a.receive_until(of_type("status"))  # its hello is done: it is in step
        upto = seed(redis, store, greeting, 1_200, LONG_TEXT)  # stored, never rung: a gap
        tab_b.send({"type": "end"})  # the end message rings: tab A catches up from the log...
        # ... and reads nothing for now, so its catching up stalls half done...
        assert poll_until(writes_blocked(tab_a), RECEIVE_TIMEOUT_S), server_side(tab_a)
        tab_b.receive_until(closed_status, timeout=4 * RECEIVE_TIMEOUT_S)  # ... when it closes.

        frames = tab_a.receive_until(closed_status, timeout=4 * RECEIVE_TIMEOUT_S)
    finally:
        tab_a.close()
    messages = [f["seq"] for f in frames if f["type"] == "message"]
    assert messages == list(range(greeting.last_seq + 1, upto + 2)), messages[-3:]
    assert frames[-1] == {"type": "status", "conversation": cid, "status": "closed",
                          "reason": "visitor"}


def a_tab_in_step(server, open_visitor, redis, store) -> tuple[Any, str, Frame, int]:
    """Open a tab that has had an answer rung on the doorbell: subscribed, its first read done.

    Returns the tab, its conversation, a bot message to copy, and the last seq it was sent.
    """
    tab = open_visitor(server)
    cid = tab.hello(None).conversation
    answer = tab.talk("opening hours", until=bot_says("anything else"))
    template = next(f for f in answer if f["type"] == "message" and f["from"] == "bot")
    in_step = int(redis.hget(store.record_key(cid), "seq"))
    assert tab.messages[-1]["seq"] == in_step
    return tab, cid, template, in_step


@pytest.mark.on_cluster
def test_a_status_waits_while_a_failed_catch_up_is_tried_again(server, live_server, open_visitor,
                                                                redis, store):
    tab, cid, template, in_step = a_tab_in_step(server, open_visitor, redis, store)
    upto = in_step + 6
    log, kept = f"{store.record_key(cid)}:log", f"{store.record_key(cid)}:kept"
    stored = [json.dumps({**template, "seq": seq, "id": f"m_{seq}", "text": f"Message {seq}."},
                         separators=(",", ":")) for seq in range(in_step + 1, upto + 1)]
    redis.rpush(log, *stored)  # in the log, but only the last two are rung
    redis.hset(store.record_key(cid), "seq", upto)
    redis.rename(log, kept)
    redis.set(log, "not a list")  # the tab's reads of the log fail (WRONGTYPE)
    warnings_before = live_server.stderr(server).count("could not read the log of")
    store.publish(cid, stored[-2])  # a gap: the tab reads the log, and fails...
    store.publish(cid, json.dumps({"type": "status", "conversation": cid,
                                   "status": "closed", "reason": "visitor"}))
    store.publish(cid, stored[-1])
    assert poll_until(lambda: live_server.stderr(server).count("could not read the log of")
                      > warnings_before, RECEIVE_TIMEOUT_S)
    redis.delete(log)
    redis.rename(kept, log)  # ... until Redis answers again: its next try gets them all

    frames = tab.receive_until(closed_status)
    messages = [f["seq"] for f in frames if f["type"] == "message" and f["seq"] > in_step]
    assert messages == list(range(in_step + 1, upto)), messages
    assert tab.receive()["seq"] == upto  # what was rung after the status comes after it


@pytest.mark.on_cluster
def test_a_message_rung_but_missing_from_the_log_is_skipped_after_a_few_tries(
        server, live_server, open_visitor, redis, store):
    tab, cid, template, in_step = a_tab_in_step(server, open_visitor, redis, store)
    # Two messages numbered, the second rung, neither in the log (lost from it meanwhile).
    redis.hset(store.record_key(cid), "seq", in_step + 2)
    store.publish(cid, json.dumps({**template, "seq": in_step + 2, "text": "Gone."}))
    store.publish(cid, json.dumps({"type": "status", "conversation": cid, "status": "bot"}))

    frames = tab.receive_until(of_type("status"), timeout=3 * RECEIVE_TIMEOUT_S)
    assert [f for f in frames if f.get("seq", 0) > in_step] == []
    assert f"messages {in_step + 1}-{in_step + 2} of {cid} are missing" in \
        live_server.stderr(server)
    # The conversation goes on from there, every message delivered.
    frames = tab.talk("opening hours", message_id="after", until=bot_says("anything else"))
    assert [f["seq"] for f in frames if f["type"] == "message"][0] == in_step + 3


# --- a client that pings while the server writes to it ------------------------------------------


def test_a_client_that_pings_while_the_server_writes_to_it_gets_its_pongs(
        server, open_visitor, redis, store):
    tab = open_visitor(server)
    greeting = tab.hello(None)
    tab.close()
    upto = seed(redis, store, greeting, 600, LONG_TEXT)  # ~10 MB to replay

    client = RawSocket(server)
    try:
        client.send({"type": "hello", "token": greeting.token, "last_seq": 0})
        client.receive_until(of_type("welcome"))
        # It reads nothing for now: the server's writes to it block once the kernel is full...
        assert poll_until(writes_blocked(client), RECEIVE_TIMEOUT_S), server_side(client)
        # ... and then it pings, and the server reads the ping while its write waits.
        client.send_ping(b"are you there?")
        assert poll_until(lambda: server_side(client).rx_queue == 0, RECEIVE_TIMEOUT_S)

        client.wait_pong(b"are you there?", timeout=RECEIVE_TIMEOUT_S)
        client.receive_until(of_type("status"), timeout=RECEIVE_TIMEOUT_S)
        assert check_replay(client.frames, greeting.conversation, upto) == [
            {"type": "status", "conversation": greeting.conversation, "status": "bot"}]

        client.send({"type": "ping"})  # the socket still reads and answers
        client.receive_until(of_type("pong"), timeout=RECEIVE_TIMEOUT_S)
        assert client.ended is None
    finally:
        client.close()


# --- a client that stops reading and answering pings ---------------------------------------------

UNREAD_MESSAGES = 12  # ~200 KB of echoes: far from the 2 MiB cut-off, well over a close's backlog


def test_a_socket_closed_for_missing_pongs_while_not_reading_leaves_no_orphan(
        live_server, open_visitor):
    url = live_server(PING_INTERVAL_S="1", WEB_CONCURRENCY="1")
    tab = open_visitor(url)
    hello = tab.hello(None)
    deaf = RawSocket(url, rcvbuf=4096)  # a second tab that reads nothing, so answers no ping
    try:
        deaf.send({"type": "hello", "token": hello.token, "last_seq": hello.last_seq})
        for n in range(UNREAD_MESSAGES):  # its echoes pile up in the server's send queue
            send_long(tab, f"unread-{n}")
            tab.receive_until(lambda f, n=n: f.get("id") == f"unread-{n}")
        # Closed for the missed pong with all that unsent: the kernel must not keep it as an
        # orphan trying to deliver it (minutes, for a client holding a zero window), but reset.
        assert poll_until(lambda: server_side(deaf) is None, CUT_OFF_WAIT_S), server_side(deaf)
    finally:
        deaf.close()
