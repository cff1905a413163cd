"""Feeds: one conversation as one socket sees it, on a transport that may carry many.

Status changes reach every socket as the `status` frame right after the system message that
made them, rung live or read back from the log after a pub/sub outage; a message rung while the
log is being read goes out at once; a resume to a client that reads slowly goes a page at a
time; and one socket carrying two conversations gets each one's frames in its own order.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.feeds_app import PATH, many_feeds_server
from tests.support.gunicorn_server import GunicornServer
from tests.support.process import poll_until
from tests.support.raw_ws import RawSocket, server_side
from tests.support.redis_proxy import RedisProxy
from tests.support.ws import (
    RECEIVE_TIMEOUT_S,
    Frame,
    Socket,
    bot_says,
    closed_status,
    message_with_seq,
    of_type,
)
from web.feeds import RESYNC_RETRY_S
from web.transport import MAX_UNREAD_BYTES

# on_cluster by test: the others run a worker behind a proxy of one Redis, or an app of the
# suite's own (tests/support/feeds_app.py) that counts classic subscribers.

RECOVERY_TIMEOUT_S = 30  # the hub re-dials with back-off of at most 5 s
LONG_TEXT = "opening hours " + "\N{GRINNING FACE}" * 3_986  # 4,000 characters, ~16 KB
# Hellos with a first message. Before the fix about 1 in 100-600 first answers came a retry late
# (the load decides); the test with the held log read catches it every time, this one by chance.
FIRST_ANSWER_ROUNDS = 60


def ring(redis, store, cid: str, *messages: dict[str, Any], rung: bool = True,
         ascii_only: bool = False) -> list[Frame]:
    """Store messages after the conversation's last, as the store lays them out, and ring them.

    One ring for all, a JSON frame a line, as a bot turn's are; with `rung=False` they are
    stored and never rung (a publish that was lost). With `ascii_only` they are written as
    json.dumps does by default, all that is not ASCII escaped. Returns them with their seq.
    """
    record = store.record_key(cid)
    seq = int(redis.hget(record, "seq") or 0)
    stored = [{**message, "conversation": cid, "seq": seq + n}
              for n, message in enumerate(messages, 1)]
    lines = [json.dumps(message, ensure_ascii=ascii_only, separators=(",", ":"))
             for message in stored]
    with redis.pipeline() as pipe:
        pipe.rpush(f"{record}:log", *lines)
        pipe.hset(record, "seq", seq + len(lines))
        if rung:
            store.publish(cid, "\n".join(lines), pipe)
        pipe.execute()
    return stored


def bot_message(text: str, n: int) -> dict[str, Any]:
    return {"type": "message", "id": f"m_test{n}", "from": "bot", "text": text,
            "ts": "2026-12-01T08:00:00.000Z"}


def frames_of(frames: list[Frame], cid: str) -> list[Frame]:
    return [f for f in frames if f.get("conversation") == cid]


# --- status from system messages ----------------------------------------------------------------


@pytest.mark.on_cluster
def test_a_status_change_reaches_another_tab_right_after_its_system_message(server,
                                                                            open_visitor):
    tab_a = open_visitor(server)
    greeting = tab_a.hello(None)
    tab_b = open_visitor(server)
    tab_b.hello(greeting.token, last_seq=greeting.last_seq)

    tab_b.send({"type": "end"})
    frames = tab_a.receive_until(closed_status)

    said = frames[-2]
    assert (said["type"], said["from"], said["event"], said["reason"]) == (
        "message", "system", "closed", "visitor")
    assert frames[-1] == {"type": "status", "conversation": greeting.conversation,
                          "status": "closed", "reason": "visitor"}
    assert [f["type"] for f in frames] == ["message", "status"]  # each once


def one_worker_behind(proxy, directory, flows_dir) -> Iterator[tuple[str, object]]:
    """Serve the shipped flows with one worker that reaches Redis through `proxy`."""
    app = GunicornServer(directory, {"REDIS_URL": proxy.url, "FLOWS_DIR": str(flows_dir),
                                     "WEB_CONCURRENCY": "1"})
    try:
        app.start()
        yield app.url, proxy
    finally:
        app.stop()
        proxy.close()


@pytest.fixture(scope="module")
def cut_off_worker(redis_server, tmp_path_factory, shipped_flows_dir
                   ) -> Iterator[tuple[str, RedisProxy]]:
    """A one-worker server that reaches the session's Redis through a proxy the test can cut."""
    yield from one_worker_behind(RedisProxy(urlsplit(redis_server).port),
                                 tmp_path_factory.mktemp("cut-off-worker"), shipped_flows_dir)


