"""The agent socket `/ws/agent`: welcome, presence, accept, message, typing, transfer, close,
history, ping; and what routing rings for the agent.

Thin: each frame goes to routing/desk.py, which decides; this module keeps the
socket's view in step. One transport carries a feed per conversation the agent
holds (web/feeds.py), so every message reaches every tab in `seq` order, and
three doorbells on the hub: the agent's own (assigned, unassigned, presence,
logout), each of its queues' (the waiting list changed) and, for a lead, the
team's. A doorbell is handled in order on the socket's own greenlet, never on
the hub's dispatcher, since handling one reads Redis. When a doorbell's
subscription is made again (Redis came back), the socket resyncs everything
it shows: its conversations against the board, the waiting list and the team.

Liveness is the server's: it pings every AGENT_PING_S, and each pong keeps the
agent's socket live on the board for three intervals (routing/board.py), so a
throttled background tab, whose timers barely run but whose socket answers
pings, never flaps offline, while a dead worker's sockets run out on their own.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

import gevent
import gevent.queue
import redis as redis_lib

from chat import frames
from routing.agents import Agent
from routing.desk import TEAM, TRANSCRIPT_BYTES, WELCOME_TRANSCRIPTS_BYTES, DeskError
from routing.router import QUEUE_TOPIC, TEAM_TOPIC
from runtime.wiring import Live, PoolExhausted

from . import incoming
from .feeds import Feed
from .guard import guarded
from .reader import FrameReader
from .transport import Transport

log = logging.getLogger("concierge.agent")

LIVE_PINGS = 3  # a socket stays live on the board for this many ping intervals without a pong
QUEUE_SETTLE_S = 0.25  # waiting-list changes within this are sent as one `queue` frame
TEAM_EVERY_S = 1.0  # a lead's `team` frame: on change, at most once a second
RESYNC_SETTLE_S = 0.25  # subscriptions (re)made within this are one resync
BUSY = "the server is busy; send this again in a moment"


def serve(ws: Any, live: Live, agent: Agent, still_allowed: Callable[[], bool],
          session_id: str | None = None) -> None:
    """Serve one agent socket until it closes; nothing escapes.

    `still_allowed()` says whether the credential the socket opened with (a console session,
    an API token) still holds; it is asked with every ping, so a logout, a new password or a
    revoked token ends the socket within one ping interval. A socket opened with a console
    session (`session_id`) closes at once when that session logs out.
    """
    guarded(ws, live, f"agent {agent.id}",
            lambda transport: _AgentSocket(transport, live, agent, still_allowed,
                                           session_id).run())


class _Bell:
    """A doorbell on the hub: hands what it rings to the socket's own greenlet."""

    __slots__ = ("transport", "owner", "topic", "__weakref__")

    def __init__(self, owner: _AgentSocket, topic: str) -> None:
        self.transport = owner.transport
        self.owner = owner
        self.topic = topic

    def deliver(self, frame: dict[str, Any], _raw: str) -> None:
        self.owner.work.put((self.owner.rung, frame))

    def resync_later(self) -> None:
        self.owner.work.put((self.owner.resync_soon, None))

    def has(self, _seq: int) -> bool:
        return False  # not a conversation's feed: whatever rings is read


