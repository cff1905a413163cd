"""The visitor socket `/ws/visitor`: hello, messages, typing, end, rating, ping."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import gevent
import redis as redis_lib
from simple_websocket import ConnectionClosed

from chat import frames
from chat.conversations import BOT, CLOSED, END_ID, QUEUED, VISITOR_ID, Began, Closed, NotFound
from chat.tokens import identity_verified
from runtime.wiring import Live

from .transport import Connection

log = logging.getLogger("concierge.visitor")

SAY_HELLO = 'say hello first: {"type": "hello", "token": null}'


class RateLimit:
    """A token bucket: `rate` frames a second sustained, bursts up to twice that."""

    def __init__(self, rate: int) -> None:
        self.rate = float(rate)
        self.capacity = 2.0 * rate
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def serve(ws: Any, live: Live) -> None:
    """Serve one visitor socket until it closes; nothing escapes (PITFALLS 4)."""
    connection = Connection(ws, live.conversations.messages)
    live.hub.register(connection)
    live.start_timers()  # normally started with the worker; here for any other server
    try:
        if live.hub.stopping:
            connection.close(frames.CLOSE_GOING_AWAY, "server restarting")
        elif not live.redis_answers():
            connection.close(frames.CLOSE_TRY_LATER, "storage unavailable, try again later")
        else:
            _Visitor(connection, live).run()
    except ConnectionClosed:
        pass
    except (redis_lib.RedisError, OSError) as exc:
        log.warning("visitor socket: Redis failed (%s); closing with 1013", exc)
        connection.close(frames.CLOSE_TRY_LATER, "storage unavailable, try again later")
    except Exception:  # noqa: BLE001 - an escaping error would corrupt the socket
        log.exception("visitor socket failed")
        connection.close(frames.CLOSE_ERROR, "unexpected server error")
    finally:
        live.hub.forget(connection)
        connection.close(frames.CLOSE_NORMAL)


class _Visitor:
    """One visitor's session on one socket."""

    def __init__(self, connection: Connection, live: Live) -> None:
        self.connection = connection
        self.live = live
        self.conversations = live.conversations
        config = live.config
        self.max_text = int(config["MAX_TEXT_CHARS"])
        self.max_frame_bytes = int(config["MAX_FRAME_BYTES"])
        self.ping_interval = float(config["PING_INTERVAL_S"])
        self.rate = RateLimit(int(config["FRAME_RATE"]))
        self.cid = ""
        self.name: str | None = None  # the visitor's name as agents see it

    def receive(self) -> dict[str, Any] | None:
        """Return the next valid frame, answering bad ones; None when the socket closed."""
        ws = self.connection.ws
        while not self.connection.closed:
            raw = ws.receive(timeout=self.ping_interval)
            if raw is None:
                if not ws.connected:
                    raise ConnectionClosed(ws.close_reason, ws.close_message)
                if not self.connection.ping():  # gone quiet: it should reconnect
                    self.connection.close(frames.CLOSE_TRY_LATER, "no answer to pings")
                continue
            if len(raw) * 4 > self.max_frame_bytes and \
                    len(raw.encode() if isinstance(raw, str) else raw) > self.max_frame_bytes:
                # simple-websocket counts characters; the limit is in bytes (PROTOCOL.md)
                self.connection.close(frames.CLOSE_TOO_BIG, "frame too big")
                return None
            if not self.rate.allow():
                self.connection.send(frames.error(
                    frames.RATE_LIMITED, f"more than {self.rate.rate:g} frames a second; "
                                         "slow down and send this again"))
                continue
            try:
                return frames.parse(raw, self.max_text)
            except frames.FrameError as exc:
                if not self.cid and exc.code == frames.UNKNOWN_TYPE:
                    exc = frames.FrameError(frames.BAD_FRAME, SAY_HELLO)  # PROTOCOL.md
                self.connection.send(frames.error(exc.code, exc.message))
        return None

    def run(self) -> None:
        while True:
            frame = self.receive()
            if frame is None:
                return
            if frame["type"] == "hello":
                break
            if frame["type"] == "ping":
                self.connection.send(frames.pong())
            else:
                self.connection.send(frames.error(frames.BAD_FRAME, SAY_HELLO))
        self.hello(frame)
        while (frame := self.receive()) is not None:
            handler = getattr(self, f"on_{frame['type']}")
            handler(frame)

    # --- hello ---------------------------------------------------------------------------

    def hello(self, frame: dict[str, Any]) -> None:
        visitor = self.visitor_of(frame)
        cid = self.resume(frame, visitor)
        last_seq = int(frame.get("last_seq") or 0)
        if cid is None:
            cid = self.begin(frame, visitor)
            last_seq = 0  # the client's last_seq was of another conversation
        self.cid = cid
        conversation = self.conversations.get(cid)
        self.name = conversation.visitor.get("name")
        self.connection.send(frames.welcome(self.live.tokens.make(cid), cid,
                                            conversation.status))
        self.connection.last_seq = min(last_seq, conversation.seq)
        self.live.hub.watch(cid, self.connection)
        self.connection.resync()
        conversation = self.conversations.get(cid)  # as it is now, after the replay
        details = {"reason": conversation.closed_reason} if conversation.status == CLOSED else {}
        self.connection.send(frames.status(cid, conversation.status, **details))
        self.connection.release_held()  # live frames that came meanwhile follow
        if conversation.status == BOT and self.conversations.unanswered(cid):
            gevent.spawn(self._answer)  # a turn cut short (a worker died, Redis went away)

    def visitor_of(self, frame: dict[str, Any]) -> dict[str, Any]:
        identity = frame.get("identity") or {}
        page = frame.get("page") or {}
        visitor: dict[str, Any] = {"verified": False}
        for key in ("name", "email", "user_id"):
            if identity.get(key):
                visitor[key] = identity[key]
        if identity.get("hash"):
            secret = self.live.config.get("IDENTITY_SECRET")
            if identity_verified(secret, identity.get("user_id", ""), identity["hash"]):
                visitor["verified"] = True
            else:
                why = "identity verification is not enabled here" if not secret else \
                    "the identity's hash does not match its user_id"
                self.connection.send(frames.error(frames.FORBIDDEN,
                                                  f"{why}; continuing as an anonymous visitor"))
                visitor = {"verified": False}
        for key, field in (("url", "page_url"), ("title", "page_title"),
                           ("referrer", "referrer")):
            if page.get(key):
                visitor[field] = page[key]
        if frame.get("locale"):
            visitor["locale"] = frame["locale"]
        return visitor

    def resume(self, frame: dict[str, Any], visitor: dict[str, Any]) -> str | None:
        """Find the conversation this hello continues, if any."""
        cid = None
        if visitor["verified"]:
            cid = self.conversations.verified_conversation(visitor["user_id"])
        token = frame.get("token")
        if cid is None and token:
            cid = self.live.tokens.read(token)
            if cid is None:
                self.connection.send(frames.error(frames.NOT_FOUND, "that conversation token "
                                                  "is not valid (or expired); starting a new "
                                                  "conversation"))
        if cid is None:
            return None
        try:
            known = self.conversations.get(cid).visitor
        except NotFound:
            self.connection.send(frames.error(frames.NOT_FOUND, "that conversation no longer "
                                              "exists; starting a new one"))
            return None
        if known.get("verified") and visitor["verified"] and \
                known.get("user_id") != visitor.get("user_id"):
            return None  # another signed-in person on a shared browser: never theirs to read
        if not visitor["verified"] and known.get("verified"):
            visitor = {**known, **{k: v for k, v in visitor.items() if k not in
                                   ("verified", "user_id", "name", "email")}}
        self.conversations.update(cid, visitor={**known, **visitor})
        return cid

    def begin(self, frame: dict[str, Any], visitor: dict[str, Any]) -> str:
        """Start a new conversation with the bot."""
        catalog = self.live.bot.catalog
        wanted = frame.get("flow") or self.live.config["DEFAULT_FLOW"]
        flow = self.live.bot.flow(wanted)
        if flow is None:
            default = self.live.config["DEFAULT_FLOW"]
            self.connection.send(frames.error(frames.NOT_FOUND, f"no flow '{wanted}'; talking "
                                              f"to the default flow '{default}' instead"))
            flow = catalog.get(default) or next(iter(catalog.flows.values()))
        cid = self.conversations.create(flow.id, visitor)
        if visitor.get("verified"):
            self.conversations.remember_verified(visitor["user_id"], cid)
        self.live.bot.start(cid, flow, visitor)
        return cid

    # --- frames after hello --------------------------------------------------------------

    def on_hello(self, _frame: dict[str, Any]) -> None:
        self.connection.send(frames.error(frames.BAD_FRAME, "this socket already said hello; "
                                                            "open a new one for another "
                                                            "conversation"))

    def on_ping(self, _frame: dict[str, Any]) -> None:
        self.connection.send(frames.pong())

    def on_message(self, frame: dict[str, Any]) -> None:
        message_id = frame["id"]
        self.connection.pending_acks.add(message_id)
        try:  # a new message to the bot begins its turn in the same round trip, if it can
            seq, new, status, began = self.conversations.append_and_begin(
                self.cid, frames.message(self.cid, "visitor", frame["text"],
                                         message_id=message_id, name=self.name,
                                         payload=frame.get("payload")),
                VISITOR_ID.format(message_id), secrets.token_hex(8))
        except Closed:
            self.connection.pending_acks.discard(message_id)
            self.connection.send(frames.error(frames.CONFLICT, "this conversation is closed; "
                                                               "start a new one to write again"))
            return
        self.connection.acknowledge(message_id, seq)  # also a repeat sent after the close
        if new and status == BOT:
            gevent.spawn(self._answer, began)  # keep reading (and acking) while the bot works

    def _answer(self, began: Began | None = None) -> None:
        try:
            self.live.bot.answer(self.cid, began=began)
        except Exception:  # noqa: BLE001 - the message is stored; the next one retries
            log.exception("the bot failed to answer in %s", self.cid)

    def on_typing(self, frame: dict[str, Any]) -> None:
        self.conversations.publish(self.cid, frames.typing(self.cid, "visitor", frame["active"]))

    def on_end(self, _frame: dict[str, Any]) -> None:
        try:  # one id for the end: of two tabs ending at once, one closes it
            _seq, new, _status = self.conversations.append(self.cid, frames.message(
                self.cid, "system", "The visitor ended the conversation.",
                message_id=f"end_{self.cid}"), client_id=END_ID, open_only=True)
        except Closed:
            return
        if not new:
            return
        self.conversations.close(self.cid, "visitor")
        self.live.timers.disarm(self.cid)
        self.conversations.publish(self.cid, frames.status(self.cid, CLOSED, reason="visitor"))

    def on_rating(self, frame: dict[str, Any]) -> None:
        if self.conversations.status(self.cid) != CLOSED:
            self.connection.send(frames.error(frames.CONFLICT, "rate the conversation after it "
                                                               "has closed"))
            return
        rating = {"score": frame["score"], "at": frames.now_iso()}
        if frame.get("comment"):
            rating["comment"] = frame["comment"]
        self.conversations.update(self.cid, rating=rating)

    def on_leave_queue(self, _frame: dict[str, Any]) -> None:
        if self.conversations.status(self.cid) != QUEUED:
            self.connection.send(frames.error(frames.CONFLICT, "you are not waiting for a "
                                                               "person"))