def test_a_status_change_missed_during_a_pubsub_outage_reaches_the_tab_by_resync(
        cut_off_worker, server, open_visitor, store):
    url, proxy = cut_off_worker
    tab = open_visitor(url)
    greeting = tab.hello(None)
    tab.talk("opening hours", until=bot_says("anything else"))  # in step, live
    other = open_visitor(server)  # another tab, on another server
    other.hello(greeting.token, last_seq=tab.last_seq)

    # The tab's worker loses its pub/sub connection, and cannot make it again for now...
    proxy.fail_pubsub(1_000)
    proxy.cut()
    assert poll_until(lambda: proxy.pubsub_failed > 0, RECOVERY_TIMEOUT_S)
    other.send({"type": "end"})  # ... while the other tab ends the conversation: nobody rings it
    other.receive_until(closed_status)
    proxy.fail_pubsub(0)  # back: the worker subscribes again, and its tab reads what it missed

    frames = tab.receive_until(closed_status, timeout=RECOVERY_TIMEOUT_S)
    said = store.log(greeting.conversation)[-1]
    assert (said["from"], said["event"]) == ("system", "closed")
    assert frames[-2] == said
    assert frames[-1] == {"type": "status", "conversation": greeting.conversation,
                          "status": "closed", "reason": "visitor"}


# --- a message rung while the log is being read ------------------------------------------------


class GatedProxy:
    """A TCP proxy in front of Redis that can hold back the replies to a worker's commands.

    Only its command connections are held (they say HELLO; the pub/sub connection, on RESP2,
    does not), so the doorbell still rings while a read of the log waits for its answer;
    `log_read` is set once a read (LRANGE) has gone to Redis while held.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.flowing = threading.Event()
        self.flowing.set()
        self.log_read = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self.log_read.clear()
        self.flowing.clear()

    def release(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.flowing.set()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            commands = threading.Event()  # set once the connection said HELLO
            threading.Thread(target=self._requests, args=(client, upstream, commands),
                             daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, commands),
                             daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket,
                  commands: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                if b"HELLO" in data:
                    commands.set()
                if b"LRANGE" in data and not self.flowing.is_set():
                    self.log_read.set()
                upstream.sendall(data)
        except OSError:
            pass
        _close(client, upstream)

    def _replies(self, upstream: socket.socket, client: socket.socket,
                 commands: threading.Event) -> None:
        try:
            while data := upstream.recv(65536):
                if commands.is_set():
                    self.flowing.wait()
                client.sendall(data)
        except OSError:
            pass
        _close(client, upstream)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@pytest.fixture(scope="module")
def gated_worker(redis_server, tmp_path_factory, shipped_flows_dir
                 ) -> Iterator[tuple[str, GatedProxy]]:
    """A one-worker server whose replies from Redis the test can hold back."""
    yield from one_worker_behind(GatedProxy(urlsplit(redis_server).port),
                                 tmp_path_factory.mktemp("gated-worker"), shipped_flows_dir)


def test_a_message_rung_while_the_log_is_being_read_goes_out_without_waiting_for_a_retry(
        gated_worker, open_visitor, redis, store):
    url, proxy = gated_worker
    tab = open_visitor(url)
    cid = tab.hello(None).conversation
    tab.talk("opening hours", until=bot_says("anything else"))  # subscribed, in step
    witness = open_visitor(url)  # another conversation on the same worker, in step too
    other = witness.hello(None).conversation
    witness.talk("opening hours", until=bot_says("anything else"))
    in_step = tab.last_seq

    proxy.hold()
    # A gap: the tab's socket reads the log, and Redis answers before anything more is stored...
    store.publish(cid, json.dumps(
        {**bot_message("Two.", 2), "conversation": cid, "seq": in_step + 2}))
    assert proxy.log_read.wait(RECEIVE_TIMEOUT_S)
    # ... then, while that answer is on its way, the messages are stored and the last one rings.
    ring(redis, store, cid, *(bot_message(text, n) for n, text in
                              enumerate(("One.", "Two.", "Three."), 1)))
    ring(redis, store, other, bot_message("Rung after.", 4))
    witness.receive_until(bot_says("Rung after."))  # the worker has heard both rings
    released = time.monotonic()
    proxy.release()

    frames = tab.receive_until(message_with_seq(in_step + 3), timeout=RECEIVE_TIMEOUT_S)
    took = time.monotonic() - released
    assert [f["text"] for f in frames] == ["One.", "Two.", "Three."]
    assert took < RESYNC_RETRY_S, f"the rung messages waited {took:.2f} s"


@pytest.mark.on_cluster
def test_every_first_answer_after_hello_comes_well_before_the_retry_delay(server):
    took: list[float] = []

    def rounds(count: int) -> None:
        for _ in range(count):
            tab = Socket(server, "/ws/visitor")
            try:
                tab.send({"type": "hello", "token": None})
                tab.receive_until(of_type("status"))
                sent = time.monotonic()
                tab.send({"type": "message", "id": "first", "text": "opening hours"})
                tab.receive_until(bot_says("Our team answers chats"))
                took.append(time.monotonic() - sent)
            finally:
                tab.close()

    threads = [threading.Thread(target=rounds, args=(FIRST_ANSWER_ROUNDS // 4,))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(took) == FIRST_ANSWER_ROUNDS
    assert max(took) < RESYNC_RETRY_S, sorted(took)[-5:]


# --- a slow reader resuming ---------------------------------------------------------------------


def settled(client: RawSocket):
    """A condition: the server's send queue to `client` holds over 1 MB and stopped moving."""
    seen: list[int] = []

    def check() -> bool:
        end = server_side(client)
        seen.append(end.tx_queue if end else -1)
        return seen[-1] > 1_000_000 and seen[-5:] == [seen[-1]] * 5

    return check