class _AgentSocket:
    """One agent's session on one socket."""

    def __init__(self, transport: Transport, live: Live, agent: Agent,
                 still_allowed: Callable[[], bool], session_id: str | None = None) -> None:
        self.transport = transport
        self.session_id = session_id
        self.live = live
        self.desk = live.desk
        self.agent = agent
        self.still_allowed = still_allowed
        self.socket_id = secrets.token_hex(8)
        self.ping_s = float(live.config.get("AGENT_PING_S", 10))
        self.grace_s = float(live.config.get("AGENT_GRACE_S", 60))
        self.feeds: dict[str, Feed] = {}
        self.work: gevent.queue.Queue = gevent.queue.Queue()
        self.welcomed = False
        self._queue_due = False
        self._team_due = False
        self._resync_due = False
        self.shown_presence = ""  # the presence this socket last showed (welcome, `presence`)
        self.reader = FrameReader(transport, incoming.AGENT, live.config, lambda: None,
                                  self.ping_s)
        transport.label = f"agent {agent.id}"

    @property
    def live_s(self) -> float:
        return self.ping_s * LIVE_PINGS

    def run(self) -> None:
        presence = self.desk.connect(self.agent, self.socket_id, self.live_s)
        workers = []
        try:
            hub = self.live.hub
            hub.watch(self.desk.topic(self.agent.id), _Bell(self, "agent"))
            for queue in self.desk.queues_of(self.agent):
                hub.watch(QUEUE_TOPIC.format(queue=queue), _Bell(self, "queue"))
            if self.agent.role == "lead":
                hub.watch(TEAM_TOPIC, _Bell(self, "team"))
            self.welcome(presence)
            workers = [gevent.spawn(self._work), gevent.spawn(self._heartbeat)]
            while (frame := self.reader.next()) is not None:
                self.handle(frame)
        finally:
            gevent.killall(workers, block=False)
            try:
                self.desk.disconnect(self.agent.id, self.socket_id, self.grace_s)
            except (redis_lib.RedisError, OSError):
                pass  # its live-until time runs out on the board instead

    # --- what the socket shows -----------------------------------------------------------

    def welcome(self, presence: str) -> None:
        views = []
        opened: list[tuple[str, int]] = []
        held = self.desk.held(self.agent)
        budget = min(TRANSCRIPT_BYTES, WELCOME_TRANSCRIPTS_BYTES // max(1, len(held)))
        for cid in held:
            try:
                view, seq = self.desk.assigned_view(cid, budget)
            except Exception:  # noqa: BLE001 - one broken record must not bar the agent
                log.exception("cannot show %s to %s", cid, self.agent.id)
                continue
            views.append(view)
            opened.append((cid, seq))
        self.transport.send(frames.agent_welcome(
            {**self.agent.as_dict()}, presence, views, self.desk.waiting_for(self.agent)))
        self.shown_presence = presence
        for cid, seq in opened:
            self.watch(cid, seq)
        if self.agent.role == "lead":
            self.transport.send(self.desk.team())
        self.welcomed = True

    def watch(self, cid: str, seq: int) -> None:
        """Follow a conversation from `seq` on: every later message, typing and status."""
        if cid in self.feeds:
            return
        feed = Feed(self.transport, cid, self.live.conversations.messages, side="agent",
                    last_seq=seq)
        self.feeds[cid] = feed
        feed.release_held()
        self.live.hub.watch(feed.topic, feed)
        feed.catch_up()  # what was stored between the transcript's read and the subscription

    def open(self, cid: str) -> None:
        """A conversation became this agent's: send `assigned`, then follow it."""
        if cid in self.feeds or self.live.board.holder(cid) != self.agent.id:
            return
        view, seq = self.desk.assigned_view(cid)
        self.transport.send(frames.assigned(view))
        self.watch(cid, seq)

    def drop(self, cid: str, reason: str) -> None:
        feed = self.feeds.pop(cid, None)
        if feed is not None:
            self.live.hub.unwatch(feed.topic, feed)
            self.transport.send(frames.unassigned(cid, reason))

    def rung(self, frame: dict[str, Any]) -> None:
        """Act on a doorbell, in order, on the socket's own greenlet."""
        kind = frame.get("type")
        if kind == "ring" and frame.get("event") == "assigned":
            self.open(frame["conversation"])
        elif kind == "ring" and frame.get("event") == "logout":
            if self.session_id is not None and frame.get("session") == self.session_id:
                self.transport.close(frames.CLOSE_NORMAL, "logged out")
        elif kind == "unassigned":
            self.drop(frame["conversation"], frame.get("reason", "transferred"))
        elif kind == "presence":
            self.show_presence(frame.get("status", ""), again=True)  # it answers a choice
        elif kind == "queue_changed":
            self.desk.rung(frame.get("queue", ""))
            self._later("_queue_due", QUEUE_SETTLE_S, self.send_queue)
        elif kind == "team_changed":
            self.desk.rung(TEAM)
            self._later("_team_due", TEAM_EVERY_S, self.send_team)

    def _later(self, flag: str, delay_s: float, send: Callable[[], None]) -> None:
        if getattr(self, flag):
            return
        setattr(self, flag, True)

        def due() -> None:
            setattr(self, flag, False)
            self.work.put((lambda _none: send(), None))

        gevent.spawn_later(delay_s, due)

    def show_presence(self, presence: str, again: bool = False) -> None:
        """Send `presence`; a resync's only if this socket does not show it already."""
        if presence and (again or presence != self.shown_presence):
            self.shown_presence = presence
            self.transport.send(frames.presence(presence))

    def send_queue(self) -> None:
        self.transport.send(frames.queue(self.desk.waiting_for(self.agent)))

    def send_team(self) -> None:
        if self.agent.role == "lead":
            self.transport.send(self.desk.team())

    def resync_soon(self, _frame: Any = None) -> None:
        """Resync once for a burst of (re)made subscriptions (the socket has several)."""
        self._later("_resync_due", RESYNC_SETTLE_S, self.resync)

    def resync(self, _frame: Any = None) -> None:
        """Bring everything shown in step with the board (after a subscription was remade)."""
        held = set(self.desk.held(self.agent))
        for cid in list(self.feeds):
            if cid not in held:
                self.drop(cid, "closed" if self.live.router.conversations_status(cid) ==
                          "closed" else "transferred")
        for cid in sorted(held - set(self.feeds)):
            self.open(cid)
        for feed in self.feeds.values():
            feed.resync_later()
        # A choice made in another tab (or in this one, before this socket's subscription was
        # confirmed) rang nobody here: say what the board has now.
        seat = self.live.board.seat_of(self.agent.id)
        if seat is not None:
            self.show_presence(seat.presence)
        self.send_queue()
        self.send_team()

    def _work(self) -> None:
        for handler, frame in self.work:
            if self.transport.closed:
                return
            try:
                handler(frame)
            except (redis_lib.RedisError, OSError) as exc:
                log.warning("agent %s: Redis failed handling a doorbell (%s)", self.agent.id,
                            exc)
                gevent.spawn_later(1.0, self.work.put, (self.resync, None))
            except Exception:  # noqa: BLE001 - the socket must outlive one bad doorbell
                log.exception("agent %s: a doorbell failed", self.agent.id)

    def _heartbeat(self) -> None:
        """Ping; each pong keeps the socket live on the board, a silence closes it."""
        while not self.transport.closed:
            gevent.sleep(self.ping_s)
            if not self.transport.ping():
                self.transport.close(frames.CLOSE_TRY_LATER, "no answer to pings")
                return
            try:
                account = self.live.accounts.get(self.agent.id) if self.still_allowed() else None
                if account is None:
                    self.transport.close(frames.CLOSE_POLICY, "your session ended; log in again")
                    return
                self.agent = account  # a changed name, capacity or queues counts from now
                self.desk.heartbeat(self.agent, self.socket_id, self.live_s)
            except (redis_lib.RedisError, OSError) as exc:
                log.warning("agent %s: heartbeat failed (%s)", self.agent.id, exc)

    # --- frames from the agent -------------------------------------------------------------

    def handle(self, frame: dict[str, Any]) -> None:
        # An error says what it answers: an agent has many requests in flight.
        about = {**incoming.about(frame), **({"conversation": frame["conversation"]}
                                             if "conversation" in frame else {})}
        try:
            getattr(self, f"on_{frame['type']}")(frame)
        except DeskError as exc:
            self.transport.send(frames.error(exc.code, exc.message, **about))
        except PoolExhausted:
            self.transport.send(frames.error(frames.UNAVAILABLE, BUSY, **about))

    def on_ping(self, _frame: dict[str, Any]) -> None:
        self.transport.send(frames.pong())

    def on_presence(self, frame: dict[str, Any]) -> None:
        self.desk.set_presence(self.agent, frame["status"])

    def on_accept(self, frame: dict[str, Any]) -> None:
        self.desk.accept(self.agent, frame["conversation"])

    def on_message(self, frame: dict[str, Any]) -> None:
        cid, message_id = frame["conversation"], frame["id"]
        feed = self.feeds.get(cid)
        if feed is not None:
            feed.expect_ack(message_id)  # the echo may come first: the ack goes before it
        try:
            appended = self.desk.say(self.agent, cid, frame["text"], message_id)
        except (DeskError, PoolExhausted):
            if feed is not None:
                feed.cancel_ack(message_id)
            raise
        if feed is not None:
            feed.acknowledge(message_id, appended.seq, appended.stored)
        else:
            self.transport.send(frames.ack(message_id, appended.seq, cid))

    def on_typing(self, frame: dict[str, Any]) -> None:
        self.desk.typing(self.agent, frame["conversation"], frame["active"])

    def on_transfer(self, frame: dict[str, Any]) -> None:
        self.desk.transfer(self.agent, frame["conversation"], frame["to"], frame.get("note"))

    def on_close(self, frame: dict[str, Any]) -> None:
        self.desk.close(self.agent, frame["conversation"], frame.get("tags"))

    def on_missed(self, _frame: dict[str, Any]) -> None:
        self.transport.send({"type": "missed", "conversations": self.desk.missed(self.agent)})

    def on_follow_up(self, frame: dict[str, Any]) -> None:
        self.desk.follow_up(self.agent, frame["conversation"])
        self.on_missed(frame)

    def on_colleagues(self, _frame: dict[str, Any]) -> None:
        self.transport.send({"type": "colleagues",
                             "agents": self.desk.colleagues(self.agent)})

    def on_team(self, _frame: dict[str, Any]) -> None:
        self.desk.require_lead(self.agent, "see the team")
        self.transport.send(self.desk.team(fresh=True))

    def on_history(self, frame: dict[str, Any]) -> None:
        cid = frame["conversation"]
        self.transport.send(frames.history(
            cid, self.desk.history(self.agent, cid, frame["before_seq"])))
