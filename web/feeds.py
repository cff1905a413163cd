"""One conversation as one socket sees it: its messages in `seq` order, and what follows them.

A feed keeps the socket's `seq` cursor on one conversation. The hub hands it
what the conversation's doorbell rings (`deliver`); a message that is not the
next one (a gap), a re-made subscription or a caller's `resync_later` makes
it read the missing range from the stored log, a page at a time. One
transport (web/transport.py) may carry many feeds: a visitor's socket has
one, an agent's one per conversation it holds.

What it promises the client, whatever the doorbell does:
- messages in `seq` order, each once;
- a status change right after the system message that made it: every such
  message leads to its `status` frame (chat.lifecycle.status_frame), live and
  when read by a resync, so a socket that missed one during a pub/sub outage
  still gets it; not during the hello's replay, after which the hello sends
  the current status itself;
- frames that are not messages (statuses, typing) held back until the
  hello's replay and status are out (`release_held`), and, while a gap is
  being read, until the messages rung before them are sent;
- the sender's `ack` before the echo of its own message (`expect_ack`, then
  `acknowledge` once stored);
- a slow reader cannot turn a resume into a flood: a replay pauses once the
  client has REPLAY_PAUSE_BYTES unread and goes on once it has taken them,
  and one that takes nothing for REPLAY_DRAIN_WAIT_S is cut off.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import redis as redis_lib

from chat import frames
from chat.conversations import Conversations
from chat.lifecycle import status_frame

from .transport import MAX_OUTBOX, Transport

log = logging.getLogger("concierge.sockets")

REPLAY_PAGE = 100  # stored messages read from the log at a time
# Unread bytes (outbox + kernel) at which a replay waits, and down to which it waits: the reader
# takes ~1 MiB at a time, well inside the transport's cut-off (MAX_UNREAD_BYTES, 2 MiB).
REPLAY_PAUSE_BYTES = 1280 * 1024
REPLAY_RESUME_BYTES = 256 * 1024
REPLAY_DRAIN_WAIT_S = 30.0  # a client that takes nothing of a replay for this long is cut off
RESYNC_RETRY_S = 1.0  # after a failed read of the log, or one that found nothing of a gap
RESYNC_TRIES = 5  # quiet reads that find nothing of a gap before it is skipped

ReadLog = Callable[[str, int, int], list[str]]  # (conversation, after_seq, until_seq) -> JSON


class Feed:
    """One conversation on one socket: the `seq` cursor, resync, held frames, acks."""

    # One per watched conversation of every socket: no per-instance dict.
    __slots__ = ("transport", "conversation", "topic", "read_log", "side", "last_seq",
                 "highest_seen", "_pending", "_resyncing", "_again", "_replaying", "_holding",
                 "_deferred", "_idle", "__weakref__")

    def __init__(self, transport: Transport, conversation: str, read_log: ReadLog, *,
                 side: str, last_seq: int = 0) -> None:
        self.transport = transport  # what the hub forgets the feed by, when the socket closes
        self.conversation = conversation
        self.topic = Conversations.topic(conversation)  # what to watch on the hub
        self.read_log = read_log
        self.side = side  # who watches: "visitor" or "agent"; its own typing is not echoed
        self.last_seq = last_seq  # the last message this socket has been sent
        self.highest_seen = 0  # the highest seq the doorbell has announced
        self._pending: set[str] = set()  # ids of this side's messages not yet acked
        self._resyncing = False
        self._again = False  # asked to read the log (again) while a read was under way
        self._replaying = False  # the hello's replay: no statuses derived from what it sends
        self._holding: list[str] | None = []  # non-messages, until the hello is done
        # the same while catching up with the log: (highest seq rung before it, frame)
        self._deferred: list[tuple[int, str]] = []  # a list: most feeds never defer a frame
        self._idle = gevent.event.Event()  # set while no resync runs
        self._idle.set()

    # --- what the doorbell rings -------------------------------------------------------------

    def deliver(self, frame: dict[str, Any], raw: str) -> None:
        """Take a frame rung on the conversation's doorbell."""
        if frame.get("type") != "message":
            if frame.get("type") == "typing" and frame.get("from") == self.side:
                return  # a side's own typing is not echoed to its sockets
            self._place(raw)
            return
        seq = int(frame.get("seq", 0))
        self.highest_seen = max(self.highest_seen, seq)
        if seq <= self.last_seq:
            return
        if seq == self.last_seq + 1 and not self._resyncing:
            self._send(frame, raw)
            return
        self.resync_later()

    def has(self, seq: int) -> bool:
        """Whether message `seq` was sent to this socket (the doorbell's copy then does nothing)."""
        return seq <= self.last_seq

    def _send(self, frame: dict[str, Any], raw: str) -> None:
        """Send the next message, its sender's ack before it and its status change after it."""
        self.last_seq = int(frame["seq"])
        self._ack_first(frame)
        self.transport.post(raw)
        if not self._replaying:
            status = status_frame(frame)
            if status is not None:  # it belongs right after its message, ahead of later frames
                self._follow(frames.dump(status))
        self._post_deferred()

    def _place(self, raw: str) -> None:
        """Send a frame that is not a message, or hold it back until it may go."""
        if self._holding is not None:
            self._holding.append(raw)  # after the hello's replay and status
        elif self._resyncing or self._deferred or self.highest_seen > self.last_seq:
            self._defer(raw)
        else:
            self.transport.post(raw)

    def _follow(self, raw: str) -> None:
        """Send a status right after the message that made it (or hold it, during the hello)."""
        if self._holding is not None:
            self._holding.append(raw)
        else:
            self.transport.post(raw)

    def _defer(self, raw: str) -> None:
        """Hold a frame back until the messages rung before it have been sent."""
        if len(self._deferred) >= MAX_OUTBOX:  # as good as a full outbox
            self.transport.cut_off(f"{MAX_OUTBOX} frames held back")
            return
        self._deferred.append((self.highest_seen, raw))

    def _post_deferred(self) -> None:
        """Send the held-back frames whose messages have all been sent."""
        ready = 0
        while ready < len(self._deferred) and self._deferred[ready][0] <= self.last_seq:
            ready += 1
        if ready:
            due, self._deferred[:ready] = self._deferred[:ready], []
            for _seen, raw in due:
                self.transport.post(raw)

    def release_held(self) -> None:
        """Send the frames held while the hello's replay and status went out."""
        held, self._holding = self._holding or [], None
        for raw in held:
            self.transport.post(raw)

    # --- acks ------------------------------------------------------------------------------

    def expect_ack(self, message_id: str) -> None:
        """Note a message this side is storing: its ack goes before its echo, whichever is first."""
        self._pending.add(message_id)

    def acknowledge(self, message_id: str, seq: int, stored: str | None = None) -> None:
        """Ack a stored message, unless its echo has carried the ack already.

        With `stored` (the new message's JSON, as published), the echo goes with the ack, in
        one write, when it is the next message this socket is due: its copy from the doorbell
        then finds it sent. Otherwise the doorbell's copy follows, in its place.
        """
        if message_id not in self._pending:
            return
        if stored is not None and seq == self.last_seq + 1 and not self._resyncing and \
                self._holding is None:
            self.highest_seen = max(self.highest_seen, seq)
            self._send({"seq": seq, "id": message_id, "from": self.side}, stored)
            return
        self._pending.discard(message_id)
        self.transport.send(self._ack(message_id, seq))

    def cancel_ack(self, message_id: str) -> None:
        """Forget a message that was refused (it gets an error, not an ack)."""
        self._pending.discard(message_id)

    def _ack_first(self, frame: dict[str, Any]) -> None:
        message_id = frame.get("id")
        if frame.get("from") == self.side and message_id in self._pending:
            self._pending.discard(message_id)
            self.transport.send(self._ack(message_id, int(frame["seq"])))

    def _ack(self, message_id: str, seq: int) -> dict[str, Any]:
        # An agent's socket carries many conversations: its acks say which.
        return frames.ack(message_id, seq, self.conversation if self.side == "agent" else None)

    # --- reading the log ---------------------------------------------------------------------

    def resync_later(self) -> None:
        """Read what this socket missed from the log, in a greenlet of its own."""
        self._again = True  # a read under way may predate what called for this one
        if not self._resyncing:
            self._resyncing = True
            self._idle.clear()
            gevent.spawn(self._resync)

    def catch_up(self, known: list[str] | None = None) -> None:
        """Send every stored message after last_seq before returning: the hello's replay.

        `known` are the messages right after last_seq, as stored, when the caller has them (a
        conversation this worker just started and greeted): sent without reading the log,
        unless the doorbell rang something beyond them meanwhile. Whatever was stored after
        them before the subscription was confirmed, its confirmation's resync reads.
        No status is derived from the system messages it sends: the hello reads the
        conversation's status once this returns, and sends that.
        """
        self._replaying = True
        try:
            if known is not None and not self._resyncing and self._send_known(known):
                return
            if self._resyncing:  # the subscription's resync is reading: it reads once more, for us
                self._again = True
                self._idle.wait()
            else:
                self._resyncing = True
                self._idle.clear()
                self._resync()
        finally:
            self._replaying = False

    def _send_known(self, known: list[str]) -> bool:
        """Send `known` messages in order; False if the log must be read after all."""
        for raw in known:
            frame = json.loads(raw)
            if int(frame["seq"]) != self.last_seq + 1:
                return False
            self._send(frame, raw)
        return self.highest_seen <= self.last_seq and not self._again

    def _resync(self) -> None:
        """Send every stored message after last_seq, until caught up with the doorbell.

        A read of the log takes a moment, and the doorbell may ring meanwhile: what rang (or
        asked for a read) while it was under way is read again at once, since the read may
        have been served before it was stored. Only a read that found nothing of a gap while
        nothing rang waits RESYNC_RETRY_S before the next; after RESYNC_TRIES of them the gap
        is skipped (rung, but gone from the log). A failed read is tried again a second later
        while a gap remains.
        """
        stuck = 0
        try:
            while not self.transport.closed:
                self._again = False
                rung, before = self.highest_seen, self.last_seq
                stored = self.read_log(self.conversation, before, before + REPLAY_PAGE)
                for raw in stored:
                    frame = json.loads(raw)
                    if int(frame["seq"]) == self.last_seq + 1:
                        self._send(frame, raw)
                        if self.transport.unread_bytes() > REPLAY_PAUSE_BYTES and \
                                not self._taken():
                            return
                if len(stored) == REPLAY_PAGE:
                    if not self._taken():
                        return
                    continue
                if self.highest_seen <= self.last_seq and not self._again:
                    self._post_deferred()
                    return
                if self.last_seq > before:
                    stuck = 0  # read on at once: what was left of the gap is stored by now
                    continue
                if self._again or self.highest_seen > rung:
                    continue
                stuck += 1
                if stuck >= RESYNC_TRIES:
                    log.warning("messages %d-%d of %s are missing from its log; skipping them",
                                self.last_seq + 1, self.highest_seen, self.conversation)
                    self.last_seq = self.highest_seen
                    self._post_deferred()
                    return
                gevent.sleep(RESYNC_RETRY_S)
        except (redis_lib.RedisError, OSError) as exc:  # Redis failed: look again in a moment
            # One line, no traceback: during an outage every socket with a gap says this.
            log.warning("could not read the log of %s (%s)", self.conversation, exc)
            if self.highest_seen > self.last_seq or self._again:  # no doorbell may come to fill it
                gevent.spawn_later(RESYNC_RETRY_S, self.resync_later)
        except Exception:  # noqa: BLE001 - a bug: say so, and leave the socket to a reconnect
            log.exception("reading the log of %s failed", self.conversation)
        finally:
            self._resyncing = False
            self._idle.set()

    def _taken(self) -> bool:
        """Wait for the reader to take what the replay sent; cut it off if it does not."""
        if self.transport.wait_taken(REPLAY_RESUME_BYTES, REPLAY_DRAIN_WAIT_S):
            return True
        if not self.transport.open:  # it closed or went away meanwhile: not a slow reader
            return False
        self.transport.cut_off(f"took nothing of a replay for {REPLAY_DRAIN_WAIT_S:g} s")
        return False