@pytest.mark.on_cluster
def test_a_resume_to_a_client_that_reads_slowly_is_sent_a_page_at_a_time(
        server, open_visitor, redis, store):
    tab = open_visitor(server)
    greeting = tab.hello(None)
    tab.close()
    cid = greeting.conversation
    for start in range(0, 600, 100):  # ~10 MB to replay: more than the kernel would take
        ring(redis, store, cid, *(bot_message(LONG_TEXT, n) for n in range(start, start + 100)),
             rung=False)
    upto = greeting.last_seq + 600

    client = RawSocket(server)
    try:
        client.send({"type": "hello", "token": greeting.token, "last_seq": 0})
        client.receive_until(of_type("welcome"))
        # It reads nothing for now: the replay waits for it, instead of filling the kernel...
        assert poll_until(settled(client), RECEIVE_TIMEOUT_S), server_side(client)
        assert server_side(client).tx_queue < MAX_UNREAD_BYTES
        # ... and goes on, whole and in order, as it reads.
        frames = client.receive_until(of_type("status"), timeout=3 * RECEIVE_TIMEOUT_S)
    finally:
        client.close()
    assert [f.get("seq") for f in frames[1:-1]] == list(range(1, upto + 1))
    assert frames[-1] == {"type": "status", "conversation": cid, "status": "bot"}


# --- one transport, two feeds ------------------------------------------------------------------


@pytest.fixture(scope="module")
def feeds_server(redis_server, tmp_path_factory, shipped_flows_dir) -> Iterator[str]:
    """Serve the app with a socket that carries many feeds (tests/support/feeds_app.py)."""
    app = many_feeds_server(tmp_path_factory.mktemp("feeds"),
                            {"REDIS_URL": redis_server, "FLOWS_DIR": str(shipped_flows_dir)})
    try:
        yield app.start()
    finally:
        app.stop()


def receive_all(sock: Socket, *wanted) -> list[Frame]:
    """Read until each of the `wanted` predicates has matched a frame; return every frame."""
    while not all(any(map(predicate, sock.frames)) for predicate in wanted):
        sock.receive()
    return sock.frames


def test_one_socket_carrying_two_feeds_gets_each_conversations_frames_in_its_own_order(
        feeds_server, server, open_visitor, redis, store):
    tab_a, tab_b = open_visitor(server), open_visitor(server)
    a, b = tab_a.hello(None).conversation, tab_b.hello(None).conversation
    both = Socket(feeds_server, f"{PATH}?conversation={a}&conversation={b}")
    try:
        both.receive_until(of_type("ready"))
        # Both conversations at once, three turns each, with typing in between...
        for n in range(3):
            tab_a.say("shipping", message_id=f"a{n}")  # an echo and three answers
            tab_b.say("opening hours", message_id=f"b{n}")  # an echo and two answers
            tab_a.send({"type": "typing", "active": n < 2})
        tab_a.receive_until(message_with_seq(2 + 3 * 4))
        tab_b.receive_until(message_with_seq(2 + 3 * 3))
        # ... a gap in one (stored but never rung, then the next one rings) while the other
        # goes on...
        ring(redis, store, a, bot_message("Not rung.", 1), rung=False)
        ring(redis, store, a, bot_message("Rung.", 2))
        tab_b.say("opening hours", message_id="b3")
        # ... and one of them ends.
        tab_a.send({"type": "end"})
        tab_a.receive_until(closed_status)
        tab_b.receive_until(message_with_seq(2 + 4 * 3))
        frames = receive_all(both, closed_status, lambda f: f.get("conversation") == b
                             and f.get("seq") == 2 + 4 * 3)

        for cid in (a, b):
            messages = [f for f in frames_of(frames, cid) if f["type"] == "message"]
            assert messages == store.log(cid), cid  # every message, once, in order
        of_a = frames_of(frames, a)
        closing = next(i for i, f in enumerate(of_a) if f.get("event") == "closed")
        assert of_a[closing + 1:] == [{"type": "status", "conversation": a,
                                       "status": "closed", "reason": "visitor"}]
        assert [f["active"] for f in of_a if f["type"] == "typing"] == [True, True, False]
        assert not any(f["type"] in ("status", "typing") for f in frames_of(frames, b))

        channels = (store.channel(a), store.channel(b))
        watching = dict(redis.pubsub_numsub(*channels))
    finally:
        both.close()
    # Closed, the socket's subscriptions are all forgotten: its worker watches neither now.
    assert poll_until(lambda: all(count == watching[channel] - 1 for channel, count
                                  in redis.pubsub_numsub(*channels)), RECEIVE_TIMEOUT_S)
