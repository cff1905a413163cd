"""Redis going away and coming back: sockets are told to come back later, and nothing is lost.

The module runs its own Redis (with AOF, as production does) and its own gunicorn, since its tests
stop and start that Redis.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from redis import Redis

from tests.conftest import Store
from tests.support.gunicorn_server import ROOT, GunicornServer
from tests.support.process import poll_until
from tests.support.redis_server import RedisServer
from tests.support.ws import RECEIVE_TIMEOUT_S, SocketClosed, VisitorSocket, bot_says, of_type

RECOVERY_TIMEOUT_S = 15.0  # the hub's reconnect back-off tops out at 5 s
HELD_FLOW = """\
name: held
start: listen
intents:
  - keywords: [bye]
    goto: bye
states:
  listen:
    ask: "Which order?"
    save: order_id
    next: lookup
  lookup:
    call:
      method: GET
      url: "{backend}/orders/{{{{ vars.order_id }}}}"
      timeout: 30
      save: order
    on_error: failed
    next: found
  found:
    say: "Found {{{{ vars.order_id }}}}."
    next: listen
  failed:
    say: "Lookup failed for {{{{ vars.order_id }}}}."
    next: listen
  bye:
    say: "Bye."
    end: true
"""


class HeldBackend:
    """An order API on 127.0.0.1 whose answers the test holds back until it lets them go."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.released = threading.Event()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                backend.arrived.set()
                backend.released.wait(30)
                body = json.dumps({"status": "shipped"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Outage:
    redis: RedisServer
    app: GunicornServer
    backend: HeldBackend

    @property
    def url(self) -> str:
        return self.app.url

    def ready(self) -> httpx.Response:
        return httpx.get(f"{self.url}/readyz", timeout=5, trust_env=False)

    def restart_redis(self) -> None:
        """Stop Redis (SIGTERM: the AOF is flushed) and start it on the same port and files."""
        self.redis.stop()
        self.redis.start()
        assert poll_until(lambda: self.ready().status_code == 200, RECOVERY_TIMEOUT_S)


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    backend = HeldBackend()
    flows = tmp_path_factory.mktemp("outage-flows")
    shutil.copy(ROOT / "flows" / "default.yaml", flows)
    (flows / "held.yaml").write_text(HELD_FLOW.format(backend=backend.url))
    redis = RedisServer(tmp_path_factory.mktemp("outage-redis"), appendonly=True)
    redis.start()
    app = GunicornServer(tmp_path_factory.mktemp("outage-gunicorn"),
                         {"REDIS_URL": redis.url, "FLOWS_DIR": str(flows)})
    try:
        app.start()
        yield Outage(redis, app, backend)
    finally:
        app.stop()
        redis.stop()
        backend.stop()


@pytest.fixture
def outage_redis(outage: Outage) -> Iterator[Redis]:
    """Start the module's Redis if a failed test left it stopped; return a client of it."""
    if outage.redis.process is None or outage.redis.process.poll() is not None:
        outage.redis.start()
    client = Redis.from_url(outage.redis.url, decode_responses=True)
    yield client
    client.close()


class Widget:
    """A client that behaves like the widget: when its socket closes it reconnects with the token
    and `last_seq`, and sends again every message that has no ack."""

    RETRY_S = 0.2  # the widget backs off before it reconnects

    def __init__(self, url: str, open_visitor: Callable[[str], VisitorSocket]) -> None:
        self.url = url
        self.open_visitor = open_visitor
        self.sockets: list[VisitorSocket] = []
        self.token: str | None = None

    @property
    def socket(self) -> VisitorSocket:
        return self.sockets[-1]

    @property
    def messages(self) -> list[dict]:
        """Every message it was sent, over all its sockets, in order."""
        return [m for socket in self.sockets for m in socket.messages]

    @property
    def last_seq(self) -> int:
        return max((m["seq"] for m in self.messages), default=0)

    def connect(self, **hello: object) -> None:
        socket = self.open_visitor(self.url)
        self.sockets.append(socket)
        greeting = socket.hello(self.token, last_seq=self.last_seq, **hello)
        self.token = self.token or greeting.token

    def talk(self, text: str, message_id: str, until: Callable[[dict], bool],
             timeout: float = RECOVERY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not self.socket.open:
                    self.connect()
                self.socket.say(text, message_id=message_id)
                self.socket.receive_until(until, max(deadline - time.monotonic(), 0.0))
                return
            except SocketClosed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(self.RETRY_S)


def check_nothing_lost_or_twice(widget: Widget, store: Store, cid: str) -> list[dict]:
    stored = store.log(cid)  # seq 1, 2, 3 … without gaps
    assert [m["seq"] for m in widget.messages] == list(range(1, len(stored) + 1))
    assert widget.messages == stored
    ids = [m["id"] for m in stored]
    assert len(ids) == len(set(ids))
    return stored


def test_with_redis_away_sockets_get_1013_and_everything_recovers_by_itself(
        outage, outage_redis, open_visitor):
    store = Store(outage_redis)
    before = open_visitor(outage.url)
    hello = before.hello(None)
    before.talk("opening hours", until=bot_says("anything else"))
    before.talk("yes", until=bot_says("How can I help"))
    history = store.log(hello.conversation)
    assert before.messages == history
    before.close()

    outage.redis.stop()
    answer = outage.ready()
    assert answer.status_code == 503
    assert answer.json() == {"ready": False, "reason": "Redis does not answer"}
    refused = open_visitor(outage.url)
    assert refused.wait_closed() == 1013
    assert refused.frames == []

    outage.redis.start()  # same port, same files: the AOF brings the data back
    assert poll_until(lambda: outage.ready().status_code == 200, RECOVERY_TIMEOUT_S)

    fresh = open_visitor(outage.url)
    assert fresh.hello(None).errors == []
    fresh.talk("shipping", until=bot_says("anything else"))

    resumed = open_visitor(outage.url)
    greeting = resumed.hello(hello.token, last_seq=0)
    assert greeting.errors == []
    assert greeting.conversation == hello.conversation
    assert greeting.messages == history
    frames = resumed.talk("shipping", message_id="after", until=bot_says("anything else"))
    assert frames[0] == {"type": "ack", "id": "after", "seq": len(history) + 1}


def test_a_socket_open_while_redis_restarts_goes_on_without_loss(outage, outage_redis,
                                                                 open_visitor):
    widget = Widget(outage.url, open_visitor)
    widget.connect()
    cid = widget.socket.greeting.conversation
    widget.talk("opening hours", "before", until=bot_says("anything else"))

    outage.restart_redis()

    # The open socket either still works, or is closed and the widget comes back by token.
    widget.talk("shipping", "after-1", until=bot_says("anything else"))
    widget.talk("yes", "after-2", until=bot_says("How can I help"))
    stored = check_nothing_lost_or_twice(widget, Store(outage_redis), cid)
    assert [m["id"] for m in stored if m["from"] == "visitor"] == ["before", "after-1",
                                                                    "after-2"]


def test_a_message_sent_while_redis_is_away_is_stored_once_when_it_returns(
        outage, outage_redis, open_visitor):
    widget = Widget(outage.url, open_visitor)
    widget.connect()
    cid = widget.socket.greeting.conversation
    widget.talk("opening hours", "before", until=bot_says("anything else"))

    outage.redis.stop()
    widget.socket.say("shipping", message_id="during")
    assert widget.socket.wait_closed() == 1013  # not stored, not acked: the widget keeps it
    assert not any(f["type"] == "ack" and f["id"] == "during" for f in widget.socket.frames)
    outage.redis.start()
    assert poll_until(lambda: outage.ready().status_code == 200, RECOVERY_TIMEOUT_S)

    widget.talk("shipping", "during", until=bot_says("anything else"))  # sent again, as unacked
    stored = check_nothing_lost_or_twice(widget, Store(outage_redis), cid)
    assert [m["id"] for m in stored if m["from"] == "visitor"] == ["before", "during"]


def test_a_bot_turn_cut_off_by_a_redis_restart_is_answered_when_redis_returns(
        outage, outage_redis, open_visitor):
    backend = outage.backend
    backend.arrived.clear()
    backend.released.clear()
    tab = open_visitor(outage.url)
    tab.hello(None, flow="held")
    frames = tab.talk("AB123451", message_id="held", until=of_type("message"))
    assert frames[0] == {"type": "ack", "id": "held", "seq": 2}
    assert backend.arrived.wait(RECEIVE_TIMEOUT_S)  # the bot's turn waits on the order API

    outage.redis.stop()
    backend.released.set()  # the turn goes on, and cannot store its answer
    outage.redis.start()
    assert poll_until(lambda: outage.ready().status_code == 200, RECOVERY_TIMEOUT_S)

    # Whichever way it comes back (the socket, or a reconnect), both messages get their answer.
    widget = Widget(outage.url, open_visitor)
    widget.sockets.append(tab)
    widget.token = tab.greeting.token
    widget.talk("AB123452", "next", until=bot_says("AB123452"), timeout=RECEIVE_TIMEOUT_S)
    answers = [m["text"] for m in widget.messages if m["from"] == "bot"]
    assert any("AB123451" in text for text in answers), answers
