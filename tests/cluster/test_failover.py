"""A master of the cluster dies under load and its replica takes over: what was acked stays.

Real gunicorn (2 gevent workers) on three masters with a replica each (`replicated_cluster`,
AOF on, cluster-node-timeout 1 s), REDIS_WAIT_REPLICAS=1: a message is acked only once a
replica holds it (docs/operating.md, "Failover and what an ack means"). Visitors talk to the bot
at a steady pace, each like the widget (docs/protocol.md): it keeps every message it has no ack
for, and when the socket closes it reconnects, resumes with its token and `last_seq`, and sends
those again with their ids. Mid-run the master holding some of their conversations is killed
with SIGKILL; the test polls the cluster until its replica is a master and the cluster is ok.

Then: every message that was acked is in its conversation's log, read on the promoted master
itself; every message was acked in the end, once; no message is stored or delivered twice;
each socket saw its conversation's log whole (live, or replayed after a reconnect), and a second
tab of a conversation on the dead master, fed only by pub/sub, did too; what the window cost a
visitor was a close with 1013 (or an `unavailable` error naming the message), never another
close or error; the workers did not crash. The measured window is printed (`-s`) and written
down in docs/operating.md.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from simple_websocket import ConnectionClosed

from chat.timers import IDLE_DEADLINES
from tests.support.gunicorn_server import GunicornServer
from tests.support.process import poll_until
from tests.support.redis_cluster import RedisCluster, WholeClusterClient
from tests.support.redis_server import RedisServer
from tests.support.ws import Frame, SocketClosed, VisitorSocket, new_id

VISITORS = 8  # conversations, spread over the masters; the one killed holds the first
SEND_EVERY_S = 0.2  # each visitor's pace (a load client's schedule), well under FRAME_RATE
ACKS_BEFORE = 5  # acks each visitor has before the kill
ACKS_AFTER = 5  # acks of messages sent after the promotion each visitor must get
RECONNECT_DELAY_S = 0.1  # between a visitor's attempts to reconnect (the widget's backoff)
READ_S = 0.05  # a visitor's longest wait for a frame before it looks at its schedule
ACK_STALL_S = 20.0  # an unacked message older than this on an open socket is a hang
FAILOVER_TIMEOUT_S = 30.0
PHASE_TIMEOUT_S = 30.0
WAIT_MS = 1000  # REDIS_WAIT_MS: long enough that no ack before the kill goes without a replica
PREFIX = "concierge:"
ALLOWED_CLOSES = {1013}  # docs/protocol.md: try again later (Redis unreachable)
ALLOWED_ERRORS = {"unavailable"}
NO_REPLICA = "acked with 0 of 1 replica(s)"  # the log's word for an ack without its replica
ANSWERED = "anything else"  # the last of the bot's two answers to "opening hours"


def record_key(cid: str) -> str:
    return f"{PREFIX}conv:{{{cid}}}"


class Widget(threading.Thread):
    """A visitor's client that behaves as the widget does, on its own thread.

    `talks=False` makes a second tab: it resumes the conversation of `token` and only reads.
    Every frame is kept with the time it came; the test reads what it recorded once it ended.
    """

    def __init__(self, url: str, stop: threading.Event, *, token: str | None = None,
                 talks: bool = True) -> None:
        """`stop` ends the sending; the thread ends once `until_seq` is set and reached."""
        super().__init__(daemon=True)
        self.url = url
        self.stop = stop
        self.talks = talks
        self.token = token
        self.cid: str | None = None
        self.tab: VisitorSocket | None = None
        self.last_seq = 0
        self.seen: dict[int, Frame] = {}  # seq -> the message frame
        self.anomalies: list[str] = []  # doubled or skipped frames, stalls, foreign errors
        self.pending: dict[str, str] = {}  # id -> text: sent, no ack yet
        self.sent_at: dict[str, float] = {}  # id -> when it was last sent
        self.acks: dict[str, tuple[int, float, float]] = {}  # id -> (seq, when, last sent)
        self.closes: list[tuple[int | None, float]] = []
        self.errors: list[Frame] = []
        self.connections = 0
        self.failed: BaseException | None = None
        self.said = 0
        self.until_seq: int | None = None  # set by the test: read until this seq, then end
        self.quit = False  # set by the test: end now
        self.ready = threading.Event()  # the first hello was answered

    # --- what the test reads --------------------------------------------------------------

    def acks_sent_after(self, moment: float) -> int:
        return sum(1 for _seq, _at, sent in self.acks.values() if sent >= moment)

    # --- the client -----------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            self.failed = exc
        finally:
            if self.tab is not None:
                self.tab.close()

    def _run(self) -> None:
        deadline = time.monotonic() + 4 * PHASE_TIMEOUT_S
        self._connect(deadline)
        self.ready.set()
        next_send = time.monotonic()
        while not self.quit and not (self.until_seq is not None and
                                     self.last_seq >= self.until_seq and not self.pending):
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(f"{self.cid}: still running, pending {self.pending}")
            if self.talks and not self.stop.is_set() and now >= next_send and \
                    not self.pending:  # as a person types: the next once the last is acked
                self.said += 1
                self._send(new_id(), f"opening hours {self.said}")
                next_send = max(next_send + SEND_EVERY_S, now)
            for message_id, sent in list(self.sent_at.items()):
                if message_id in self.pending and now - sent > ACK_STALL_S:
                    self.anomalies.append(f"no ack for {message_id} within {ACK_STALL_S} s")
                    self.sent_at[message_id] = now
            try:
                raw = self.tab.ws.receive(timeout=READ_S)
            except ConnectionClosed:
                self.closes.append((self.tab.close_code, time.monotonic()))
                self._connect(deadline)
                continue
            if raw is not None:
                self._take(json.loads(raw))

    def _send(self, message_id: str, text: str) -> None:
        self.pending[message_id] = text
        self.sent_at[message_id] = time.monotonic()
        try:
            self.tab.say(text, message_id=message_id)
        except SocketClosed:
            pass  # read on: the close is seen there, and the message sent again after it

    def _connect(self, deadline: float) -> None:
        """Open a socket and say hello (resuming, once there is a token) until one is
        answered; then send every unacked message again, with its id."""
        while True:
            if time.monotonic() > deadline or self.quit:
                raise AssertionError(f"{self.cid}: could not reconnect; closes {self.closes}")
            if self.tab is not None:
                self.tab.close()
            try:
                self.tab = VisitorSocket(self.url)
                greeting = self.tab.hello(self.token, last_seq=self.last_seq)
            except SocketClosed as closed:
                self.closes.append((closed.code, time.monotonic()))
                time.sleep(RECONNECT_DELAY_S)
                continue
            break
        self.connections += 1
        for error in greeting.errors:  # not_found: the conversation was lost
            self.errors.append(error)
            self.anomalies.append(f"hello answered with {error}")
        if self.cid is not None and greeting.conversation != self.cid:
            self.anomalies.append(f"resumed {greeting.conversation} instead of {self.cid}")
        self.cid, self.token = greeting.conversation, greeting.token
        for frame in greeting.messages:
            self._take(frame)
        for message_id, text in list(self.pending.items()):
            self._send(message_id, text)

    def _take(self, frame: Frame) -> None:
        kind = frame.get("type")
        if kind == "message":
            seq = frame["seq"]
            if seq <= self.last_seq:
                self.anomalies.append(f"seq {seq} again after {self.last_seq}: {frame}")
            elif seq != self.last_seq + 1:
                self.anomalies.append(f"seq {seq} after {self.last_seq}: a gap")
            self.seen.setdefault(seq, frame)
            self.last_seq = max(self.last_seq, seq)
        elif kind == "ack":
            message_id = frame["id"]
            if message_id in self.acks and self.acks[message_id][0] != frame["seq"]:
                self.anomalies.append(f"{message_id} acked at {self.acks[message_id][0]} "
                                      f"and at {frame['seq']}")
            if message_id not in self.acks:
                self.acks[message_id] = (frame["seq"], time.monotonic(),
                                         self.sent_at[message_id])
            self.pending.pop(message_id, None)
        elif kind == "error":
            self.errors.append(frame)
            if frame.get("code") not in ALLOWED_ERRORS:
                self.anomalies.append(f"error {frame}")
            # unavailable: the message was not taken; it stays pending and goes again
            elif frame.get("id") in self.pending and not self.stop.is_set():
                self._send(frame["id"], self.pending[frame["id"]])


@pytest.fixture
def failover_server(replicated_cluster: RedisCluster, shipped_flows_dir: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    server = GunicornServer(tmp_path_factory.mktemp("failover-gunicorn"), {
        "REDIS_URL": replicated_cluster.service_url, "FLOWS_DIR": str(shipped_flows_dir),
        "REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_MS": str(WAIT_MS)})
    server.start()
    yield server
    server.stop()


def master_of(client: WholeClusterClient, cluster: RedisCluster, cid: str) -> RedisServer:
    port = client.get_node_from_key(record_key(cid)).port
    return next(node for node in cluster.masters if node.port == port)


def report(widgets: list[Widget], server: GunicornServer) -> str:
    """Say where each visitor is, and the end of the server's log, for a failed phase."""
    lines = [f"{w.cid}: {len(w.acks)} acks, {len(w.pending)} pending, closes "
             f"{[code for code, _at in w.closes]}, errors {[e.get('code') for e in w.errors]}, "
             f"anomalies {w.anomalies[:3]}, failed {w.failed!r}" for w in widgets]
    return "\n".join([*lines, server.stderr()[-6000:]])


