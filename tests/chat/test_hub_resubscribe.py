"""The worker's doorbell and the bot's turns when Redis drops connections or restarts.

Every visitor here is on one worker (WEB_CONCURRENCY=1), so the worker's one pub/sub connection
is what each socket's live frames come through. The module runs its own Redis (with AOF, so a
restart keeps the conversations) and its own gunicorn, since its tests stop and start that Redis
and change how it treats idle connections.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from redis import Redis

from tests.chat.test_redis_outage import HELD_FLOW, RECOVERY_TIMEOUT_S, HeldBackend
from tests.support.gunicorn_server import ROOT, GunicornServer
from tests.support.process import poll_until
from tests.support.redis_proxy import RedisProxy
from tests.support.redis_server import RedisServer
from tests.support.ws import RECEIVE_TIMEOUT_S, bot_says, of_type

IDLE_TIMEOUT_S = 2  # Redis's `timeout`: what managed Redis services set to drop idle clients
IDLE_CLOSE_WAIT_S = 15  # Redis checks idle clients about once a second; far more than it takes
TURN_RETRY_WAIT_S = 30  # the bot tries a turn Redis cut again after 1, 2, 4, 8, 16 s
PUBSUB_DIALS_FAILED = 3  # the pub/sub's own re-dial, then both dials of one subscribe again


@dataclass
class OneWorker:
    redis: RedisServer
    proxy: RedisProxy  # the worker reaches Redis through it
    app: GunicornServer
    backend: HeldBackend

    @property
    def url(self) -> str:
        return self.app.url

    def client(self) -> Redis:
        return Redis.from_url(self.redis.url, decode_responses=True)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2, trust_env=False).status_code == 200
        except httpx.TransportError:
            return False

    def start_redis(self) -> None:
        self.redis.start()
        assert poll_until(self.ready, RECOVERY_TIMEOUT_S)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneWorker]:
    backend = HeldBackend()
    flows = tmp_path_factory.mktemp("one-worker-flows")
    shutil.copy(ROOT / "flows" / "default.yaml", flows)
    (flows / "held.yaml").write_text(HELD_FLOW.format(backend=backend.url))
    redis = RedisServer(tmp_path_factory.mktemp("one-worker-redis"), appendonly=True)
    redis.start()
    proxy = RedisProxy(redis.port)
    app = GunicornServer(tmp_path_factory.mktemp("one-worker-gunicorn"),
                         {"REDIS_URL": proxy.url, "FLOWS_DIR": str(flows),
                          "WEB_CONCURRENCY": "1"})
    try:
        app.start()
        yield OneWorker(redis, proxy, app, backend)
    finally:
        app.stop()
        proxy.close()
        redis.stop()
        backend.stop()


@pytest.fixture
def worker(one_worker: OneWorker) -> Iterator[OneWorker]:
    """The module's server, with its Redis running and keeping idle clients (as by default)."""
    if one_worker.redis.process is None or one_worker.redis.process.poll() is not None:
        one_worker.start_redis()  # a failed test left it stopped
    yield one_worker
    if one_worker.redis.process.poll() is None:
        with one_worker.client() as client:
            client.config_set("timeout", 0)


# --- a failed subscribe is retried ---------------------------------------------------------------


def test_after_redis_dropped_the_idle_pubsub_connection_a_new_visitor_gets_live_answers(
        worker, open_visitor):
    with worker.client() as client:
        client.config_set("timeout", IDLE_TIMEOUT_S)
        first = open_visitor(worker.url)
        first.hello(None)
        first.close()  # the worker's last watcher leaves: its pub/sub connection falls silent

        def unsubscribed_pubsub() -> list[dict]:
            return [c for c in client.client_list() if c.get("cmd") == "unsubscribe"]

        assert poll_until(lambda: unsubscribed_pubsub() != [], RECEIVE_TIMEOUT_S)
        # Redis drops it once it has been idle for IDLE_TIMEOUT_S (wall-clock time must pass).
        assert poll_until(lambda: unsubscribed_pubsub() == [], IDLE_CLOSE_WAIT_S), \
            client.client_list()

    for name in ("second", "third"):
        tab = open_visitor(worker.url)
        assert tab.hello(None).errors == []
        frames = tab.talk("opening hours", message_id=name, until=bot_says("anything else"))
        assert frames[0]["type"] == "ack", frames
        assert [f["from"] for f in frames[1:]] == ["visitor", "bot", "bot"], frames


