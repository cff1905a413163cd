"""The visitor socket `/ws/visitor`: hello, messages, typing, end, rating, ping."""

from __future__ import annotations

import json
import logging
from typing import Any

from chat import frames
from chat.conversations import Closed, Full, NotFound
from chat.tokens import identity_verified
from chat.visitors import NotClosed, NotQueued
from runtime.wiring import Live, PoolExhausted

from . import incoming
from .feeds import Feed
from .guard import guarded
from .limits import AddressLimits
from .reader import FrameReader
from .transport import Transport

log = logging.getLogger("concierge.visitor")

SAY_HELLO = 'say hello first: {"type": "hello", "token": null}'
BUSY = "the server is busy; send this again in a moment"
TOO_MANY_NEW = "too many new conversations from your address; try again later"
GONE = "this conversation no longer exists; reconnect to start a new one"
FLUSH_S = 1.0  # how long a closing socket waits for the error that says why to go out


def serve(ws: Any, live: Live, limits: AddressLimits, address: str) -> None:
    """Serve one visitor socket from `address` until it closes; nothing escapes."""
    guarded(ws, live, "a visitor",
            lambda transport: _Visitor(transport, live, limits, address).run())


class _Visitor:
    """One visitor's session on one socket."""

    def __init__(self, transport: Transport, live: Live, limits: AddressLimits,
                 address: str) -> None:
        self.transport = transport
        self.feed: Feed | None = None  # the conversation, once the hello chose it
        self.live = live
        self.limits = limits
        self.address = address
        self.conversations = live.conversations
        self.reader = FrameReader(transport, incoming.VISITOR, live.config, self.quiet,
                                  float(live.config["PING_INTERVAL_S"]))
        self.reader.unknown_hint = SAY_HELLO  # until the hello (docs/protocol.md)
        self.cid = ""
        self.name: str | None = None  # the visitor's name as agents see it

    def receive(self) -> dict[str, Any] | None:
        """Return the next valid frame, answering bad ones; None when the socket closed."""
        return self.reader.next()

    def quiet(self) -> None:
        """Nothing came for a ping interval: ping, and close a socket that stopped answering."""
        if not self.transport.ping():  # gone quiet: it should reconnect
            self.transport.close(frames.CLOSE_TRY_LATER, "no answer to pings")

    def run(self) -> None:
        while True:
            frame = self.receive()
            if frame is None:
                return
            if frame["type"] == "hello":
                break
            if frame["type"] == "ping":
                self.transport.send(frames.pong())
            else:
                self.transport.send(frames.error(frames.BAD_FRAME, SAY_HELLO))
        if not self.hello(frame):
            return
        self.reader.unknown_hint = None
        while (frame := self.receive()) is not None:
            handler = getattr(self, f"on_{frame['type']}")
            try:
                handler(frame)
            except _REFUSABLE as exc:  # the frame does not fit the conversation's state
                self.refuse(frame, *_REFUSED[type(exc)])
            except PoolExhausted:
                # Overloaded, not broken: the frame is not taken (a message is neither stored nor
                # acked), the client sends it again, and this socket stays open. Waiting for a
                # connection already kept us from reading more meanwhile: that is the back-pressure.
                self.refuse(frame, frames.UNAVAILABLE, BUSY)
            except NotFound:
                # The conversation is gone from Redis (it expired, or a Redis without its data
                # came back): nothing on this socket can go on. Reconnecting with the token gets
                # `not_found` and a fresh conversation, as any resume of a vanished one does.
                log.info("conversation %s vanished under its socket; closing it", self.cid)
                self.refuse(frame, frames.NOT_FOUND, GONE)
                self.transport.close(frames.CLOSE_TRY_LATER, GONE, flush_s=FLUSH_S)
                return

    def refuse(self, frame: dict[str, Any], code: str, message: str) -> None:
        """Answer a frame that is not taken with an `error` naming it (its type, its id)."""
        self.transport.send(frames.error(code, message, **incoming.about(frame)))

    # --- hello ---------------------------------------------------------------------------

    def hello(self, frame: dict[str, Any]) -> bool:
        """Begin or resume the conversation; False if this address may start no more now."""
        visitors = self.live.visitors
        visitor = self.visitor_of(frame)
        token = frame.get("token")
        token_cid = self.live.tokens.read(token) if token else None
        if token and token_cid is None:
            self.transport.send(frames.error(frames.NOT_FOUND, "that conversation token is not "
                                              "valid (or expired); starting a new conversation"))
        cid, gone = visitors.find(visitor, token_cid)
        resumed = cid is not None
        if gone:
            self.transport.send(frames.error(frames.NOT_FOUND, "that conversation no longer "
                                              "exists; starting a new one"))
        last_seq = int(frame.get("last_seq") or 0)
        started = None
        if cid is None:
            if not self.limits.allow_new_conversation(self.address):
                # Each new conversation is kept for RETENTION_DAYS: an address that starts
                # them by the dozen is flooding the store, not talking.
                self.transport.send(frames.error(frames.RATE_LIMITED, TOO_MANY_NEW))
                self.transport.close(frames.CLOSE_TRY_LATER, TOO_MANY_NEW, flush_s=FLUSH_S)
                return False
            started = visitors.start(frame.get("flow"), visitor)
            if started.unknown_flow:
                self.transport.send(frames.error(
                    # what the client sent is not quoted back (docs/protocol.md, errors)
                    frames.NOT_FOUND, f"no such flow here; talking to the default flow "
                                      f"'{started.flow}' instead"))
            cid, last_seq = started.cid, 0  # the client's last_seq was of another conversation
        self.cid = cid
        # A conversation just started with the bot is as this worker made it: no read needed
        status = started is not None and visitors.started_status(started)
        if status:
            self.name = visitor.get("name")
        else:
            conversation = self.conversations.get(cid)
            self.name = conversation.visitor.get("name")
            last_seq = min(last_seq, conversation.seq)
        self.transport.send(frames.welcome(self.live.tokens.make(cid), cid,
                                           status["status"] if status else conversation.status))
        self.feed = feed = Feed(self.transport, cid, self.conversations.messages,
                                side="visitor", last_seq=last_seq)
        self.transport.label = f"a visitor of {cid}"
        self.live.hub.watch(feed.topic, feed)
        # every stored message after last_seq, held live frames waiting; a greeting this
        # worker just stored is sent as it has it (the subscription's resync reads the log)
        feed.catch_up(started.greeting if status else None)
        # the status as it is now, after the replay; then the live frames that came meanwhile
        self.transport.send(status or visitors.status(cid))
        feed.release_held()
        if resumed:  # a conversation just started has no turn that was cut short
            visitors.resumed(conversation)
        return True

    def visitor_of(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Read who the visitor says they are, checking a signed identity."""
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
                self.transport.send(frames.error(frames.FORBIDDEN,
                                                  f"{why}; continuing as an anonymous visitor"))
                visitor = {"verified": False}
        for key, field in (("url", "page_url"), ("title", "page_title"),
                           ("referrer", "referrer")):
            if page.get(key):
                visitor[field] = page[key]
        if frame.get("locale"):
            visitor["locale"] = frame["locale"]
        return visitor

    # --- frames after hello --------------------------------------------------------------

    def on_hello(self, _frame: dict[str, Any]) -> None:
        raise SaidHello

    def on_ping(self, _frame: dict[str, Any]) -> None:
        self.transport.send(frames.pong())

    def on_message(self, frame: dict[str, Any]) -> None:
        message_id, feed = frame["id"], self.feed
        feed.expect_ack(message_id)  # the echo may come first: the ack then goes before it
        try:
            appended = self.live.visitors.say(self.cid, frame["text"], message_id,
                                              name=self.name, payload=frame.get("payload"))
        except (Closed, Full, PoolExhausted, NotFound):
            feed.cancel_ack(message_id)  # it gets an error, not an ack
            raise
        # also a repeat sent after the close; a new message's echo goes with its ack, and an
        # answer stored with it right after, in the same write (its doorbell copy is then old),
        # once the subscription is confirmed (until then the doorbell brings it, after the
        # resync that confirmation starts)
        feed.acknowledge(message_id, appended.seq, appended.stored)
        if appended.answered is not None and self.live.hub.confirmed(feed.topic):
            for raw in appended.answered:
                feed.deliver(json.loads(raw), raw)

    def on_typing(self, frame: dict[str, Any]) -> None:
        self.live.visitors.typing(self.cid, frame["active"])

    def on_end(self, _frame: dict[str, Any]) -> None:
        self.live.visitors.end(self.cid)

    def on_rating(self, frame: dict[str, Any]) -> None:
        self.live.visitors.rate(self.cid, frame["score"], frame.get("comment"))

    def on_leave_queue(self, _frame: dict[str, Any]) -> None:
        self.live.visitors.leave_queue(self.cid)


class SaidHello(Exception):
    """A second `hello` on a socket that has its conversation."""


# What a frame that does not fit the conversation's state is told (run() answers them all).
_REFUSED: dict[type[Exception], tuple[str, str]] = {
    Closed: (frames.CONFLICT, "this conversation is closed; start a new one to write again"),
    Full: (frames.TOO_LONG, "this conversation holds as many messages as it may; start a new "
                            "one to write again"),
    NotClosed: (frames.CONFLICT, "rate the conversation after it has closed"),
    NotQueued: (frames.CONFLICT, "you are not waiting for a person"),
    SaidHello: (frames.BAD_FRAME, "this socket already said hello; open a new one for another "
                                  "conversation"),
}
_REFUSABLE = tuple(_REFUSED)