def follows(node: RedisServer, master: RedisServer) -> bool:
    """Tell whether `node` is a replica of `master` with its link up."""
    client = redis_lib.Redis(port=node.port, decode_responses=True, socket_timeout=2)
    try:
        info = client.info("replication")
    except (redis_lib.RedisError, OSError):
        return False
    finally:
        client.close()
    return info.get("role") == "slave" and info.get("master_port") == master.port and \
        info.get("master_link_status") == "up"


def answered(log: list[dict[str, Any]]) -> bool:
    """Tell whether the bot has answered the conversation's last visitor message whole."""
    return bool(log) and log[-1]["from"] == "bot" and ANSWERED in log[-1]["text"]


def stored_log(client: redis_lib.Redis, cid: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange(f"{record_key(cid)}:log", 0, -1)]


def test_what_was_acked_survives_a_masters_failover_and_the_service_recovers(
        replicated_cluster, failover_server, capsys):
    cluster = replicated_cluster
    url = failover_server.url
    workers = failover_server.worker_pids()
    stop = threading.Event()
    widgets = [Widget(url, stop) for _ in range(VISITORS)]
    for widget in widgets:
        widget.start()
    try:
        assert all(widget.ready.wait(PHASE_TIMEOUT_S) for widget in widgets), \
            [widget.failed for widget in widgets]
        client = WholeClusterClient.from_url(cluster.url, decode_responses=True)
        victim = master_of(client, cluster, widgets[0].cid)
        on_victim = [w for w in widgets if master_of(client, cluster, w.cid) is victim]
        elsewhere = [w for w in widgets if w not in on_victim]
        # The idle deadlines are one key on one master (docs/operating.md, "Redis Cluster"): a
        # bot turn's ack waits for its deadline's ZADD too, so when that master is the one
        # killed, every conversation's acks wait for its WAIT.
        timers_on_victim = client.get_node_from_key(IDLE_DEADLINES.format(
            prefix="concierge:")).port == victim.port
        client.close()
        # A second tab of a conversation on the doomed master: fed by pub/sub alone.
        watcher = Widget(url, stop, token=widgets[0].token, talks=False)
        watcher.start()
        assert watcher.ready.wait(PHASE_TIMEOUT_S), watcher.failed
        assert poll_until(lambda: all(len(w.acks) >= ACKS_BEFORE for w in widgets),
                          PHASE_TIMEOUT_S), [w.failed for w in widgets]

        acked_before = sum(len(w.acks) for w in widgets)
        # every ack so far waited for its replica: none was given without one (the log says)
        assert NO_REPLICA not in failover_server.stderr()
        killed_at = time.monotonic()
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(timeout=10)
        promoted: list[RedisServer] = []

        def taken_over() -> bool:
            promoted[:] = [node for node in [cluster.failover_done(victim)] if node]
            return bool(promoted)

        assert poll_until(taken_over, FAILOVER_TIMEOUT_S), "the replica was not promoted"
        promoted_at = time.monotonic()
        new_master = promoted[0]
        assert new_master in cluster.replicas_of(victim)

        # The service recovers: every visitor's new messages are acked after the promotion.
        assert poll_until(lambda: all(w.acks_sent_after(promoted_at) >= ACKS_AFTER or
                                      w.failed for w in widgets), PHASE_TIMEOUT_S), \
            report(widgets, failover_server)

        # The dead node comes back (its files, its port): it follows the promoted master now,
        # and acks stop waiting REDIS_WAIT_MS for a replica that is not there.
        victim.start()
        assert poll_until(lambda: follows(victim, new_master), FAILOVER_TIMEOUT_S)
        rejoined_at = time.monotonic()
        assert poll_until(lambda: all(w.acks_sent_after(rejoined_at) >= ACKS_AFTER or
                                      w.failed for w in widgets), PHASE_TIMEOUT_S), \
            report(widgets, failover_server)

        # Sending stops; once every message is acked and its answer stored, each socket
        # reads on until it has seen its conversation's last message.
        stop.set()
        assert poll_until(lambda: all(not w.pending or w.failed for w in widgets),
                          PHASE_TIMEOUT_S), report(widgets, failover_server)
        promoted_client = redis_lib.Redis(port=new_master.port, decode_responses=True)
        cluster_client = WholeClusterClient.from_url(new_master.url, decode_responses=True)

        def logs_now() -> dict[str, list[dict[str, Any]]]:
            return {w.cid: stored_log(promoted_client if w in on_victim else cluster_client,
                                      w.cid) for w in widgets}

        assert poll_until(lambda: all(answered(log) for log in logs_now().values()),
                          PHASE_TIMEOUT_S), logs_now()
        logs = logs_now()
        promoted_client.close()
        cluster_client.close()
        for tab in [*widgets, watcher]:
            tab.until_seq = len(logs[tab.cid])
    finally:
        stop.set()
        for tab in [*widgets, *([watcher] if "watcher" in locals() else [])]:
            tab.quit = tab.until_seq is None  # a failed phase: end at once
            tab.join(PHASE_TIMEOUT_S)
    for tab in [*widgets, watcher]:
        assert tab.failed is None, (tab.cid, tab.failed)
        assert not tab.is_alive(), tab.cid

    for widget in widgets:
        log = logs[widget.cid]
        assert [m["seq"] for m in log] == list(range(1, len(log) + 1))  # no gap, no doubled seq
        by_id: dict[str, list[int]] = {}
        for message in log:
            if message["from"] == "visitor":
                by_id.setdefault(message["id"], []).append(message["seq"])
        # every message acked, each stored once, at the seq its ack named
        assert not widget.pending, (widget.cid, widget.pending)
        assert {i: seqs for i, seqs in by_id.items() if len(seqs) > 1} == {}, widget.cid
        assert {i: [seq] for i, (seq, _at, _sent) in widget.acks.items()} == by_id, widget.cid
        assert len(widget.acks) == widget.said
        # the socket saw the conversation's log whole, in order, nothing doubled
        assert widget.anomalies == [], (widget.cid, widget.anomalies)
        assert [(m["seq"], m["id"], m["text"]) for m in widget.seen.values()] == \
            [(m["seq"], m["id"], m["text"]) for m in log], widget.cid
        # what the window cost: a close with 1013, or `unavailable` naming a message
        assert {code for code, _at in widget.closes} <= ALLOWED_CLOSES, widget.closes
        assert {e["code"] for e in widget.errors} <= ALLOWED_ERRORS, widget.errors
        # every message was answered by the bot once: the hours, and what else
        first = next(m["seq"] for m in log if m["from"] == "visitor")
        assert sum(1 for m in log[first:] if m["from"] == "bot") == 2 * widget.said, widget.cid

    # The second tab on the promoted master's conversation saw every message of it.
    assert watcher.anomalies == [], watcher.anomalies
    assert [(m["seq"], m["id"]) for m in watcher.seen.values()] == \
        [(m["seq"], m["id"]) for m in logs[watcher.cid]]
    assert {code for code, _at in watcher.closes} <= ALLOWED_CLOSES, watcher.closes

    # The conversations on the dead master had the window; the others went on.
    assert failover_server.worker_pids() == workers  # no worker crashed
    assert "Traceback" not in failover_server.stderr()
    firsts = [at for w in on_victim for _seq, at, sent in w.acks.values() if sent > killed_at]
    window = min(firsts) - killed_at
    gaps = [b - a for w in elsewhere for a, b in zip(
        *(lambda ats: (ats, ats[1:]))(sorted(at for _s, at, _x in w.acks.values())),
        strict=False)]
    def latencies(after: float, before: float, of: list[Widget] = widgets) -> list[float]:
        return sorted(at - sent for w in of for _seq, at, sent in w.acks.values()
                      if after <= sent < before)

    alone = latencies(promoted_at, rejoined_at, on_victim)  # its master without a replica
    whole = latencies(rejoined_at, float("inf"))
    others_alone = latencies(promoted_at, rejoined_at, elsewhere)
    # Without its replica a master's WAIT runs out every time: its acks wait REDIS_WAIT_MS; the
    # other masters' calls have senders of their own, so theirs do not (unless the idle
    # deadlines live on that master). With the replica back, acks are quick again.
    assert alone[len(alone) // 2] >= WAIT_MS / 1000, alone
    if not timers_on_victim:
        assert others_alone[len(others_alone) // 2] < WAIT_MS / 1000 / 2, others_alone
    assert whole[len(whole) // 2] < WAIT_MS / 1000 / 2, whole
    with capsys.disabled():
        print(f"\nfailover: {len(on_victim)} of {VISITORS} conversations on the killed master; "
              f"{acked_before} acks before the kill; replica promoted "
              f"{promoted_at - killed_at:.2f} s after the kill (as polled); first ack of a "
              f"message sent after the kill on its conversations {window:.2f} s after it; "
              f"closes there: {sorted(c for w in on_victim for c, _at in w.closes)}, "
              f"errors: {sorted(e['code'] for w in on_victim for e in w.errors)}; longest gap "
              f"between acks elsewhere: {max(gaps, default=0):.2f} s; closes elsewhere: "
              f"{sorted(c for w in elsewhere for c, _at in w.closes)}; median ack "
              f"{alone[len(alone) // 2] * 1000:.0f} ms while the promoted master had no "
              f"replica ({others_alone[len(others_alone) // 2] * 1000:.0f} ms on the other "
              f"masters' conversations; idle deadlines on the killed one: {timers_on_victim}), "
              f"{whole[len(whole) // 2] * 1000:.0f} ms once the old one "
              f"followed it")