def test_a_subscribe_that_failed_is_retried_and_a_second_tab_gets_live_frames(
        worker, open_visitor):
    tab = open_visitor(worker.url)
    hello = tab.hello(None)
    tab.talk("opening hours", message_id="before", until=bot_says("anything else"))

    # A blip drops the worker's connections, and its pub/sub connection's next handshakes fail:
    # the dispatcher's first subscribe again fails as a whole, as it would while Redis restarts.
    worker.proxy.fail_pubsub(PUBSUB_DIALS_FAILED)
    worker.proxy.cut()
    assert poll_until(lambda: worker.proxy.pubsub_failed == PUBSUB_DIALS_FAILED,
                      RECOVERY_TIMEOUT_S)

    check_a_second_tab_gets_live_frames(worker, open_visitor, tab, hello)


def test_after_a_redis_restart_a_second_tab_on_the_same_worker_gets_live_frames(
        worker, open_visitor):
    tab = open_visitor(worker.url)
    hello = tab.hello(None)
    tab.talk("opening hours", message_id="before", until=bot_says("anything else"))

    worker.redis.stop()  # SIGTERM: the AOF is written out
    worker.start_redis()  # same port, same files

    check_a_second_tab_gets_live_frames(worker, open_visitor, tab, hello)


def check_a_second_tab_gets_live_frames(worker, open_visitor, tab, hello) -> None:
    """A second tab of the conversation joins on the same worker: both get the live frames."""
    second = open_visitor(worker.url)
    joined = second.hello(hello.token, last_seq=tab.last_seq)
    assert joined.conversation == hello.conversation and joined.errors == []
    frames = second.talk("shipping", message_id="after", until=bot_says("anything else"),
                         timeout=RECOVERY_TIMEOUT_S)
    assert [f.get("from") for f in frames[1:]] == ["visitor", "bot", "bot", "bot"], frames
    tab.receive_until(bot_says("anything else"), timeout=RECEIVE_TIMEOUT_S)
    assert [m["id"] for m in tab.messages if m["from"] == "visitor"] == ["before", "after"]


def test_while_its_pubsub_connection_is_live_a_socket_opens_without_a_ping(worker,
                                                                          open_visitor):
    tab = open_visitor(worker.url)
    hello = tab.hello(None)
    second = open_visitor(worker.url)
    second.hello(hello.token, last_seq=tab.last_seq)
    second.talk("shipping", message_id="heard", until=bot_says("anything else"))
    tab.receive_until(bot_says("anything else"))  # rung to it: the worker reads its pub/sub

    with worker.client() as client:
        def pings() -> int:
            return int(client.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))

        before = pings()
        for _ in range(10):
            assert open_visitor(worker.url).hello(None).errors == []
        # the pub/sub's own heartbeat PINGs every 10 s; without the live connection each of
        # the ten sockets would have been let in by a PING of its own
        assert pings() - before <= 2


# --- a bot turn cut by Redis is retried ----------------------------------------------------------


def test_a_bot_turn_cut_by_a_short_redis_outage_is_answered_on_the_same_socket(
        worker, open_visitor):
    backend = worker.backend
    backend.arrived.clear()
    backend.released.clear()
    tab = open_visitor(worker.url)
    cid = tab.hello(None, flow="held").conversation
    frames = tab.talk("AB123451", message_id="held", until=of_type("message"))
    assert frames[0] == {"type": "ack", "id": "held", "seq": 2}
    assert backend.arrived.wait(RECEIVE_TIMEOUT_S)  # the bot's turn waits on the order API

    logged = len(worker.app.stderr())
    worker.redis.stop()
    backend.released.set()  # the turn goes on, and cannot store its answer

    def turn_failed() -> bool:
        return any(cid in line and "fail" in line
                   for line in worker.app.stderr()[logged:].splitlines())

    assert poll_until(turn_failed, RECOVERY_TIMEOUT_S), worker.app.stderr()[logged:]
    worker.start_redis()

    # Nothing more is sent: the answer comes by itself, on the socket that stayed open.
    tab.receive_until(bot_says("Found AB123451."), timeout=TURN_RETRY_WAIT_S)
    assert tab.open
    with worker.client() as client:
        log = client.lrange(f"concierge:conv:{{{cid}}}:log", 0, -1)
    assert sum("Found AB123451." in raw for raw in log) == 1
